"""The caller's voice: scenario lines as 20 ms mu-law frames, trimmed to the speech.

A recogniser that only ever hears the agent's own voice is tested on the easiest caller there
is. Besides that voice (``espeak``, the default, unchanged so that tests stay reproducible)
and a tone for load tests, callers can speak with other espeak-ng voices (other pitch,
speed, formant sets, the Klatt synthesiser) and with a neural Piper voice, and those reach
the server the way a phone call does: band-limited to 300-3400 Hz and encoded as 8 kHz
mu-law by :func:`voice.audio.telephone_mulaw`, from the engine's full-band output.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from voice.audio import (
    FRAME_BYTES,
    MULAW_SILENCE,
    TWILIO_RATE,
    PcmArray,
    frame_energy_db,
    frame_mulaw,
    mulaw_to_pcm,
    pcm_to_mulaw,
    telephone_mulaw,
)
from voice.simulator.wire import SimulatorError

SILENCE_FRAME = bytes([MULAW_SILENCE]) * FRAME_BYTES
VOICED_DB = -50.0
"""Frames above this level count as speech when trimming synthesised lines."""
SYNTHESIS_TIMEOUT_S = 60.0
"""Longest a caller line may take to synthesise (a stuck engine, not a long line)."""

Voice = str
"""A key of :data:`VOICES`."""


@dataclass(frozen=True)
class CallerVoice:
    """How one caller voice is made: ``engine`` with ``model`` at ``words_per_minute``."""

    engine: Literal["agent", "tone", "espeak", "piper"]
    description: str
    model: str = ""
    """The espeak-ng voice (``en-us+f2``) or the Piper voice (``joe``)."""
    words_per_minute: int = 160


VOICES: dict[str, CallerVoice] = {
    "espeak": CallerVoice("agent", "the agent's own espeak-ng voice, as the agent sends it"),
    "tone": CallerVoice("tone", "a 220 Hz tone as long as the line (load tests, STT fakes)"),
    "espeak-m3": CallerVoice(
        "espeak", "espeak-ng en-us, male variant m3, a little fast", "en-us+m3", 175
    ),
    "espeak-f2": CallerVoice(
        "espeak", "espeak-ng en-us, female variant f2, unhurried", "en-us+f2", 145
    ),
    "espeak-klatt": CallerVoice(
        "espeak", "espeak-ng en-us through its Klatt formant synthesiser", "en-us+klatt", 160
    ),
    "piper-joe": CallerVoice("piper", "Piper neural voice en_US-joe-medium", "joe"),
}
CALLER_VOICES = ("espeak-m3", "espeak-f2", "espeak-klatt", "piper-joe")
"""Voices that are not the agent's, each through the telephone channel: the spoken-call
evaluation's callers."""


def voice_spec(name: str) -> CallerVoice:
    """The voice called ``name``; ValueError naming the known ones otherwise."""
    spec = VOICES.get(name)
    if spec is None:
        raise ValueError(f"unknown caller voice {name!r}; known: {', '.join(VOICES)}")
    return spec


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
    spec = voice_spec(voice)
    if spec.engine == "tone":
        frames = tone_frames(text)
    elif spec.engine == "agent":
        from voice.tts.espeak import EspeakTTS

        async with asyncio.timeout(SYNTHESIS_TIMEOUT_S):
            audio = b"".join([chunk async for chunk in EspeakTTS().synthesize(text)])
        frames = trim_silence(frame_mulaw(audio))
    else:
        async with asyncio.timeout(SYNTHESIS_TIMEOUT_S):
            if spec.engine == "piper":
                pcm, rate = await _piper_pcm(text, spec.model)
            else:
                pcm, rate = await espeak_pcm(text, spec.model, spec.words_per_minute)
        frames = trim_silence(frame_mulaw(telephone_mulaw(pcm, rate)))
    _SPOKEN[key] = frames
    return frames


async def espeak_pcm(text: str, voice: str, words_per_minute: int) -> tuple[PcmArray, int]:
    """``text`` spoken by espeak-ng ``voice``, full band (16-bit PCM and its sample rate).

    The agent's engine (:class:`voice.tts.espeak.EspeakTTS`) already narrows its output to
    8 kHz mu-law; a caller's voice must reach the telephone channel before that happens.
    """
    from voice.tts.espeak import WavStreamParser

    try:
        process = await asyncio.create_subprocess_exec(
            "espeak-ng",
            "--stdout",
            "-v",
            voice,
            "-s",
            str(words_per_minute),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        raise SimulatorError("espeak-ng is not installed (`make install` installs it)") from None
    try:
        wav, _ = await process.communicate(text.encode("utf-8"))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise SimulatorError(f"espeak-ng voice {voice!r} failed (exit {process.returncode})")
    parser = WavStreamParser()
    pcm = parser.feed(wav)
    if parser.sample_rate is None:
        raise SimulatorError(f"espeak-ng voice {voice!r} gave no audio")
    return pcm, parser.sample_rate


async def _piper_pcm(text: str, voice: str) -> tuple[PcmArray, int]:
    from voice.tts.base import TextToSpeechError
    from voice.tts.piper import synthesize_pcm

    try:
        return await asyncio.to_thread(synthesize_pcm, text, voice)
    except TextToSpeechError as exc:
        raise SimulatorError(
            f"the Piper voice {voice!r} is not usable ({exc}): `make install` installs "
            "piper-tts and requirements/voices.txt"
        ) from None
