"""The caller's voice: scenario lines as 20 ms mu-law frames, trimmed to the speech."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from voice.audio import (
    FRAME_BYTES,
    MULAW_SILENCE,
    TWILIO_RATE,
    frame_energy_db,
    frame_mulaw,
    mulaw_to_pcm,
    pcm_to_mulaw,
)

SILENCE_FRAME = bytes([MULAW_SILENCE]) * FRAME_BYTES
VOICED_DB = -50.0
"""Frames above this level count as speech when trimming synthesised lines."""

Voice = Literal["espeak", "tone"]


def is_voiced(frame: bytes) -> bool:
    return frame_energy_db(mulaw_to_pcm(frame)) > VOICED_DB


def trim_silence(frames: Sequence[bytes]) -> list[bytes]:
    """Drop leading and trailing quiet frames, so that "end of speech" is the last word."""
    voiced = [i for i, frame in enumerate(frames) if is_voiced(frame)]
    if not voiced:
        return []
    return list(frames[voiced[0] : voiced[-1] + 1])


def tone_frames(text: str, *, ms_per_character: float = 55.0) -> list[bytes]:
    """A steady tone as long as ``text`` would take to say: speech for a detector, cheaply.

    Load tests use it so that the bench measures the server, not espeak-ng, and so that
    every line is exactly one utterance to a voice-activity detector (espeak-ng pauses at
    commas, which a short endpointing window may take for the end of a turn).
    """
    count = int(max(400.0, ms_per_character * len(text)) * TWILIO_RATE / 1000)
    t = np.arange(count) / TWILIO_RATE
    amplitude = 32767 * 10 ** (-16 / 20)
    pcm = (amplitude * np.sin(2 * math.pi * 220.0 * t)).astype(np.int16)
    return frame_mulaw(pcm_to_mulaw(pcm))


_SPOKEN: dict[tuple[Voice, str], list[bytes]] = {}
"""Synthesised lines by (voice, text): calls in a test run or a bench repeat the same lines."""


async def caller_frames(text: str, voice: Voice = "espeak") -> list[bytes]:
    """``text`` as the caller's 20 ms mu-law frames, without leading or trailing silence."""
    key = (voice, text)
    cached = _SPOKEN.get(key)
    if cached is not None:
        return cached
    if voice == "tone":
        frames = tone_frames(text)
    else:
        from voice.tts.espeak import EspeakTTS

        audio = b"".join([chunk async for chunk in EspeakTTS().synthesize(text)])
        frames = trim_silence(frame_mulaw(audio))
    _SPOKEN[key] = frames
    return frames
