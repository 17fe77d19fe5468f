"""A process told to stop: readiness, new callers, new streams, and the hand-over of live calls.

In process, through the real consumer, session and conversation (Deepgram's loopback fake for
speech); the same drain on a real ``manage.py serve`` process is in tests/live/test_shutdown.py.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import AsyncClient, override_settings
from django.utils import timezone

from clinic import lifecycle
from clinic.asgi import application
from clinic.config import ConfigError, load_config
from intake import liveness
from intake.models import Call, FollowUp, Turn
from tests.factories import CallFactory
from tests.fakes.deepgram_server import FakeDeepgram
from tests.voice.test_stream_consumer import deepgram_settings, next_event, open_stream
from tests.voice.test_webhooks import answer_params, signed_post, twiml_of
from tests.voice.twilio_stream import TwilioStream, signed_headers
from voice import drain, heartbeat
from voice.management.commands import serve
from voice.models import StreamGrant
from voice.signatures import STREAM_PATH
from voice.tasks import sweep_stale_calls
from voice.views import call_status_record

pytestmark = pytest.mark.django_db(transaction=True)

ALWAYS_OPEN = "mon-sun 00:00-23:59"
FRONT_DESK = "+16175550100"


@pytest.fixture(autouse=True)
def not_draining() -> Iterator[None]:
    """Each test starts in a serving process and leaves none draining behind it."""
    lifecycle.reset_for_tests()
    yield
    lifecycle.reset_for_tests()


@pytest.fixture
def webhook_settings(settings: Any) -> None:
    settings.TWILIO_AUTH_TOKEN = "test-auth-token-for-webhooks"
    settings.PUBLIC_BASE_URL = "https://clinic.example.org"
    settings.ALLOWED_HOSTS = ["testserver", "clinic.example.org"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"drain-{uuid.uuid4().hex}",
        }
    }


def open_front_desk(fake: FakeDeepgram) -> dict[str, object]:
    return {
        **deepgram_settings(fake),
        "CLINIC_OPENING_HOURS": ALWAYS_OPEN,
        "FRONT_DESK_NUMBER": FRONT_DESK,
    }


async def socket_gone(stream: TwilioStream) -> None:
    """After the server closed the stream, the socket goes (what Twilio's side does), and the
    session finishes: its end is written before the consumer returns."""
    await stream.communicator.disconnect(timeout=20)


async def agent_texts(call: Call) -> list[str]:
    return [
        text
        async for text in call.turns.filter(speaker=Turn.Speaker.AGENT)
        .order_by("sequence")
        .values_list("text", flat=True)
    ]


async def followup_reasons(call: Call) -> list[str]:
    return [reason async for reason in call.followups.values_list("reason", flat=True)]


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"DRAIN_GRACE_SECONDS": "-1"}, "DRAIN_GRACE_SECONDS"),
        ({"DRAIN_GRACE_SECONDS": "soon"}, "DRAIN_GRACE_SECONDS"),
        ({"DRAIN_GRACE_SECOND": "20"}, "DRAIN_GRACE_SECOND"),  # misspelled
        ({"CALL_HEARTBEAT_SECONDS": "0"}, "CALL_HEARTBEAT_SECONDS"),
        ({"CALL_SWEEP_SECONDS": "0.5"}, "CALL_SWEEP_SECONDS"),
        # Two missed beats must never look like a death.
        ({"CALL_HEARTBEAT_SECONDS": "20", "CALL_STALE_SECONDS": "30"}, "CALL_STALE_SECONDS"),
    ],
)
def test_wrong_drain_and_heartbeat_settings_stop_start_up_naming_the_variable(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(environ)
    assert str(refused.value).startswith(f"{variable}: ")
    assert "\n" not in str(refused.value)


def test_the_stop_timeout_a_process_manager_must_allow() -> None:
    config = load_config({})
    assert config.drain_grace_seconds == 20
    # README: at least DRAIN_GRACE_SECONDS + 35 s, 60 s with the default grace.
    assert serve.stop_timeout_seconds() == config.drain_grace_seconds + 35 <= 60


# --- the process as others see it -------------------------------------------------------------


async def test_readiness_answers_503_once_the_process_is_draining() -> None:
    serving = await AsyncClient().get("/health/ready")
    assert serving.status_code == 200, serving.json()

    lifecycle.begin_draining()
    draining = await AsyncClient().get("/health/ready")

    assert draining.status_code == 503
    assert draining.json()["checks"]["process"] == {
        "status": "fail",
        "latency_ms": draining.json()["checks"]["process"]["latency_ms"],
        "detail": "Draining",
    }


def test_a_new_caller_while_draining_is_put_through_to_the_front_desk(
    webhook_settings: None, settings: Any
) -> None:
    settings.CLINIC_OPENING_HOURS = ALWAYS_OPEN
    settings.FRONT_DESK_NUMBER = FRONT_DESK
    lifecycle.begin_draining()
    params = answer_params()

    root = twiml_of(signed_post("/voice/answer", params))

    assert [child.tag for child in root] == ["Dial"]
    assert root.findtext("./Dial") == FRONT_DESK
    call = Call.objects.get(call_sid=params["CallSid"])
    assert call.outcome == Call.Outcome.TRANSFERRED
    assert not StreamGrant.objects.exists()


def test_a_new_caller_while_draining_after_hours_is_told_to_call_back(
    webhook_settings: None, settings: Any
) -> None:
    settings.FRONT_DESK_NUMBER = ""  # nobody to put them through to
    lifecycle.begin_draining()
    params = answer_params()

    root = twiml_of(signed_post("/voice/answer", params))

    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert "call back" in (root.findtext("./Say") or "")
    call = Call.objects.get(call_sid=params["CallSid"])
    assert call.outcome == Call.Outcome.CALLBACK
    assert [f.reason for f in call.followups.all()] == [FollowUp.Reason.CALLBACK_REQUESTED]
    assert not StreamGrant.objects.exists()


async def test_a_media_stream_arriving_while_draining_is_refused_before_it_starts() -> None:
    guarded = drain.RefuseStreamsWhileDraining(application)
    serving = WebsocketCommunicator(guarded, STREAM_PATH, headers=signed_headers())
    accepted, _ = await serving.connect(timeout=10)
    assert accepted
    await serving.disconnect()

    lifecycle.begin_draining()
    refused = WebsocketCommunicator(guarded, STREAM_PATH, headers=signed_headers())
    connected, code = await refused.connect(timeout=10)

    assert (connected, code) == (False, drain.CLOSE_DRAINING)


# --- live calls --------------------------------------------------------------------------------


async def test_a_call_at_a_safe_point_is_handed_over_finished_and_followed_up() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**open_front_desk(fake)):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()  # the greeting, played out: nothing in hand
            draining = asyncio.create_task(drain.drain_live_calls(grace_seconds=5))

            frames, mark = await stream.play_until_mark()  # the hand-over line
            closed = await stream.receive()  # the server closes: Twilio runs the <Dial>
            await socket_gone(stream)
            report = await asyncio.wait_for(draining, 30)

    assert frames > 10 and mark and closed is None
    assert (report.calls, report.at_safe_point, report.forced, report.clean) == (1, 1, 0, True)
    assert not [m for m in stream.received if m["event"] == "clear"]
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.TRANSFERRED
    assert await followup_reasons(call) == [FollowUp.Reason.HANDED_OVER]
    assert (await agent_texts(call))[-1] == drain.HANDOVER_TRANSFER_LINE
    assert drain.live_sessions() == []


async def test_a_call_mid_sentence_is_cut_and_handed_over_when_the_grace_period_ends() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**open_front_desk(fake)):
            call, stream = await open_stream(fake)
            await next_event(stream, "mark")  # the greeting is sent; it is still playing
            draining = asyncio.create_task(drain.drain_live_calls(grace_seconds=0.3))

            cleared = await next_event(stream, "clear")
            frames, mark = await stream.play_until_mark()
            closed = await stream.receive()
            await socket_gone(stream)
            report = await asyncio.wait_for(draining, 30)

    assert cleared is not None and frames > 10 and mark and closed is None
    assert (report.at_safe_point, report.forced, report.clean) == (0, 1, True)
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.TRANSFERRED
    assert await followup_reasons(call) == [FollowUp.Reason.HANDED_OVER]


async def test_after_hours_the_hand_over_promises_a_call_back_and_hangs_up() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake), FRONT_DESK_NUMBER=""):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            draining = asyncio.create_task(drain.drain_live_calls(grace_seconds=5))
            await stream.play_until_mark()
            closed = await stream.receive()
            await socket_gone(stream)
            report = await asyncio.wait_for(draining, 30)

    assert closed is None and report.clean
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.CALLBACK
    assert await followup_reasons(call) == [FollowUp.Reason.CALLBACK_REQUESTED]
    assert (await agent_texts(call))[-1] == drain.HANDOVER_CALLBACK_LINE


async def test_a_call_already_ending_is_left_to_end_on_its_own(settings: Any) -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**open_front_desk(fake)):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            await stream.dtmf("0")  # "One moment, I'm transferring you": the line is closing
            await next_event(stream, "mark")
            draining = asyncio.create_task(drain.drain_live_calls(grace_seconds=5))
            await asyncio.sleep(0.3)
            await stream.mark(stream.received[-1]["mark"]["name"])  # now it has been played
            closed = await stream.receive()
            await socket_gone(stream)
            report = await asyncio.wait_for(draining, 30)

    assert closed is None
    assert (report.ended_on_their_own, report.clean) == (1, True)
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.TRANSFERRED
    assert await followup_reasons(call) == []  # a transfer the caller asked for
    assert drain.HANDOVER_TRANSFER_LINE not in await agent_texts(call)


async def test_a_hand_over_line_never_echoed_closes_the_stream_after_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(drain, "HANDOVER_PLAY_TIMEOUT_SECONDS", 0.5)
    async with FakeDeepgram() as fake:
        with override_settings(**open_front_desk(fake)):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            draining = asyncio.create_task(drain.drain_live_calls(grace_seconds=5))
            await next_event(stream, "mark")  # the hand-over line, never echoed (caller gone)
            closed = await next_event(stream, "never-sent")
            await socket_gone(stream)
            report = await asyncio.wait_for(draining, 30)

    assert closed is None and report.clean
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.TRANSFERRED


# --- heartbeats and the sweep ------------------------------------------------------------------


async def test_a_live_call_beats_with_this_process_identity() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            beating = await Call.objects.aget(pk=call.pk)
            await stream.stop()
            await stream.communicator.disconnect()

    assert beating.served_by == lifecycle.process_identity()
    assert beating.heartbeat_at is not None
    assert timezone.now() - beating.heartbeat_at < datetime.timedelta(seconds=30)


async def test_a_call_finished_elsewhere_is_handed_over_by_its_session() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**open_front_desk(fake), CALL_HEARTBEAT_SECONDS=0.2):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            # Twilio reports the call over (or a sweep decided so while the database was away).
            await sync_to_async(call_status_record)(call_sid=call.call_sid, call_status="completed")

            frames, mark = await stream.play_until_mark()
            closed = await stream.receive()
            await socket_gone(stream)

    assert frames > 10 and mark and closed is None
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.ABANDONED  # the first finish stands
    assert await followup_reasons(call) == [FollowUp.Reason.CALL_DROPPED]
    assert (await agent_texts(call))[-1] == drain.HANDOVER_TRANSFER_LINE


def _stale_call() -> Call:
    call = CallFactory.create(started_at=timezone.now() - datetime.timedelta(minutes=3))
    stale = timezone.now() - datetime.timedelta(seconds=django_settings.CALL_STALE_SECONDS + 5)
    liveness.call_heartbeat(call_id=call.pk, served_by="gone:1:1", now=stale)
    return call


async def test_every_server_process_sweeps_calls_whose_process_died() -> None:
    call = await sync_to_async(_stale_call)()

    sweeping = asyncio.create_task(heartbeat.sweep_periodically(interval_s=0.05))
    try:
        async with asyncio.timeout(10):
            # Polls the database, the only place another process would see the outcome.
            while (await Call.objects.aget(pk=call.pk)).outcome == Call.Outcome.IN_PROGRESS:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        sweeping.cancel()

    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.ABANDONED
    assert await followup_reasons(call) == [FollowUp.Reason.CALL_DROPPED]


def test_celery_beat_sweeps_too() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["voice-sweep-stale-calls"]
    assert entry["task"] == sweep_stale_calls.name == "voice.sweep_stale_calls"
    assert entry["schedule"] <= 30  # a dead call finished within a minute of the death
    call = _stale_call()

    assert sweep_stale_calls.apply().get() == 1

    call.refresh_from_db()
    assert call.outcome == Call.Outcome.ABANDONED
