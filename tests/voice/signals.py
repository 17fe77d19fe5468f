"""Synthetic caller audio for the voice tests: speech-like tones, quiet lines, clicks, and
real synthetic speech from espeak-ng, all as 8 kHz PCM or 20 ms mu-law frames."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import numpy as np

from voice.audio import FRAME_MS, TWILIO_RATE, PcmArray, frame_mulaw, pcm_to_mulaw
from voice.stt.base import SpeechToText
from voice.tts.espeak import EspeakTTS


def _level(db: float) -> float:
    return 32767 * math.pow(10, db / 20)


def voiced(ms: float, *, level_db: float = -18.0, f0: float = 140.0) -> PcmArray:
    """A vowel-like sound: a harmonic series with a syllable-rate (4 Hz) swell."""
    t = np.arange(int(ms * TWILIO_RATE / 1000)) / TWILIO_RATE
    wave = sum(np.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 12))
    envelope = 0.75 + 0.25 * np.sin(2 * math.pi * 4 * t)
    wave = wave * envelope
    peak = float(np.max(np.abs(wave))) or 1.0
    return (wave / peak * _level(level_db) * math.sqrt(2)).astype(np.int16)


def quiet(ms: float, *, level_db: float = -66.0, seed: int = 0) -> PcmArray:
    """Line noise: white noise at a low level (the same noise for the same seed)."""
    count = int(ms * TWILIO_RATE / 1000)
    return (
        np.random.default_rng(seed)
        .normal(0.0, _level(level_db), count)
        .clip(-32768, 32767)
        .astype(np.int16)
    )


def click(ms: float = 20.0, *, level_db: float = -6.0) -> PcmArray:
    """A short loud burst (a tap on the handset)."""
    count = int(ms * TWILIO_RATE / 1000)
    return (
        np.random.default_rng(1)
        .normal(0.0, _level(level_db), count)
        .clip(-32768, 32767)
        .astype(np.int16)
    )


def join(*parts: PcmArray) -> PcmArray:
    return np.concatenate(parts).astype(np.int16)


def frames_of(pcm8k: PcmArray) -> list[bytes]:
    """20 ms mu-law frames, as Twilio delivers them."""
    return frame_mulaw(pcm_to_mulaw(pcm8k))


def pcm_frames(pcm8k: PcmArray) -> list[PcmArray]:
    size = TWILIO_RATE * FRAME_MS // 1000
    return [pcm8k[i : i + size] for i in range(0, pcm8k.size - size + 1, size)]


async def espeak_mulaw(text: str, *, words_per_minute: int = 130) -> bytes:
    """Real synthetic speech, spoken clearly (130 words a minute), as 8 kHz mu-law."""
    tts = EspeakTTS(words_per_minute=words_per_minute)
    return b"".join([chunk async for chunk in tts.synthesize(text)])


async def feed(stt: SpeechToText, frames: Sequence[bytes], *, speedup: float = 0.0) -> None:
    """Send frames to an engine, paced at ``speedup`` times real time (0: as fast as possible,
    yielding to the event loop every frame)."""
    pause = FRAME_MS / 1000 / speedup if speedup else 0.0
    for frame in frames:
        await stt.send(frame)
        await asyncio.sleep(pause)
