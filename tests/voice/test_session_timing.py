"""The silence timer fits real callers: it never runs while they speak or while their words
are being decoded, and it runs again when sound came to no words."""

from __future__ import annotations

import pytest
from django.test import override_settings

from intake.conversation import prompts
from intake.models import Call
from tests.fakes.deepgram_server import FakeDeepgram, tone_mulaw
from tests.voice.test_stream_consumer import deepgram_settings, open_stream
from tests.voice.twilio_stream import SILENCE

pytestmark = pytest.mark.django_db(transaction=True)


async def agent_texts(call: Call) -> list[str]:
    return [t.text async for t in call.turns.filter(speaker="agent").order_by("sequence")]


async def test_a_caller_who_talks_longer_than_the_silence_timeout_is_not_asked_if_still_there() -> (
    None
):
    async with FakeDeepgram(latency_s=1.5) as fake:  # and the recogniser is slow, too
        with override_settings(**{**deepgram_settings(fake), "CALL_SILENCE_SECONDS": 1}):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()  # the greeting; the silence timer starts
            fake.say("I'd like to make an appointment")
            await stream.media(tone_mulaw(3000) + SILENCE * 40)  # 3 s of speech, then a pause
            frames, mark = await stream.play_until_mark()
            assert frames > 10 and mark
            await stream.stop()
            await stream.communicator.disconnect()
    said = await agent_texts(call)
    assert len(said) == 2
    assert not said[1].startswith(prompts.STILL_THERE.strip())


async def test_noise_that_comes_to_no_words_lets_the_silence_timer_run_again() -> None:
    async with FakeDeepgram() as fake:  # no script: speech comes back as an empty transcript
        with override_settings(**{**deepgram_settings(fake), "CALL_SILENCE_SECONDS": 1}):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            await stream.media(tone_mulaw(500) + SILENCE * 20)
            frames, mark = await stream.play_until_mark(limit_s=10)
            assert frames > 10 and mark
            await stream.stop()
            await stream.communicator.disconnect()
    said = await agent_texts(call)
    assert said[1].startswith(prompts.STILL_THERE.strip())
