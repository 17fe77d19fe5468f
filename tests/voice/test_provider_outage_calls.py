"""Whole calls over the media-stream consumer while Deepgram is down: the real session,
conversation and engines, the loopback Deepgram refusing connections and then coming back.

The first call finds Deepgram's listen endpoint refusing as it starts: the offline recogniser
takes the call, which goes on as usual (greeting, keypad 0, hand-over), and the
``deepgram_stt`` breaker opens. The next call skips Deepgram altogether, even though it is
back, until the cool-down has passed.
"""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings
from prometheus_client import REGISTRY

from clinic.demo import load_demo_calendar
from clinic.services import slots_generate
from intake import services
from intake.models import Call
from tests.fakes.deepgram_server import FakeDeepgram
from tests.voice.twilio_stream import TwilioStream
from voice.stt.deepgram import CIRCUIT
from voice.tokens import stream_token_issue

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def new_call() -> tuple[Call, str]:
    call = services.call_start(call_sid="CA" + uuid.uuid4().hex, caller_number="+16175550142")
    return call, stream_token_issue(call)


@sync_to_async
def calendar() -> None:
    load_demo_calendar()
    slots_generate(horizon_days=14)


async def call_and_press_zero() -> Call:
    """A caller hears the greeting, presses 0, hears the hand-over, and the stream closes."""
    call, token = await new_call()
    stream = TwilioStream(call.call_sid, token)
    connected, _ = await stream.connect()
    assert connected
    await stream.start()
    frames, mark = await stream.play_until_mark(limit_s=30)
    assert frames > 50 and mark  # the greeting was spoken
    await stream.dtmf("0")
    await stream.play_until_mark(limit_s=30)  # "One moment, I'm transferring you"
    assert await stream.receive(limit_s=30) is None  # the server closed the stream: <Dial>
    return await Call.objects.aget(pk=call.pk)


async def test_deepgram_down_at_the_start_of_calls_sends_them_to_the_offline_recogniser() -> None:
    await calendar()
    async with FakeDeepgram() as fake:
        with override_settings(
            STT_PROVIDER="deepgram",
            TTS_PROVIDER="deepgram",
            DEEPGRAM_API_KEY=fake.api_key,
            DEEPGRAM_BASE_URL=fake.base_url,
            PUBLIC_BASE_URL="https://clinic.example.org",
            CALL_SILENCE_SECONDS=30,
            CLINIC_OPENING_HOURS="mon-sun 00:00-23:59",
            FRONT_DESK_NUMBER="+16175550000",
            CIRCUIT_FAILURE_THRESHOLD=1,
            CIRCUIT_COOLDOWN_SECONDS=600.0,
        ):
            await fake.stop_accepting()
            first = await call_and_press_zero()
            assert REGISTRY.get_sample_value("provider_circuit_state", {"provider": CIRCUIT}) == 2

            await fake.start_accepting()
            second = await call_and_press_zero()
    assert first.outcome == second.outcome == Call.Outcome.TRANSFERRED
    assert fake.handshakes == 0, "the second call did not try Deepgram"
