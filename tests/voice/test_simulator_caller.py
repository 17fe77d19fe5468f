"""The simulated caller's own pieces: the playback clock that decides when marks are echoed,
the pacing schedule, the caller voices, and which stored turns answer which line.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from intake.scenario import Line, Scenario
from tests.voice.simulator_helpers import ACCOUNT_SID, CALL_SID, scenario
from voice import simulator
from voice.audio import FRAME_BYTES, mulaw_to_pcm
from voice.simulator import (
    SILENCE_FRAME,
    CallResult,
    FrameSchedule,
    LineResult,
    Playback,
    TranscriptTurn,
    TwilioCaller,
)

# --- the playback clock ------------------------------------------------------------------------


def test_mark_is_due_only_once_the_audio_before_it_has_played() -> None:
    playback = Playback()
    for _ in range(50):  # one second of audio arriving at once
        playback.media(FRAME_BYTES, now=10.0)
    assert playback.mark("u1", now=10.1) == []
    assert playback.due(10.99) == []
    assert not playback.idle(10.99)
    assert playback.due(11.0) == ["u1"]
    assert playback.idle(11.0)


def test_mark_with_nothing_queued_is_echoed_at_once() -> None:
    playback = Playback()
    playback.media(FRAME_BYTES, now=1.0)
    assert playback.mark("u1", now=2.0) == ["u1"]


def test_marks_echo_in_order_each_after_its_own_audio() -> None:
    playback = Playback()
    playback.media(FRAME_BYTES * 25, now=0.0)  # 0.5 s
    playback.mark("u1", now=0.0)
    playback.media(FRAME_BYTES * 25, now=0.1)  # queued behind: plays 0.5 s to 1.0 s
    playback.mark("u2", now=0.1)
    assert playback.next_due_at() == pytest.approx(0.5)
    assert playback.due(0.6) == ["u1"]
    assert playback.due(0.9) == []
    assert playback.due(1.0) == ["u2"]


def test_audio_arriving_after_a_gap_starts_playing_when_it_arrives() -> None:
    playback = Playback()
    playback.media(FRAME_BYTES * 50, now=0.0)
    playback.media(FRAME_BYTES * 50, now=5.0)
    assert playback.ends_at == pytest.approx(6.0)


def test_speed_shortens_playback() -> None:
    playback = Playback(speed=4.0)
    playback.media(FRAME_BYTES * 50, now=0.0)
    playback.mark("u1", now=0.0)
    assert playback.due(0.24) == []
    assert playback.due(0.25) == ["u1"]


def test_clear_drops_the_audio_and_echoes_every_pending_mark_at_once() -> None:
    playback = Playback()
    playback.media(FRAME_BYTES * 100, now=0.0)
    playback.mark("u1", now=0.0)
    playback.media(FRAME_BYTES * 100, now=0.0)
    playback.mark("u2", now=0.0)
    assert playback.clear(now=0.5) == ["u1", "u2"]
    assert playback.idle(0.5)
    assert playback.due(100.0) == []


def test_frames_are_late_when_they_arrive_after_they_should_have_played() -> None:
    playback = Playback(late_tolerance_s=0.01)
    playback.media(FRAME_BYTES, now=0.0)  # first of the utterance: sets the deadlines
    playback.media(FRAME_BYTES, now=0.02)  # due at 0.02: on time
    assert not playback.media(FRAME_BYTES, now=0.045)  # due at 0.04, within the tolerance
    assert playback.media(FRAME_BYTES, now=0.2)  # due at 0.06: the caller heard a gap
    assert playback.late_frames == 1
    assert playback.max_lateness_s == pytest.approx(0.2 - 0.06 - 0.01)
    playback.mark("u1", now=0.2)
    assert not playback.media(FRAME_BYTES, now=5.0)  # a new utterance starts its own clock


# --- pacing ------------------------------------------------------------------------------------


def test_schedule_is_computed_from_the_start_and_does_not_drift() -> None:
    schedule = FrameSchedule(100.0)
    assert schedule.due(0) == 100.0
    assert schedule.due(1) == pytest.approx(100.02)
    # An hour of frames later the schedule is still exact (no accumulated sleep error).
    assert schedule.due(180_000) == pytest.approx(100.0 + 3600.0, abs=1e-6)


def test_schedule_catches_up_after_a_stall_instead_of_shifting() -> None:
    schedule = FrameSchedule(0.0)
    assert schedule.delay(10, now=0.1) == pytest.approx(0.1)
    # Stalled for half a second: the overdue frames go at once, the next ones on time.
    assert schedule.delay(10, now=0.6) == 0.0
    assert schedule.delay(40, now=0.6) == pytest.approx(0.2)


def test_schedule_speed_shortens_the_interval() -> None:
    assert FrameSchedule(0.0, speed=4.0).due(4) == pytest.approx(0.02)
    with pytest.raises(ValueError):
        FrameSchedule(0.0, speed=0.0)


# --- the caller's voice ------------------------------------------------------------------------


def test_tone_voice_is_whole_voiced_frames_as_long_as_the_line() -> None:
    frames = simulator.tone_frames("x" * 40, ms_per_character=50.0)
    assert len(frames) == 100
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    assert all(simulator.is_voiced(frame) for frame in frames[:-1])


def test_trim_silence_keeps_the_speech_and_the_pauses_inside_it() -> None:
    voiced = simulator.tone_frames("hello")[0]
    frames = [SILENCE_FRAME, voiced, SILENCE_FRAME, voiced, SILENCE_FRAME, SILENCE_FRAME]
    assert simulator.trim_silence(frames) == [voiced, SILENCE_FRAME, voiced]
    assert simulator.trim_silence([SILENCE_FRAME]) == []


async def test_espeak_voice_gives_trimmed_frames() -> None:
    frames = await simulator.caller_frames("yes", "espeak")
    assert frames
    assert simulator.is_voiced(frames[0]) and simulator.is_voiced(frames[-1])
    assert all(len(frame) == FRAME_BYTES for frame in frames)


def band_fractions(frames: list[bytes]) -> tuple[float, float]:
    """Shares of the energy below 200 Hz and above 3600 Hz (a phone line passes 300-3400)."""
    pcm = mulaw_to_pcm(b"".join(frames)).astype(np.float64)
    power = np.abs(np.fft.rfft(pcm)) ** 2
    freqs = np.fft.rfftfreq(pcm.size, 1 / 8000)
    total = float(power.sum())
    return float(power[freqs < 200].sum()) / total, float(power[freqs > 3600].sum()) / total


def median_pitch_hz(frames: list[bytes]) -> float:
    """Median fundamental of the loud 40 ms windows, by autocorrelation (70-400 Hz)."""
    pcm = mulaw_to_pcm(b"".join(frames)).astype(np.float64)
    pitches = []
    for start in range(0, pcm.size - 320, 160):
        window = pcm[start : start + 320]
        if np.sqrt(np.mean(window**2)) < 500:
            continue
        window = window - window.mean()
        correlation = np.correlate(window, window, "full")[319:]
        lag = 20 + int(np.argmax(correlation[20:115]))
        if correlation[lag] > 0.3 * correlation[0]:
            pitches.append(8000 / lag)
    return float(np.median(pitches))


@pytest.mark.parametrize("voice", simulator.CALLER_VOICES)
async def test_caller_voices_reach_the_line_as_telephone_band_speech(voice: str) -> None:
    line = "Yes, I would like to book an appointment for next Tuesday morning."
    frames = await simulator.caller_frames(line, voice)
    assert 2.0 < len(frames) * 0.02 < 8.0
    assert simulator.is_voiced(frames[0]) and simulator.is_voiced(frames[-1])
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    below, above = band_fractions(frames)
    assert below < 1e-3 and above < 1e-3
    # The agent's own voice is not band-limited: the channel, not the engine, did this.
    agent_below, _ = band_fractions(await simulator.caller_frames(line, "espeak"))
    assert agent_below > 10 * below


async def test_caller_voices_differ_in_pitch_and_pace() -> None:
    line = "Yes, I would like to book an appointment for next Tuesday morning."
    low = await simulator.caller_frames(line, "espeak-m3")
    high = await simulator.caller_frames(line, "espeak-f2")
    assert median_pitch_hz(high) > 1.4 * median_pitch_hz(low)
    assert len(high) > len(low)  # 145 words a minute against 175


def test_an_unknown_voice_is_refused_before_the_call_is_placed() -> None:
    with pytest.raises(ValueError, match="unknown caller voice 'robot'.*piper-joe"):
        TwilioCaller(
            simulator.InProcessTransport(),
            scenario(Line(caller="hello")),
            voice="robot",
            account_sid=ACCOUNT_SID,
            auth_token="token",
            public_base_url="https://clinic.example.com",
        )


# --- stored turns, by the line they answer -----------------------------------------------------


def test_stored_turns_belong_to_the_last_caller_action_begun_before_them() -> None:
    t0 = dt.datetime(2025, 1, 6, 15, 0, tzinfo=dt.UTC)
    scenario = Scenario(name="n", slug="s", caller_number="", lines=[], expect={})
    result = CallResult(
        scenario=scenario, call_sid=CALL_SID, stream_sid="", account_sid="", started_at=0.0
    )
    result.lines = [
        LineResult(1, Line(caller="hello"), 1.0, t0 + dt.timedelta(seconds=5)),
        LineResult(2, Line(event="slot_taken"), 2.0, t0 + dt.timedelta(seconds=9)),
        LineResult(3, Line(caller="the first one"), 3.0, t0 + dt.timedelta(seconds=10)),
    ]

    def turn(sequence: int, seconds: float, speaker: str = "agent") -> TranscriptTurn:
        return TranscriptTurn(sequence, speaker, f"t{sequence}", t0 + dt.timedelta(seconds=seconds))

    result.transcript = [turn(1, 0), turn(2, 6, "caller"), turn(3, 7), turn(4, 9.5), turn(5, 11)]
    assert [t.sequence for t in result.turns_for_line(0)] == [1]
    assert [t.sequence for t in result.turns_for_line(1)] == [2, 3, 4]  # events open no window
    assert result.turns_for_line(2) == []
    assert [t.sequence for t in result.turns_for_line(3)] == [5]
