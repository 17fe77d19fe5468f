"""Audio for the phone line: G.711 mu-law, resampling, 20 ms framing and voice activity.

Twilio carries 8 kHz mono G.711 mu-law in 20 ms frames (160 bytes). Everything here works on
whole NumPy arrays (lookup tables for the codec, soxr for resampling) because a call sends
50 frames a second in each direction and a Python loop per sample would cost a core per
handful of calls. PCM is always 16-bit signed (``np.int16``), mono.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

PcmArray = npt.NDArray[np.int16]

TWILIO_RATE = 8000
"""Sample rate of Twilio media streams (and of mu-law everywhere in this project)."""
STT_RATE = 16000
"""Sample rate PocketSphinx's acoustic model was trained on."""
ESPEAK_RATE = 22050
"""Sample rate of the WAV that ``espeak-ng --stdout`` writes."""
FRAME_MS = 20
FRAME_BYTES = TWILIO_RATE * FRAME_MS // 1000
"""One 20 ms mu-law frame: 160 bytes, one byte per sample."""
MULAW_SILENCE = 0xFF
"""Mu-law code of a zero sample (the encoder maps 0 to 0xFF)."""

_BIAS = 0x84
_CLIP = 8159  # in 14-bit units


def _build_decode_table() -> PcmArray:
    codes = np.arange(256, dtype=np.int32)
    inverted = ~codes & 0xFF
    sign = inverted & 0x80
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> npt.NDArray[np.uint8]:
    # The classic reference encoder (Sun's g711.c, which CPython's audioop also follows) works
    # on 14 bits: shift first, so negative samples round the way every other codec rounds them.
    # Indexed by the int16 sample reinterpreted as uint16, so one table lookup encodes.
    samples = np.arange(65536, dtype=np.int32)
    samples = np.where(samples >= 32768, samples - 65536, samples) >> 2
    mask = np.where(samples < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(samples), _CLIP) + (_BIAS >> 2)
    segment = np.floor(np.log2(magnitude)).astype(np.int32) - 5
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    codes = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | mantissa)
    return ((codes ^ mask) & 0xFF).astype(np.uint8)


_DECODE = _build_decode_table()
_ENCODE = _build_encode_table()


def mulaw_to_pcm(data: bytes | bytearray | memoryview) -> PcmArray:
    """Decode G.711 mu-law bytes to 16-bit PCM samples (same rate, one sample per byte)."""
    codes = np.frombuffer(data, dtype=np.uint8)
    return _DECODE[codes]


def pcm_to_mulaw(pcm: npt.ArrayLike) -> bytes:
    """Encode 16-bit PCM samples to G.711 mu-law bytes."""
    samples = np.asarray(pcm, dtype=np.int16)
    return _ENCODE[samples.view(np.uint16)].tobytes()


def to_int16(samples: npt.NDArray[np.floating] | PcmArray) -> PcmArray:
    """Round and clip to int16 (a resampler's overshoot must not wrap around)."""
    if samples.dtype == np.int16:
        return samples.astype(np.int16, copy=False)
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


def resample(pcm: PcmArray, from_rate: int, to_rate: int) -> PcmArray:
    """Resample a whole signal in one call (band-limited, soxr high quality)."""
    if from_rate == to_rate or pcm.size == 0:
        return pcm.astype(np.int16, copy=True)
    out = soxr.resample(pcm.astype(np.float32), from_rate, to_rate, quality="HQ")
    return to_int16(out)


class StreamResampler:
    """Resample a signal that arrives in pieces, with no clicks at the piece boundaries.

    Resampling each 20 ms frame on its own would restart the filter every frame; the streaming
    resampler keeps its state between calls. It holds back a few milliseconds of output
    (filter delay) until :meth:`flush`.
    """

    def __init__(self, from_rate: int, to_rate: int, *, quality: str = "HQ") -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._quality = quality
        self._stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32", quality=quality)

    def process(self, pcm: PcmArray) -> PcmArray:
        return to_int16(self._stream.resample_chunk(pcm.astype(np.float32)))

    def flush(self) -> PcmArray:
        """Return the held-back tail and start afresh for the next signal."""
        tail = to_int16(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        self._stream = soxr.ResampleStream(
            self.from_rate, self.to_rate, 1, dtype="float32", quality=self._quality
        )
        return tail


def frame_mulaw(data: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Split mu-law into fixed-size frames, padding the last one with mu-law silence."""
    frames = [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)]
    if frames and len(frames[-1]) < frame_bytes:
        frames[-1] = frames[-1] + bytes([MULAW_SILENCE]) * (frame_bytes - len(frames[-1]))
    return frames


class MulawFramer:
    """Turn a stream of mu-law chunks of any size into whole 20 ms frames.

    TTS engines deliver audio in chunks that do not line up with frames; Twilio plays what it
    gets, but marks and barge-in (``clear``) work best when every outbound message is one frame.
    """

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    def push(self, chunk: bytes) -> list[bytes]:
        """Add audio; return the frames now complete (possibly none)."""
        self._pending.extend(chunk)
        whole = len(self._pending) - len(self._pending) % self.frame_bytes
        if whole == 0:
            return []
        ready = bytes(self._pending[:whole])
        del self._pending[:whole]
        return frame_mulaw(ready, self.frame_bytes)

    def flush(self) -> bytes | None:
        """The last partial frame padded with silence, or None when nothing is pending."""
        if not self._pending:
            return None
        last = frame_mulaw(bytes(self._pending), self.frame_bytes)[0]
        self._pending.clear()
        return last

    def reset(self) -> None:
        """Drop pending audio (barge-in: the rest of the utterance will not be played)."""
        self._pending.clear()


def mulaw_duration_ms(data: bytes | int, rate: int = TWILIO_RATE) -> float:
    """Play time of mu-law audio, given the bytes or their count (one byte per sample)."""
    count = data if isinstance(data, int) else len(data)
    return count * 1000.0 / rate


def pcm_duration_ms(samples: PcmArray | int, rate: int) -> float:
    """Play time of PCM audio, given the samples or their count."""
    count = samples if isinstance(samples, int) else int(samples.size)
    return count * 1000.0 / rate


def frame_energy_db(pcm: PcmArray) -> float:
    """RMS level of a frame in dBFS (0 dB is a full-scale square wave; silence is -100)."""
    if pcm.size == 0:
        return -100.0
    samples = pcm.astype(np.float64)
    rms = math.sqrt(float(np.dot(samples, samples)) / samples.size)
    if rms < 1e-9:
        return -100.0
    return max(-100.0, 20.0 * math.log10(rms / 32768.0))


class VadEventKind(enum.Enum):
    SPEECH_START = "speech_start"
    SPEECH_END = "speech_end"


@dataclass(frozen=True)
class VadEvent:
    """A change between silence and speech.

    ``at_ms`` is stream time (milliseconds of audio fed since the detector was created or
    reset): for a start, where the first voiced frame began (a start is only reported once
    ``min_speech_ms`` of speech has been heard, so it is reported late by that much); for an
    end, where the last voiced frame ended (reported ``hangover_ms`` later). ``speech_ms`` is
    the voiced time so far (start) or of the whole segment (end).
    """

    kind: VadEventKind
    at_ms: float
    speech_ms: float


@dataclass(frozen=True)
class VadConfig:
    """Thresholds of :class:`VoiceActivityDetector`.

    Phone speech sits around -35 to -15 dBFS, line noise below -55. The start threshold is
    higher than the continue threshold (hysteresis) so that quiet word endings do not cut a
    segment, and both rise to ``noise_margin_db`` above the tracked noise floor on a noisy
    line so that steady hiss is not taken for speech.
    """

    start_db: float = -40.0
    continue_db: float = -47.0
    noise_margin_db: float = 12.0
    min_speech_ms: float = 100.0
    hangover_ms: float = 700.0
    sample_rate: int = TWILIO_RATE


class VoiceActivityDetector:
    """Energy detector with hangover: speech starts after ``min_speech_ms`` of consecutive
    loud frames (so a click or a cough of one or two frames does not count) and ends after
    ``hangover_ms`` below the continue threshold (so pauses between words do not end a turn).
    """

    _NOISE_RISE = 0.02  # the floor follows rising noise slowly, so speech does not pull it up
    _NOISE_FALL = 0.5  # ...and falls fast when the line gets quiet again

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self.reset()

    def reset(self) -> None:
        self._clock_ms = 0.0
        self._in_speech = False
        self._candidate_start_ms: float | None = None
        self._last_voiced_end_ms = 0.0
        self._speech_start_ms = 0.0
        self._silence_ms = 0.0
        self._noise_db = -70.0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def clock_ms(self) -> float:
        """Stream time: milliseconds of audio fed since creation or reset."""
        return self._clock_ms

    @property
    def noise_floor_db(self) -> float:
        return self._noise_db

    def thresholds(self) -> tuple[float, float]:
        """The (start, continue) thresholds in force, in dBFS."""
        floor = self._noise_db + self.config.noise_margin_db
        return max(self.config.start_db, floor), max(self.config.continue_db, floor - 3.0)

    def feed(self, frame_pcm: PcmArray) -> VadEvent | None:
        """Account for one frame of PCM (any length; 20 ms is usual) and report a change."""
        frame_ms = frame_pcm.size * 1000.0 / self.config.sample_rate
        frame_start = self._clock_ms
        self._clock_ms += frame_ms
        level = frame_energy_db(frame_pcm)
        start_db, continue_db = self.thresholds()

        if self._in_speech:
            if level >= continue_db:
                self._last_voiced_end_ms = self._clock_ms
                self._silence_ms = 0.0
                return None
            self._silence_ms += frame_ms
            if self._silence_ms >= self.config.hangover_ms:
                self._in_speech = False
                return VadEvent(
                    VadEventKind.SPEECH_END,
                    at_ms=self._last_voiced_end_ms,
                    speech_ms=self._last_voiced_end_ms - self._speech_start_ms,
                )
            return None

        if level >= start_db:
            if self._candidate_start_ms is None:
                self._candidate_start_ms = frame_start
            voiced_ms = self._clock_ms - self._candidate_start_ms
            if voiced_ms >= self.config.min_speech_ms:
                self._in_speech = True
                self._speech_start_ms = self._candidate_start_ms
                self._candidate_start_ms = None
                self._last_voiced_end_ms = self._clock_ms
                self._silence_ms = 0.0
                return VadEvent(VadEventKind.SPEECH_START, self._speech_start_ms, voiced_ms)
            return None

        self._candidate_start_ms = None
        self._track_noise(level)
        return None

    def _track_noise(self, level: float) -> None:
        rate = self._NOISE_RISE if level > self._noise_db else self._NOISE_FALL
        self._noise_db += rate * (level - self._noise_db)


TELEPHONE_LOW_HZ = 300.0
TELEPHONE_HIGH_HZ = 3400.0


def telephone_band(
    pcm: PcmArray,
    rate: int,
    *,
    low_hz: float = TELEPHONE_LOW_HZ,
    high_hz: float = TELEPHONE_HIGH_HZ,
    edge_hz: float = 100.0,
) -> PcmArray:
    """What a telephone line leaves of a voice: 300–3400 Hz, at 8 kHz.

    For tests and benchmarks that must hear what a recogniser hears on a real call, not the
    full-band synthesis (espeak-ng's 22 kHz, or 8 kHz with everything below 300 Hz). The
    whole signal is filtered in one FFT with raised-cosine edges ``edge_hz`` wide, which is
    exact enough for offline audio and needs no filter library.
    """
    narrow = resample(pcm, rate, TWILIO_RATE).astype(np.float64)
    if narrow.size == 0:
        return narrow.astype(np.int16)
    spectrum = np.fft.rfft(narrow)
    freqs = np.fft.rfftfreq(narrow.size, 1.0 / TWILIO_RATE)
    gain = np.ones_like(freqs)
    rise = np.clip((freqs - (low_hz - edge_hz / 2)) / edge_hz, 0.0, 1.0)
    fall = np.clip(((high_hz + edge_hz / 2) - freqs) / edge_hz, 0.0, 1.0)
    gain *= 0.5 - 0.5 * np.cos(np.pi * rise)
    gain *= 0.5 - 0.5 * np.cos(np.pi * fall)
    return to_int16(np.fft.irfft(spectrum * gain, n=narrow.size))


def telephone_mulaw(pcm: PcmArray, rate: int) -> bytes:
    """``pcm`` through a telephone channel: band-limited to 300–3400 Hz, 8 kHz G.711 mu-law."""
    return pcm_to_mulaw(telephone_band(pcm, rate))
