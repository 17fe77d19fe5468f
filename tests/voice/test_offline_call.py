"""A whole call on the embedded defaults: Whisper hears, espeak-ng speaks, rules understand.

The call simulator plays the scenario as Twilio would, in real time: 20 ms frames for the
whole call (line silence when the caller is quiet), the agent's audio played on a playback
clock with its marks echoed, the caller answering once the prompt has finished. Nothing is
padded and no setting is raised for the recogniser: this is the product as a caller meets it.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from clinic.demo import load_demo_calendar
from clinic.services import slots_generate
from intake import scenario as scenarios
from intake.models import Call
from voice.simulator import TwilioCaller

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_returning_patient_books_on_the_offline_engines(settings) -> None:
    assert settings.STT_PROVIDER == "whisper"  # the defaults, not a test configuration
    assert settings.TTS_PROVIDER == "espeak" and settings.NLU_PROVIDER == "rules"
    scenario = scenarios.load("returning_patient_keypad")
    await sync_to_async(load_demo_calendar)()  # what `make run` seeds
    await sync_to_async(slots_generate)()
    await sync_to_async(scenarios.prepare)(scenario)
    result = await TwilioCaller.in_process(None, scenario, speed=1.0)
    assert result.call is not None
    problems = await sync_to_async(scenarios.check)(scenario, result.call)
    transcript = "\n".join(f"{turn.speaker}: {turn.text}" for turn in result.transcript)
    assert problems == [], f"{transcript}\nwarnings: {result.warnings}"
    call = await Call.objects.aget(pk=result.call.pk)
    assert call.outcome == Call.Outcome.BOOKED
