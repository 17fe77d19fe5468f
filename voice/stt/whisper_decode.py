"""Whisper decoding for the embedded recogniser: one loaded model, a pool of decoding threads.

One :class:`WhisperEngine` per process holds the model (CTranslate2 through faster-whisper)
and a small thread pool. Threads, not processes: CTranslate2 releases the GIL while it runs,
so the event loop keeps serving calls during a decode, the model is loaded once per process
rather than once per worker, and no child process can outlive the server (the PocketSphinx
worker processes did, after a ``kill -9``).

Fairness between calls comes from the shape of the queue: a call has at most one utterance
in the pool at a time (:class:`voice.stt.whisper_stt.WhisperSTT` awaits each decode before
it submits the next), and the pool serves jobs first in, first out. A call that floods the
line therefore waits behind every other call's utterance before its next one runs: round
robin, with no call able to hold more than one place in the queue.

Decoding is bounded so that no utterance can occupy a worker for long: greedy search with a
small beam, at most one fallback temperature, output tokens capped by the audio's length
(tiny.en otherwise loops on "okay okay okay"), and no conditioning on earlier text (each
turn is decoded on its own; nothing of one call can leak into the next).

Which model (``STT_WHISPER_MODEL``), measured by ``python -m bench.stt`` on this project's
two-core machine (42 clinic utterances x 5 caller voices over the telephone channel):
base and tiny.en get about the same share of key items (53% / 55%), but base hears yes/no
(100% / 90%) and the reason for the visit (75% / 55%) better, the turns that confirm what is
stored and that triage reads, and has the lower word error rate on espeak-ng voices (49% /
58%); tiny.en is better on dates of birth (70% / 45%) and names (55% / 35%). base costs 0.50
CPU seconds per second of audio (tiny.en 0.23), about 8 CPU seconds per call-minute: one
core carries ~7 calls, so four calls take half of one of the two cores. base is the
default; tiny.en halves the CPU and the wait (p50 1.0 s against 1.6 s end of speech to
transcript with four calls at once on a busy machine) where that matters more.

Workers (``STT_WHISPER_WORKERS``): one decode at a time with every core
(``STT_WHISPER_THREADS``) beat two decodes of one thread each for four concurrent calls
(p50 1.6 s / 2.0 s, p90 2.7 s / 4.3 s), so the default is one worker.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clinic.logs import get_logger
from voice.audio import STT_RATE, TWILIO_RATE, PcmArray, resample
from voice.stt.whisper_model import prepare_model

log = get_logger(__name__)

TOKENS_PER_SECOND = 7.0
"""Output allowed per second of audio: brisk speech is ~4 tokens a second; spelled letters
and digits ("G-O-N-Z-A-L-E-Z", "6-1-7") take about two tokens each, at ~3 a second."""
MIN_TOKENS = 12
MAX_PROMPT_CHARS = 200

# Never put these in a prompt: Whisper readily repeats its prompt into noise or a short
# answer, and a red flag it was told about is one the caller may never have said.
_NEVER_PROMPTED = re.compile(
    r"\b(chest|breath|breathe|bleed|bleeding|emergency|stroke|suicid\w*|pain|hurt|die)\b", re.I
)
# ...nor these: a request for a person is acted on at once, so Whisper must not be nudged
# towards it; and number words, months and ordinals it writes well unaided (as digits).
_NOT_VOCABULARY = re.compile(
    r"^(operator|representative|person|repeat|i don't know|actually|it's|oh|as in|with a|"
    r"double|dash|apostrophe|underscore|the one|area code|this number|fou?rty|"
    r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w+teen|"
    r"twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|"
    r"first|second|third|\w+th|january|february|march|april|may|june|july|august|"
    r"september|october|november|december)$",
    re.I,
)
_YES_NO = frozenset({"yes", "no", "yeah", "nope", "correct", "that's right"})
NAME_MARKER = "as in"
"""Only the hints of a name (or its spelling) include "as in" ("M as in Mary")."""
NAME_PROMPT = "Please say your first and last name. My name is"
"""Measured on 8 names x 4 caller voices (telephone band): names heard whole 17 of 32
with this prompt, 14 with the bare question, 12 with no prompt."""
NO_SPEECH_MAX = 0.5
"""A segment whose no-speech probability reaches this is not words. Measured on telephone
audio with the product's endpointing: clicks, hum and voiced noise came out at 0.52–0.78
(decoded as "you", "Oh", or the prompt repeated), real answers at 0.06–0.26."""
ECHO_NO_SPEECH_MAX = 0.45
"""...and a transcript that only repeats words of the prompt needs to be clearer than this
(a real "yes" under the prompt "Yes. No." measured 0.15–0.36)."""
_FILLERS = frozenset({"uh", "um", "umm", "er", "erm", "ah", "hmm", "oh", "you"})
"""Transcripts made only of these are not an answer ("you" is Whisper's stock hallucination
on noise); "mm-hmm" and "uh-huh" mean yes and are kept."""


def default_threads() -> int:
    """Threads per decode: every core, at most four (more does not help a model this size)."""
    return max(1, min(4, os.cpu_count() or 1))


def whisper_prompt(hints: Sequence[str]) -> str | None:
    """The text Whisper is told came before the caller's answer, from the question's hints.

    What helps is the vocabulary of the answer: proper names (providers, carriers), the
    words of a menu ("book", "reschedule", "cancel"), offered days; and, for a yes/no
    question, "Yes. No." (measured: it turns "yeah" heard with low confidence into a
    confident "Yes"); for a name, the question itself (see ``NAME_PROMPT``). Single
    letters, number words, months and ordinals (hints meant for a grammar) are left out,
    and so are red-flag words and requests for a person (see ``_NEVER_PROMPTED`` and
    ``_NOT_VOCABULARY``). Names come first: the prompt is bounded.
    """
    if any(" ".join(hint.split()).casefold() == NAME_MARKER for hint in hints):
        return NAME_PROMPT
    names: list[str] = []
    words: list[str] = []
    yes_no = False
    for hint in hints:
        cleaned = " ".join(hint.split())
        if cleaned.casefold() in _YES_NO:
            yes_no = True
            continue
        if len(cleaned) < 3 or _NEVER_PROMPTED.search(cleaned):
            continue
        if _NOT_VOCABULARY.match(cleaned) or cleaned in names or cleaned in words:
            continue
        (names if any(ch.isupper() for ch in cleaned) else words).append(cleaned)
    names += words
    parts: list[str] = []
    if yes_no:
        parts.append("Yes. No.")
    if names:
        listed = ""
        for name in names:
            candidate = f"{listed}, {name}" if listed else name
            if len(candidate) > MAX_PROMPT_CHARS:
                break
            listed = candidate
        parts.append(listed[:1].upper() + listed[1:] + ".")
    return " ".join(parts) or None


@dataclass(frozen=True)
class Transcript:
    """What one utterance decoded to. ``text`` is '' when Whisper heard no words."""

    text: str
    confidence: float
    audio_s: float
    decode_s: float


def confidence_of(segments: Sequence[Any]) -> float:
    """A 0..1 figure from Whisper's own: the mean token probability (``exp(avg_logprob)``)
    scaled by the chance that there was speech at all (``1 - no_speech_prob``), weighted by
    each segment's text length."""
    total = 0.0
    weight = 0
    for segment in segments:
        size = max(1, len(segment.text.strip()))
        probability = math.exp(min(0.0, float(segment.avg_logprob)))
        total += size * probability * (1.0 - float(segment.no_speech_prob))
        weight += size
    return min(1.0, max(0.0, total / weight)) if weight else 0.0


def _clean(text: str) -> str:
    return " ".join(text.split())


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def heard_words(segments: Sequence[Any], prompt: str | None) -> list[Any]:
    """The segments that are words, not noise (see ``NO_SPEECH_MAX``, ``_FILLERS``)."""
    prompt_words = set(_words(prompt or ""))
    kept = []
    for segment in segments:
        no_speech = float(segment.no_speech_prob)
        said = _words(segment.text)
        if not said or no_speech >= NO_SPEECH_MAX:
            continue
        if set(said) <= _FILLERS:
            continue
        if prompt_words and set(said) <= prompt_words and no_speech >= ECHO_NO_SPEECH_MAX:
            continue
        kept.append(segment)
    return kept


@dataclass(frozen=True)
class DecodeOptions:
    """Bounds on one decode (see the module docstring for why each)."""

    beam_size: int = 2
    temperatures: tuple[float, ...] = (0.0, 0.4)
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4


class WhisperEngine:
    """The process's Whisper model and decoding threads. Thread-safe; share it between calls.

    ``workers`` utterances are decoded at once (CTranslate2's ``num_workers``), each with
    ``threads`` intra-op threads. Loading is lazy (:meth:`load`) so that building the engine
    in settings-driven code costs nothing until the first call or :func:`preload`.
    """

    def __init__(
        self,
        *,
        model: str,
        cache_dir: Path,
        threads: int | None = None,
        workers: int = 1,
        options: DecodeOptions | None = None,
    ) -> None:
        self.model_name = model
        self.cache_dir = cache_dir
        self.threads = threads or default_threads()
        self.workers = max(1, workers)
        self.options = options or DecodeOptions()
        self._lock = threading.Lock()
        self._model: Any = None
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="whisper")
        self.decodes = 0

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Verify and load the model (blocking, ~1 s). Raises ModelIntegrityError."""
        with self._lock:
            if self._model is not None:
                return
            started = time.perf_counter()
            directory = prepare_model(self.model_name, self.cache_dir)
            from faster_whisper import WhisperModel

            self._model = WhisperModel(
                str(directory),
                device="cpu",
                compute_type="int8",
                cpu_threads=self.threads,
                num_workers=self.workers,
                local_files_only=True,
            )
            log.info(
                "stt_model_loaded",
                engine="whisper",
                model=self.model_name,
                threads=self.threads,
                workers=self.workers,
                load_ms=round((time.perf_counter() - started) * 1000),
            )

    def warm_up(self) -> None:
        """One decode of a second of quiet line, so that the first caller does not pay for
        CTranslate2's first-run allocations (blocking)."""
        self.load()
        rng = np.random.default_rng(0)
        self.transcribe_blocking(rng.normal(0.0, 30.0, TWILIO_RATE).astype(np.int16), None)

    def transcribe_blocking(self, pcm8k: PcmArray, prompt: str | None) -> Transcript:
        """Decode one utterance of 8 kHz PCM on the calling thread."""
        self.load()
        started = time.perf_counter()
        audio = resample(pcm8k, TWILIO_RATE, STT_RATE).astype(np.float32) / 32768.0
        audio_s = audio.size / STT_RATE
        options = self.options
        segments, _info = self._model.transcribe(
            audio,
            language="en",
            beam_size=options.beam_size,
            best_of=1,
            temperature=list(options.temperatures),
            compression_ratio_threshold=options.compression_ratio_threshold,
            log_prob_threshold=options.log_prob_threshold,
            no_speech_threshold=options.no_speech_threshold,
            condition_on_previous_text=False,
            initial_prompt=prompt,
            without_timestamps=True,
            max_new_tokens=int(MIN_TOKENS + TOKENS_PER_SECOND * audio_s),
            vad_filter=False,
        )
        decoded = heard_words(list(segments), prompt)  # the generator does the work
        text = _clean(" ".join(segment.text for segment in decoded))
        self.decodes += 1
        return Transcript(
            text=text,
            confidence=confidence_of(decoded) if text else 0.0,
            audio_s=audio_s,
            decode_s=time.perf_counter() - started,
        )

    async def transcribe(self, pcm8k: PcmArray, prompt: str | None) -> Transcript:
        """Decode on the pool, without blocking the event loop (waits for a free worker)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.transcribe_blocking, pcm8k, prompt)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_engine_lock = threading.Lock()
_engine: WhisperEngine | None = None


def engine_from_settings() -> WhisperEngine:
    """The process-wide engine configured by ``STT_WHISPER_*`` (built once, loaded lazily)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from django.conf import settings

            _engine = WhisperEngine(
                model=settings.STT_WHISPER_MODEL,
                cache_dir=Path(settings.STT_MODEL_DIR),
                threads=settings.STT_WHISPER_THREADS,
                workers=settings.STT_WHISPER_WORKERS,
            )
        return _engine


def preload(engine: WhisperEngine | None = None) -> WhisperEngine:
    """Join, verify and load the model and run one warm-up decode (blocking, 1–3 s).

    The server calls this at start-up so that the first call is answered as fast as the
    hundredth; a bad model stops start-up here with one line (ModelIntegrityError).
    """
    engine = engine or engine_from_settings()
    started = time.perf_counter()
    engine.warm_up()
    log.info(
        "stt_preloaded",
        engine="whisper",
        model=engine.model_name,
        ms=round((time.perf_counter() - started) * 1000),
    )
    return engine
