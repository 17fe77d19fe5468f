"""The call simulator's own pieces: Twilio's message shapes, the playback clock that decides
when marks are echoed, the pacing schedule, TwiML parsing, and a whole call played in-process
against a minimal stand-in agent that records what a server would receive.

The stand-in is not the real consumer (its tests play scenarios through it): it answers each
caller utterance with a tone and a mark, so that these tests pin down the caller alone.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.management import CommandError, call_command
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from twilio.request_validator import RequestValidator

from intake.scenario import Line, Scenario
from voice import simulator, twiml
from voice import twilio_wire as wire
from voice.audio import FRAME_BYTES, mulaw_to_pcm
from voice.simulator import (
    SILENCE_FRAME,
    CallResult,
    FrameSchedule,
    LineResult,
    NetworkTransport,
    Playback,
    SimulatorError,
    StreamMessages,
    TranscriptTurn,
    TwilioCaller,
)

STREAM_SID = "MZ" + "1" * 32
CALL_SID = "CA" + "2" * 32
ACCOUNT_SID = "AC" + "3" * 32


def messages() -> StreamMessages:
    return StreamMessages(stream_sid=STREAM_SID, call_sid=CALL_SID, account_sid=ACCOUNT_SID)


# --- Twilio's message shapes -----------------------------------------------------------------


def test_connected_is_the_documented_first_message_without_a_sequence_number() -> None:
    assert json.loads(messages().connected()) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }


def test_start_carries_the_call_the_format_and_the_custom_parameters() -> None:
    message = json.loads(messages().start({"token": "abc.def"}))
    assert message == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ACCOUNT_SID,
            "streamSid": STREAM_SID,
            "callSid": CALL_SID,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "abc.def"},
        },
        "streamSid": STREAM_SID,
    }


def test_media_numbers_chunks_and_stamps_them_on_the_audio_clock() -> None:
    builder = messages()
    builder.start({})
    first = json.loads(builder.media(SILENCE_FRAME))
    second = json.loads(builder.media(b"\x00" * FRAME_BYTES))
    assert first == {
        "event": "media",
        "sequenceNumber": "2",
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "0",
            "payload": base64.b64encode(SILENCE_FRAME).decode(),
        },
        "streamSid": STREAM_SID,
    }
    assert (second["sequenceNumber"], second["media"]["chunk"]) == ("3", "2")
    assert second["media"]["timestamp"] == "20"
    assert base64.b64decode(second["media"]["payload"]) == b"\x00" * FRAME_BYTES


def test_dtmf_mark_and_stop_have_the_documented_shapes() -> None:
    builder = messages()
    builder.start({})
    assert json.loads(builder.dtmf("0")) == {
        "event": "dtmf",
        "streamSid": STREAM_SID,
        "sequenceNumber": "2",
        "dtmf": {"track": "inbound_track", "digit": "0"},
    }
    assert json.loads(builder.mark("u1")) == {
        "event": "mark",
        "sequenceNumber": "3",
        "streamSid": STREAM_SID,
        "mark": {"name": "u1"},
    }
    assert json.loads(builder.stop()) == {
        "event": "stop",
        "sequenceNumber": "4",
        "streamSid": STREAM_SID,
        "stop": {"accountSid": ACCOUNT_SID, "callSid": CALL_SID},
    }


def test_the_servers_parser_reads_every_message_the_caller_sends() -> None:
    builder = messages()
    parsed = [
        wire.parse(builder.connected()),
        wire.parse(builder.start({"token": "t"})),
        wire.parse(builder.media(SILENCE_FRAME)),
        wire.parse(builder.dtmf("#")),
        wire.parse(builder.mark("u1")),
        wire.parse(builder.stop()),
    ]
    assert [type(event).__name__ for event in parsed] == [
        "Connected",
        "Start",
        "Media",
        "Dtmf",
        "Mark",
        "Stop",
    ]
    start = parsed[1]
    assert isinstance(start, wire.Start)
    assert start.custom_parameters == {"token": "t"}
    assert start.media_format.is_mulaw_8k_mono
    media = parsed[2]
    assert isinstance(media, wire.Media)
    assert media.payload == SILENCE_FRAME


def test_signature_is_the_one_twilios_validator_accepts() -> None:
    params = {"CallSid": CALL_SID, "From": "+16175550142"}
    url = "https://clinic.example.com/voice/answer"
    signature = simulator.twilio_signature("token", url, params)
    assert RequestValidator("token").validate(url, params, signature)
    assert not RequestValidator("other").validate(url, params, signature)


# --- TwiML -----------------------------------------------------------------------------------


def test_twiml_from_the_answer_view_gives_the_stream_url_token_and_dial() -> None:
    document = twiml.answer_with_stream(
        stream_url="wss://clinic.example.com/voice/stream/",
        token="tok.en",
        front_desk_number="+16175550000",
        dial_action="https://clinic.example.com/voice/dial-status",
    )
    instruction = simulator.parse_twiml(document)
    assert instruction.url == "wss://clinic.example.com/voice/stream/"
    assert instruction.parameters == {"token": "tok.en"}
    assert instruction.dial == "+16175550000"


def test_twiml_without_a_stream_is_refused() -> None:
    with pytest.raises(SimulatorError, match="rejected the call"):
        simulator.parse_twiml(twiml.reject_busy())
    with pytest.raises(SimulatorError, match="Stream"):
        simulator.parse_twiml(twiml.empty())
    with pytest.raises(SimulatorError, match="XML"):
        simulator.parse_twiml("busy")


def test_network_stream_goes_to_the_given_server_but_keeps_the_twiml_path() -> None:
    transport = NetworkTransport("http://127.0.0.1:8123")
    assert (
        transport.stream_address("wss://clinic.example.com/voice/stream/?x=1")
        == "ws://127.0.0.1:8123/voice/stream/?x=1"
    )
    assert (
        NetworkTransport("https://127.0.0.1:8443/").stream_address("ws://h/voice/stream/")
        == "wss://127.0.0.1:8443/voice/stream/"
    )
    with pytest.raises(SimulatorError):
        NetworkTransport("ftp://127.0.0.1:21")


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


# --- a whole call, in-process, against a stand-in agent ----------------------------------------

SPEED = 5.0
TOKEN = "stream-token-for-the-test"
AGENT_FRAME = simulator.tone_frames("agent")[0]


@dataclass
class AgentLog:
    """What the stand-in agent was sent, and when (``time.monotonic``)."""

    prompt_ms: dict[str, int] = field(default_factory=dict)
    hang_up_after: int = 99  # answers; then it closes once that answer has played
    clear_on_barge_in: bool = True
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    marks_sent: dict[str, float] = field(default_factory=dict)
    echoes: dict[str, float] = field(default_factory=dict)
    clears: list[float] = field(default_factory=list)
    voice_started: list[float] = field(default_factory=list)
    handshake_signature: str = ""

    def events(self) -> list[str]:
        return [message["event"] for _, message in self.received]


class StandInAgent(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Greets, answers each caller utterance or key with a tone and a mark, clears on barge-in."""

    log: ClassVar[AgentLog]

    async def connect(self) -> None:
        headers = dict(self.scope["headers"])
        self.log.handshake_signature = headers.get(b"x-twilio-signature", b"").decode()
        self.stream_sid = ""
        self.answers = 0
        self.pending: set[str] = set()
        self.in_speech = False
        self.closing = False
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        now = time.monotonic()
        assert text_data is not None
        self.log.received.append((now, json.loads(text_data)))
        try:
            event = wire.parse(text_data)
        except wire.MalformedMessage as exc:
            self.log.malformed.append(exc.reason)
            return
        if isinstance(event, wire.Start):
            self.stream_sid = event.stream_sid
            await self.say("greeting")
        elif isinstance(event, wire.Media):
            voiced = event.payload != SILENCE_FRAME
            if voiced and not self.in_speech:
                self.in_speech = True
                self.log.voice_started.append(now)
                if self.pending and self.log.clear_on_barge_in:
                    self.pending.clear()
                    self.log.clears.append(now)
                    await self.send(text_data=wire.clear_message(self.stream_sid))
            elif not voiced and self.in_speech:
                self.in_speech = False
                await self.answer()
        elif isinstance(event, wire.Dtmf):
            await self.answer()
        elif isinstance(event, wire.Mark):
            self.log.echoes[event.name] = now
            self.pending.discard(event.name)
            if self.closing and not self.pending:
                await self.close()

    async def answer(self) -> None:
        self.answers += 1
        await self.say(f"a{self.answers}")
        self.closing = self.answers >= self.log.hang_up_after

    async def say(self, name: str) -> None:
        milliseconds = self.log.prompt_ms.get(name, 400)
        for _ in range(milliseconds // 20):
            await self.send(text_data=wire.media_message(self.stream_sid, AGENT_FRAME))
        self.log.marks_sent[name] = time.monotonic()
        self.pending.add(name)
        await self.send(text_data=wire.mark_message(self.stream_sid, name))


@csrf_exempt
def answer_view(request: HttpRequest) -> HttpResponse:
    """The webhook as the server must see it: signed over PUBLIC_BASE_URL + path."""
    url = settings.PUBLIC_BASE_URL.rstrip("/") + request.path
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(
        url, request.POST.dict(), signature
    ):
        return HttpResponseForbidden()
    assert request.POST["CallStatus"] == "ringing"
    assert request.POST["Direction"] == "inbound"
    return HttpResponse(
        twiml.answer_with_stream(
            stream_url="wss://clinic.example.com/voice/stream/",
            token=TOKEN,
            front_desk_number="+16175550000",
        ),
        content_type=twiml.CONTENT_TYPE,
    )


urlpatterns = [path("voice/answer", answer_view)]


@pytest.fixture
def stand_in(settings: Any) -> type[StandInAgent]:
    settings.ROOT_URLCONF = __name__
    settings.PUBLIC_BASE_URL = "https://clinic.example.com"
    settings.TWILIO_AUTH_TOKEN = "test-auth-token"
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID

    class Agent(StandInAgent):
        log = AgentLog()

    return Agent


def scenario(*lines: Line) -> Scenario:
    return Scenario(
        name="stand-in", slug="stand-in", caller_number="+16175550142", lines=list(lines), expect={}
    )


async def play(agent: type[StandInAgent], *lines: Line) -> CallResult:
    return await TwilioCaller.in_process(
        agent.as_asgi(),
        scenario(*lines),
        speed=SPEED,
        voice="tone",
        settle_s=0.1,
        reply_timeout_s=5.0,
        hangup_timeout_s=3.0,
        load_from_db=False,
    )


async def test_a_call_speaks_twilios_protocol_from_webhook_to_hang_up(stand_in) -> None:
    stand_in.log.hang_up_after = 3
    started = time.monotonic()
    result = await play(stand_in, Line(caller="hello there"), Line(press="0"), Line(caller="bye"))
    elapsed = time.monotonic() - started
    log = stand_in.log

    assert result.warnings == []
    assert result.server_closed and result.close_code == 1000
    assert result.dial == "+16175550000"
    assert RequestValidator("test-auth-token").validate(
        "wss://clinic.example.com/voice/stream/", {}, log.handshake_signature
    )
    assert log.malformed == []
    events = log.events()
    assert events[:3] == ["connected", "start", "media"]
    assert "stop" not in events  # the server hung up: Twilio sends no stop then
    start = log.received[1][1]
    assert start["start"]["customParameters"] == {"token": TOKEN}
    assert start["start"]["callSid"] == result.call_sid
    assert start["start"]["accountSid"] == ACCOUNT_SID
    numbers = [int(message["sequenceNumber"]) for _, message in log.received[1:]]
    assert numbers == list(range(1, len(numbers) + 1))
    chunks = [int(m["media"]["chunk"]) for _, m in log.received if m["event"] == "media"]
    assert chunks == list(range(1, len(chunks) + 1))
    # Audio flows all the time, 50 frames a second of call time (loosely: a busy machine).
    assert len(chunks) == pytest.approx(elapsed * 50 * SPEED, rel=0.25)
    # A frame or two may be in flight when the agent closes, as on a real network.
    assert 0 <= result.sent.pop("media") - len(chunks) <= 2
    assert result.sent == {"connected": 1, "start": 1, "dtmf": 1, "mark": 4}


async def test_marks_are_echoed_after_their_audio_has_played(stand_in) -> None:
    stand_in.log.hang_up_after = 1
    stand_in.log.prompt_ms = {"greeting": 1000, "a1": 600}
    await play(stand_in, Line(caller="hello"))
    log = stand_in.log
    for name, milliseconds in (("greeting", 1000), ("a1", 600)):
        played = milliseconds / 1000 / SPEED
        waited = log.echoes[name] - log.marks_sent[name]
        assert played - 0.02 <= waited <= played + 0.15, name


async def test_the_caller_answers_only_after_the_prompt_has_played(stand_in) -> None:
    stand_in.log.hang_up_after = 2
    stand_in.log.prompt_ms = {"greeting": 1500, "a1": 1000}
    result = await play(stand_in, Line(caller="hello"), Line(caller="again"))
    log = stand_in.log
    assert log.clears == []
    assert log.voice_started[0] >= log.echoes["greeting"]
    assert log.voice_started[1] >= log.echoes["a1"]
    assert [line.reply_ms is not None for line in result.lines] == [True, True]
    assert all(0 <= (line.reply_ms or 0) < 500 for line in result.lines)
    assert result.lines[0].agent_ms == pytest.approx(1000)
    assert result.greeting_ms is not None


async def test_a_barge_in_line_talks_over_the_prompt_and_clear_echoes_its_mark(stand_in) -> None:
    stand_in.log.hang_up_after = 2
    stand_in.log.prompt_ms = {"a1": 10_000}  # 2 s at this speed: the caller will not wait
    result = await play(stand_in, Line(caller="hello"), Line(caller="wait", barge_in=True))
    log = stand_in.log
    assert len(log.clears) == 1
    # Talked over the prompt about a second (of playback) into it, not after it.
    into_prompt = log.voice_started[1] - log.marks_sent["a1"]
    assert 1.0 / SPEED - 0.05 <= into_prompt < 10.0 / SPEED
    # The pending mark came back at once on clear, long before its audio would have ended.
    assert log.echoes["a1"] - log.clears[0] < 0.1
    assert result.lines[1].interrupted_agent
    assert result.received["clear"] == 1
    assert result.warnings == []


async def test_a_hangup_line_sends_stop_and_nothing_after_it(stand_in) -> None:
    result = await play(stand_in, Line(caller="hello"), Line(hangup=True))
    events = stand_in.log.events()
    assert events[-1] == "stop"
    assert events.count("stop") == 1
    stop = stand_in.log.received[-1][1]["stop"]
    assert stop == {"accountSid": ACCOUNT_SID, "callSid": result.call_sid}
    assert not result.server_closed
    assert result.warnings == []


async def test_an_agent_that_never_answers_is_reported_not_waited_on_forever(stand_in) -> None:
    stand_in.log.hang_up_after = 1

    class Mute(stand_in):  # type: ignore[misc]
        async def answer(self) -> None:
            self.answers += 1

    result = await TwilioCaller.in_process(
        Mute.as_asgi(),
        scenario(Line(caller="hello")),
        speed=SPEED,
        voice="tone",
        reply_timeout_s=0.5,
        hangup_timeout_s=0.2,
        load_from_db=False,
    )
    assert result.warnings == [
        "line 1 'hello': the agent did not answer within 0.5 s",
        "the agent did not hang up within 0.2 s of its last answer",
    ]
    assert stand_in.log.events()[-1] == "stop"


async def test_a_refused_webhook_is_one_clear_error(stand_in) -> None:
    with pytest.raises(SimulatorError, match="HTTP 403"):
        await TwilioCaller.in_process(
            stand_in.as_asgi(),
            scenario(Line(caller="hello")),
            auth_token="wrong-token",
            load_from_db=False,
        )


async def test_an_unreachable_server_is_one_clear_error() -> None:
    with pytest.raises(SimulatorError, match="cannot reach the server"):
        await TwilioCaller.over_network(
            "http://127.0.0.1:9",
            scenario(Line(caller="hello")),
            account_sid=ACCOUNT_SID,
            load_from_db=False,
        )


async def test_a_call_in_a_caller_voice_sends_that_voice_on_the_stream(stand_in) -> None:
    stand_in.log.hang_up_after = 1
    result = await TwilioCaller.in_process(
        stand_in.as_asgi(),
        scenario(Line(caller="yes")),
        speed=SPEED,
        voice="espeak-f2",
        settle_s=0.1,
        reply_timeout_s=5.0,
        hangup_timeout_s=3.0,
        load_from_db=False,
    )
    assert result.warnings == []
    sent = [
        base64.b64decode(message["media"]["payload"])
        for _, message in stand_in.log.received
        if message["event"] == "media"
    ]
    spoken = await simulator.caller_frames("yes", "espeak-f2")
    first = sent.index(spoken[0])
    assert sent[first : first + len(spoken)] == spoken


@pytest.mark.django_db
def test_simulate_call_refuses_an_unknown_voice_and_names_the_known_ones() -> None:
    with pytest.raises(CommandError, match="invalid choice: 'robot'.*piper-joe"):
        call_command("simulate_call", "new_patient_booked", "--voice", "robot")


@pytest.mark.django_db
def test_simulate_call_with_a_caller_voice_reports_an_unreachable_server_in_one_line() -> None:
    with pytest.raises(CommandError, match="^cannot reach the server at http://127.0.0.1:9"):
        call_command(
            "simulate_call",
            "new_patient_booked",
            "--base-url",
            "http://127.0.0.1:9",
            "--voice",
            "espeak-klatt",
        )
