"""Mu-law codec, resampling, framing, durations and the voice activity detector."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tests.voice.signals import click, join, pcm_frames, quiet, voiced
from voice.audio import (
    FRAME_BYTES,
    MULAW_SILENCE,
    MulawFramer,
    StreamResampler,
    VadConfig,
    VadEventKind,
    VoiceActivityDetector,
    frame_energy_db,
    frame_mulaw,
    mulaw_duration_ms,
    mulaw_to_pcm,
    pcm_duration_ms,
    pcm_to_mulaw,
    resample,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


def sine(frequency: float, rate: int, ms: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (amplitude * np.sin(2 * math.pi * frequency * t)).astype(np.int16)


def dominant_frequency(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.argmax(spectrum) * rate / pcm.size)


# --- G.711 mu-law ------------------------------------------------------------------------


def test_mulaw_codec_matches_the_reference_implementation_for_every_sample() -> None:
    # CPython's own C codec is the reference; it exists up to 3.12 (the project needs < 3.13).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    assert pcm_to_mulaw(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)
    codes = bytes(range(256))
    assert mulaw_to_pcm(codes).tobytes() == audioop.ulaw2lin(codes, 2)


def test_known_mulaw_codes() -> None:
    assert pcm_to_mulaw(np.array([0], np.int16)) == bytes([MULAW_SILENCE])
    assert pcm_to_mulaw(np.array([32767, -32768], np.int16)) == bytes([0x80, 0x00])
    assert mulaw_to_pcm(bytes([0x80, 0x00, 0xFF, 0x7F])).tolist() == [32124, -32124, 0, 0]


def test_every_code_survives_decode_then_encode() -> None:
    codes = bytes(range(256))
    round_trip = pcm_to_mulaw(mulaw_to_pcm(codes))
    # 0x7F is "negative zero", which encodes back to 0xFF; every other code is exact.
    assert [a for a, b in zip(codes, round_trip, strict=True) if a != b] == [0x7F]


def test_encode_then_decode_stays_within_the_quantisation_step() -> None:
    decoded = mulaw_to_pcm(pcm_to_mulaw(ALL_SAMPLES)).astype(np.int32)
    error = np.abs(decoded - np.clip(ALL_SAMPLES.astype(np.int32), -32124, 32124))
    # mu-law steps grow with the level (one step is at most 1/8 of it), and are 8 or 16 near 0.
    assert np.all(error <= np.maximum(16, np.abs(ALL_SAMPLES.astype(np.int32)) // 8))


def test_codec_output_types_and_sizes() -> None:
    pcm = mulaw_to_pcm(b"\x00" * FRAME_BYTES)
    assert pcm.dtype == np.int16 and pcm.size == FRAME_BYTES
    assert len(pcm_to_mulaw(np.zeros(320, np.int16))) == 320


# --- resampling --------------------------------------------------------------------------


@pytest.mark.parametrize(("from_rate", "to_rate"), [(8000, 16000), (16000, 8000), (22050, 8000)])
def test_resample_keeps_duration_and_pitch(from_rate: int, to_rate: int) -> None:
    tone = sine(440.0, from_rate, 1000)
    out = resample(tone, from_rate, to_rate)
    assert out.dtype == np.int16
    assert abs(out.size - to_rate) <= 2
    assert dominant_frequency(out, to_rate) == pytest.approx(440.0, abs=2.0)


def test_resample_to_8k_removes_what_the_phone_cannot_carry() -> None:
    high = sine(6000.0, 22050, 500)
    out = resample(high, 22050, 8000)[100:-100]  # the ends carry the filter's edge transient
    assert np.abs(out).max() < 100  # 6 kHz is above the Nyquist frequency of 8 kHz


def test_stream_resampler_matches_one_shot_resampling_frame_by_frame() -> None:
    tone = sine(300.0, 8000, 1000)
    stream = StreamResampler(8000, 16000)
    pieces = [stream.process(frame) for frame in pcm_frames(tone)]
    streamed = np.concatenate([*pieces, stream.flush()])
    assert abs(streamed.size - 16000) <= 2
    # No clicks at frame boundaries: the sample-to-sample step never exceeds a clean sine's.
    steps = np.abs(np.diff(streamed[200:-200].astype(np.int32)))
    assert steps.max() < 8000 * 2 * math.pi * 300 / 16000 * 1.1


def test_resampling_clips_instead_of_wrapping() -> None:
    square = np.tile(np.array([32767] * 20 + [-32768] * 20, np.int16), 50)
    out = resample(square, 8000, 16000)
    assert out.max() == 32767 and out.min() == -32768  # overshoot clipped, not wrapped


# --- framing and durations -----------------------------------------------------------------


def test_frames_are_160_bytes_and_the_last_is_padded_with_silence() -> None:
    audio = bytes(range(200)) * 2  # 400 bytes: two whole frames and 80 bytes
    frames = frame_mulaw(audio)
    assert [len(frame) for frame in frames] == [160, 160, 160]
    assert b"".join(frames)[:400] == audio
    assert frames[-1][80:] == bytes([MULAW_SILENCE]) * 80
    assert frame_mulaw(b"") == []


def test_framer_reassembles_arbitrary_chunks_into_frames() -> None:
    audio = bytes(np.random.default_rng(3).integers(0, 256, 1000, dtype=np.uint8))
    framer = MulawFramer()
    frames: list[bytes] = []
    for start in range(0, len(audio), 77):
        frames += framer.push(audio[start : start + 77])
    last = framer.flush()
    assert last is not None
    frames.append(last)
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    assert b"".join(frames)[: len(audio)] == audio
    assert len(frames) == math.ceil(len(audio) / FRAME_BYTES)
    assert framer.flush() is None


def test_framer_reset_drops_pending_audio() -> None:
    framer = MulawFramer()
    assert framer.push(b"\x01" * 100) == []
    framer.reset()
    assert framer.flush() is None


def test_durations() -> None:
    assert mulaw_duration_ms(b"\xff" * 160) == 20.0
    assert mulaw_duration_ms(8000) == 1000.0
    assert pcm_duration_ms(np.zeros(16000, np.int16), 16000) == 1000.0
    assert pcm_duration_ms(11025, 22050) == 500.0


def test_frame_energy() -> None:
    assert frame_energy_db(np.zeros(160, np.int16)) == -100.0
    full_square = np.array([32767, -32767] * 80, np.int16)
    assert frame_energy_db(full_square) == pytest.approx(0.0, abs=0.01)
    assert frame_energy_db(sine(1000, 8000, 20, amplitude=3276.7)) == pytest.approx(-23.0, abs=0.3)


# --- voice activity ------------------------------------------------------------------------


def run_vad(pcm: np.ndarray, config: VadConfig | None = None) -> list[tuple[str, float]]:
    vad = VoiceActivityDetector(config)
    events = []
    for frame in pcm_frames(pcm):
        event = vad.feed(frame)
        if event is not None:
            events.append((event.kind.value, event.at_ms))
    return events


def test_vad_reports_speech_start_and_end_with_hangover() -> None:
    vad = VoiceActivityDetector()
    events = []
    for index, frame in enumerate(pcm_frames(join(quiet(500), voiced(600), quiet(1000)))):
        event = vad.feed(frame)
        if event is not None:
            events.append((index, event))
    (start_index, start), (end_index, end) = events
    assert start.kind is VadEventKind.SPEECH_START and end.kind is VadEventKind.SPEECH_END
    assert start.at_ms == pytest.approx(500, abs=20)
    assert start_index * 20 == pytest.approx(500 + 100, abs=20)  # reported after min speech
    assert end.at_ms == pytest.approx(1100, abs=20)
    assert end_index * 20 == pytest.approx(1100 + 700, abs=40)  # reported after the hangover
    assert end.speech_ms == pytest.approx(600, abs=40)


def test_vad_ignores_silence_and_line_noise() -> None:
    assert run_vad(quiet(3000)) == []
    assert run_vad(quiet(3000, level_db=-52)) == []


def test_vad_ignores_a_click_shorter_than_min_speech() -> None:
    assert run_vad(join(quiet(300), click(40), quiet(1000))) == []
    assert run_vad(join(quiet(300), click(40), quiet(1000)), VadConfig(min_speech_ms=40)) != []


def test_vad_keeps_one_segment_across_pauses_between_words() -> None:
    words = join(voiced(300), quiet(250), voiced(300), quiet(400), voiced(300), quiet(1000))
    assert [kind for kind, _ in run_vad(words)] == ["speech_start", "speech_end"]


def test_vad_hangover_is_configurable() -> None:
    words = join(voiced(300), quiet(300), voiced(300), quiet(1000))
    short = VadConfig(hangover_ms=200)
    assert [kind for kind, _ in run_vad(words, short)] == ["speech_start", "speech_end"] * 2


def test_vad_rises_above_a_noisy_line() -> None:
    # Steady hum just under the start threshold raises the noise floor, so the thresholds
    # follow it; speech well above the hum is still found.
    hum = quiet(2000, level_db=-43)
    vad = VoiceActivityDetector()
    for frame in pcm_frames(hum):
        assert vad.feed(frame) is None
    assert vad.noise_floor_db > -50
    start, _ = vad.thresholds()
    assert start > VadConfig().start_db
    events = [vad.feed(frame) for frame in pcm_frames(join(voiced(500, level_db=-12), hum))]
    assert [e.kind for e in events if e is not None] == [
        VadEventKind.SPEECH_START,
        VadEventKind.SPEECH_END,
    ]


def test_vad_reset_starts_a_new_stream() -> None:
    vad = VoiceActivityDetector()
    for frame in pcm_frames(voiced(300)):
        vad.feed(frame)
    assert vad.in_speech
    vad.reset()
    assert not vad.in_speech and vad.clock_ms == 0.0
