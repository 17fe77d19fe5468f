"""A whole call on the embedded engines: PocketSphinx hears, espeak-ng speaks, rules understand.

The caller's lines are spoken by espeak-ng and sent as 20 ms mu-law frames over the real
consumer, as Twilio would. PocketSphinx over phone audio is reliable only with a grammar of
what the question expects (see README); this caller answers in that vocabulary and uses the
keypad for digits, as callers on a poor line are invited to.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from intake import scenario as scenarios
from intake.models import Call
from tests.voice.test_stream_consumer import new_call
from tests.voice.twilio_stream import SILENCE, TwilioStream
from voice.tts.espeak import EspeakTTS

pytestmark = pytest.mark.django_db(transaction=True)

OFFLINE = {
    "STT_PROVIDER": "pocketsphinx",
    "TTS_PROVIDER": "espeak",
    "NLU_PROVIDER": "rules",
    "PUBLIC_BASE_URL": "https://clinic.example.org",
    "CALL_SILENCE_SECONDS": 30,
}


async def say(stream: TwilioStream, text: str) -> None:
    audio = b"".join([chunk async for chunk in EspeakTTS().synthesize(text)])
    await stream.media(SILENCE * 10 + audio + SILENCE * 60)


async def test_a_returning_patient_books_on_the_offline_engines() -> None:
    scenario = scenarios.load("returning_patient_keypad")
    with override_settings(**OFFLINE):
        await sync_to_async(scenarios.prepare)(scenario)
        call, token = await new_call(scenario.caller_number)
        stream = TwilioStream(call.call_sid, token)
        await stream.connect()
        await stream.start()
        frames, _ = await stream.play_until_mark(limit_s=30)
        assert frames > 100  # the greeting, synthesised by espeak-ng
        for line in scenario.lines:
            if line.press:
                for key in line.press:
                    await stream.dtmf(key)
            else:
                await say(stream, line.caller)
            try:
                _, mark = await stream.play_until_mark(limit_s=30)
            except TimeoutError:
                turns = [t async for t in call.turns.values_list("speaker", "text")]
                raise AssertionError(turns) from None
            if mark is None:
                break
        await stream.stop()
        await stream.communicator.disconnect()
    problems = await sync_to_async(scenarios.check)(scenario, call)
    transcript = [t async for t in call.turns.values_list("speaker", "text")]
    assert problems == [], transcript
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.BOOKED
