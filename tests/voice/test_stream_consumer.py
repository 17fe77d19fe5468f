"""The media-stream consumer end to end: the real session, conversation and providers."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from clinic.demo import load_demo_calendar
from clinic.services import slots_generate
from intake import services
from intake.models import Call
from tests.fakes.deepgram_server import FakeDeepgram, tone_mulaw
from tests.voice.twilio_stream import SILENCE, TwilioStream
from voice.tokens import stream_token_issue

pytestmark = pytest.mark.django_db(transaction=True)


def deepgram_settings(fake: FakeDeepgram) -> dict[str, object]:
    return {
        "STT_PROVIDER": "deepgram",
        "TTS_PROVIDER": "deepgram",
        "DEEPGRAM_API_KEY": fake.api_key,
        "DEEPGRAM_BASE_URL": fake.base_url,
        "PUBLIC_BASE_URL": "https://clinic.example.org",
        "CALL_SILENCE_SECONDS": 30,
    }


@sync_to_async
def new_call(caller: str = "+16175550142") -> tuple[Call, str]:
    load_demo_calendar()
    slots_generate(horizon_days=14)
    call = services.call_start(call_sid="CA" + "a" * 32, caller_number=caller)
    return call, stream_token_issue(call)


async def speak(stream: TwilioStream, fake: FakeDeepgram, transcript: str) -> None:
    fake.say(transcript)
    await stream.media(tone_mulaw(600) + SILENCE * 40)


async def test_greeting_then_a_caller_turn_over_deepgram() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, token = await new_call()
            stream = TwilioStream(call.call_sid, token)
            connected, _ = await stream.connect()
            assert connected
            await stream.start()
            frames, mark = await stream.play_until_mark()
            assert frames > 50 and mark
            await speak(stream, fake, "I'd like to make an appointment")
            frames, mark = await stream.play_until_mark()
            assert frames > 10
            await stream.stop()
            await stream.communicator.disconnect()
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.ABANDONED
    texts = [t async for t in call.turns.order_by("sequence").values_list("speaker", "text")]
    assert texts[1] == ("caller", "I'd like to make an appointment")


async def play_scenario_over_deepgram(slug: str, fake: FakeDeepgram) -> Call:
    """Each caller line is a burst of 'speech' the fake transcribes as that line."""
    from intake import scenario as scenarios

    scenario = scenarios.load(slug)
    await sync_to_async(scenarios.prepare)(scenario)
    call, token = await new_call(scenario.caller_number)
    stream = TwilioStream(call.call_sid, token)
    await stream.connect()
    await stream.start()
    await stream.play_until_mark()
    for line in scenario.lines:
        if line.hangup:
            break
        if line.press:
            for key in line.press:
                await stream.dtmf(key)
        else:
            await speak(stream, fake, line.caller)
        _, mark = await stream.play_until_mark()
        if mark is None:
            break
    await stream.stop()
    await stream.communicator.disconnect()
    problems = await sync_to_async(scenarios.check)(scenario, call)
    assert problems == []
    return await Call.objects.aget(pk=call.pk)


async def test_a_new_patient_books_over_deepgram_stt_and_tts() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call = await play_scenario_over_deepgram("new_patient_booked", fake)
    assert call.outcome == Call.Outcome.BOOKED
    timed = [t async for t in call.turns.filter(speaker="agent", tts_first_byte_ms__isnull=False)]
    assert len(timed) >= 15
    caller = [t async for t in call.turns.filter(speaker="caller")]
    assert all(t.stt_final_ms is not None for t in caller)
    assert any(t.response_latency_ms is not None for t in timed)
