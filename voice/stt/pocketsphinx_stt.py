"""Offline speech-to-text with PocketSphinx 5 (``STT_PROVIDER=pocketsphinx``, not the default).

Whisper (:mod:`voice.stt.whisper_stt`) replaced it as the embedded default. Measured by
``python -m bench.stt`` on telephone-band clinic utterances, a grammar built from the
question's hints no longer earns a place even for yes/no, digits and spelled letters:
Whisper hears yes/no as reliably and is far better on digits, letters and everything else.
It stays as an opt-in engine (the benchmarks compare against it); its decoding processes
die with the server (``PR_SET_PDEATHSIG``).

PocketSphinx's English model ships in its wheel. It was trained on 16 kHz speech, so the
caller's 8 kHz audio is resampled to 16 kHz (the band above 4 kHz stays empty, which costs
accuracy: this engine is the offline fallback, not a match for a hosted one).

Open vocabulary (the bundled language model) is poor on phone audio; a grammar of what the
current question expects is far better. So hints that name a vocabulary (``["yes", "no"]``,
digits, a list of carriers) become a JSGF grammar — any sequence of those words — and an empty
hint list selects the language model (see :mod:`voice.stt.sphinx_worker`).

Endpointing is ours: :class:`voice.audio.VoiceActivityDetector` finds where the caller starts
(``SpeechStarted``) and stops (about 700 ms of silence) talking, and the segment is then
decoded into a ``Final`` and an ``UtteranceEnd``.

Decoding is CPU-bound and runs in worker *processes*, not threads. Measured on PocketSphinx
5.1: its Python binding does not reliably release the GIL while decoding, so a decoder in a
thread stalled this process's event loop (every call it serves) for up to the whole decode,
seconds for a long open-vocabulary utterance. A process pool also spreads decoding over the
cores, and a crash in the C library (it has some) costs one utterance, not the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from clinic.logs import get_logger
from voice.audio import (
    STT_RATE,
    TWILIO_RATE,
    PcmArray,
    StreamResampler,
    VadConfig,
    VadEventKind,
    VoiceActivityDetector,
    mulaw_to_pcm,
)
from voice.stt import sphinx_worker
from voice.stt._events import EventStream
from voice.stt.base import (
    Final,
    SpeechStarted,
    SpeechToTextError,
    TranscriptEvent,
    UtteranceEnd,
    normalise_hints,
)

log = get_logger(__name__)

_pool_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def default_workers() -> int:
    """One decoding process per core, leaving one core to the event loop, at most four.

    Each process holds a loaded model, about 200 MB resident (mostly the language model).
    The pool starts processes only when utterances queue up, so a quiet server runs one.
    """
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def decoder_pool() -> ProcessPoolExecutor:
    """The process-wide pool of decoding processes, created on first use.

    Workers are spawned, not forked: forking a process that runs threads (Daphne, asyncio's
    default executor) can copy a held lock into the child.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=default_workers(),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=sphinx_worker.die_with_parent,
                initargs=(os.getpid(),),
            )
        return _pool


def _replace_broken_pool(broken: Executor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


async def preload(count: int | None = None, executor: Executor | None = None) -> None:
    """Start decoding processes and load their models ahead of the first calls.

    Best effort: the pool hands the warm-up jobs to whichever workers are free, so a fast
    worker may take two of them and leave another process to load on its first utterance.
    """
    pool = executor or decoder_pool()
    loop = asyncio.get_running_loop()
    jobs = count if count is not None else default_workers()
    await asyncio.gather(*(loop.run_in_executor(pool, sphinx_worker.warm) for _ in range(jobs)))


@dataclass(frozen=True)
class _Segment:
    pcm16: bytes
    hints: tuple[str, ...]
    ended_at: float  # monotonic time the last audio of the segment arrived


class PocketSphinxSTT:
    """:class:`voice.stt.base.SpeechToText` on PocketSphinx, endpointed by our VAD.

    A grammar decoder has no model of "something else", so it readily hears a short word in
    silence or noise. A segment is therefore decoded with a little context only: ``preroll_ms``
    before the detected start (which is reported ``min_speech_ms`` late, so this holds the
    onset of the first word) and ``tail_ms`` after the last voiced frame; the rest of the
    hangover silence is not decoded. The defaults were the most accurate on synthetic speech
    over a quiet line (see ``tests/voice/test_stt_pocketsphinx.py``).

    Segments are decoded one after another, in order, while audio keeps flowing in.
    """

    def __init__(
        self,
        *,
        vad: VadConfig | None = None,
        preroll_ms: float = 400.0,
        tail_ms: float = 50.0,
        max_utterance_ms: float = 30_000.0,
        executor: Executor | None = None,
        close_timeout_s: float = 10.0,
        call_id: str = "",
    ) -> None:
        self._vad = VoiceActivityDetector(vad or VadConfig(hangover_ms=700.0))
        self._resampler = StreamResampler(TWILIO_RATE, STT_RATE)
        self._preroll: deque[PcmArray] = deque()
        self._preroll_samples = 0
        self._preroll_limit = int(preroll_ms * STT_RATE / 1000)
        self._tail_ms = tail_ms
        self._max_utterance_samples = int(max_utterance_ms * STT_RATE / 1000)
        self._executor = executor
        self._close_timeout_s = close_timeout_s
        self._call_id = call_id
        self._events = EventStream()
        self._segments: asyncio.Queue[_Segment | None] = asyncio.Queue()
        self._hints: tuple[str, ...] = ()
        self._utterance: list[PcmArray] | None = None
        self._utterance_samples = 0
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.utterances = 0

    async def start(self, hints: Sequence[str] = ()) -> None:
        if self._worker is not None:
            raise RuntimeError("start() was already called")
        self._hints = tuple(normalise_hints(hints))
        loop = asyncio.get_running_loop()
        try:
            # Loads a model in one worker if none is loaded yet; instant otherwise.
            await loop.run_in_executor(self._pool(), sphinx_worker.warm)
        except Exception as exc:
            raise SpeechToTextError("pocketsphinx_unavailable") from exc
        self._worker = asyncio.create_task(self._decode_segments(), name="pocketsphinx-stt")

    async def send(self, mulaw_8k: bytes) -> None:
        if self._closed or self._worker is None or not mulaw_8k:
            return
        pcm8 = mulaw_to_pcm(mulaw_8k)
        pcm16 = self._resampler.process(pcm8)
        event = self._vad.feed(pcm8)
        if self._utterance is None:
            self._remember(pcm16)
            if event is not None and event.kind is VadEventKind.SPEECH_START:
                self._begin()
            return
        self._utterance.append(pcm16)
        self._utterance_samples += pcm16.size
        if event is not None and event.kind is VadEventKind.SPEECH_END:
            # Decode up to ``tail_ms`` past the last voiced frame; drop the rest of the hangover.
            trailing_ms = self._vad.clock_ms - event.at_ms
            self._end(trim_ms=max(0.0, trailing_ms - self._tail_ms))
        elif self._utterance_samples >= self._max_utterance_samples:
            self._end(trim_ms=0.0)  # a monologue: cut it and listen afresh
            self._vad.reset()

    async def set_hints(self, hints: Sequence[str]) -> None:
        """Applies to the utterances that end from now on."""
        self._hints = tuple(normalise_hints(hints))

    async def keep_alive(self) -> None:
        """Nothing to keep open: the decoder is local."""

    def events(self) -> AsyncIterator[TranscriptEvent]:
        return self._events.iterate()

    async def close(self) -> None:
        """Stop listening. What the caller said is still decoded (within a bound), including
        an utterance cut off by the hang-up."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            if self._utterance is not None:
                self._end(trim_ms=0.0)
            self._segments.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), self._close_timeout_s)
            except TimeoutError:
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker
        self._events.finish()
        log.info(
            "stt_closed", call_id=self._call_id, engine="pocketsphinx", utterances=self.utterances
        )

    # --- segmentation (event loop, microseconds per frame) -------------------------------

    def _pool(self) -> Executor:
        return self._executor or decoder_pool()

    def _remember(self, pcm16: PcmArray) -> None:
        self._preroll.append(pcm16)
        self._preroll_samples += pcm16.size
        while self._preroll:
            if self._preroll_samples - self._preroll[0].size < self._preroll_limit:
                break
            self._preroll_samples -= self._preroll.popleft().size

    def _begin(self) -> None:
        self._utterance = list(self._preroll)
        self._utterance_samples = self._preroll_samples
        self._preroll.clear()
        self._preroll_samples = 0
        self._events.put(SpeechStarted())

    def _end(self, *, trim_ms: float) -> None:
        assert self._utterance is not None
        audio = np.concatenate(self._utterance)
        trim = int(trim_ms * STT_RATE / 1000)
        if 0 < trim < audio.size:
            audio = audio[: audio.size - trim]
        self._utterance = None
        self._utterance_samples = 0
        self._segments.put_nowait(_Segment(audio.tobytes(), self._hints, time.monotonic()))

    # --- decoding (worker processes) -----------------------------------------------------

    async def _decode_segments(self) -> None:
        try:
            while (segment := await self._segments.get()) is not None:
                text, confidence, search = await self._decode(segment)
                self.utterances += 1
                latency_ms = (time.monotonic() - segment.ended_at) * 1000.0
                log.info(
                    "stt_utterance",
                    call_id=self._call_id,
                    grammar=search != sphinx_worker.LANGUAGE_MODEL_SEARCH,
                    audio_ms=len(segment.pcm16) * 1000 // (2 * STT_RATE),
                    words=len(text.split()),
                    decode_ms=round(latency_ms),
                )
                if text:
                    self._events.put(Final(text, confidence, stt_latency_ms=latency_ms))
                    self._events.put(UtteranceEnd())
        except SpeechToTextError as error:
            self._events.fail(error)
        except Exception:
            log.exception("stt_decoder_failed", call_id=self._call_id)
            self._events.fail(SpeechToTextError("pocketsphinx_failed"))

    async def _decode(self, segment: _Segment) -> tuple[str, float, str]:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._pool()
            try:
                return await loop.run_in_executor(
                    pool, sphinx_worker.decode, segment.pcm16, segment.hints
                )
            except BrokenProcessPool:
                # A decoder process died (PocketSphinx crashed): start a fresh pool, retry once.
                log.error("stt_decoder_process_died", call_id=self._call_id, attempt=attempt)
                if self._executor is None:
                    _replace_broken_pool(pool)
                else:
                    break
        raise SpeechToTextError("pocketsphinx_crashed")
