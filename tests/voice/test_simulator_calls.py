"""Whole calls played in-process by the call simulator against a minimal stand-in agent that
records what a server would receive.

The stand-in is not the real consumer (its tests play scenarios through it): it answers each
caller utterance with a tone and a mark, so that these tests pin down the caller alone.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.management import CommandError, call_command
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from twilio.request_validator import RequestValidator

from intake.scenario import Line
from tests.voice.simulator_helpers import ACCOUNT_SID, scenario
from voice import simulator, twiml
from voice import twilio_wire as wire
from voice.simulator import (
    SILENCE_FRAME,
    CallResult,
    SimulatorError,
    TwilioCaller,
)

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
