"""Whole calls played through the OpenAI engine: the real client against the loopback fake.

The same scenario files as ``test_scenarios.py``, the same database checks; understanding
comes from :class:`~intake.understanding.llm.OpenAIEngine` with the real ``openai`` client,
talking HTTP to :class:`~tests.fakes.openai_server.FakeOpenAI` on 127.0.0.1, which answers
with the recorded structured outputs in ``tests/fakes/openai_recordings.json`` (see
``tests/fakes/record_openai.py`` for how they were made). When the fake fails every request
(HTTP 500) or answers slower than the engine's timeout, each turn falls back to the rules and
the calls still end as their scenarios say.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from django.test import override_settings

from intake import scenario as scenarios
from intake.conversation import red_flags
from intake.conversation.engine import keys_as_words
from intake.models import Turn
from intake.understanding.llm import FALLBACK_ENGINE, OpenAIEngine
from intake.understanding.schemas import schema_name
from intake.understanding.triage import screen
from intake.understanding.types import Context, Expectation, Understanding
from tests.fakes.openai_server import FakeOpenAI, load_recordings
from tests.fakes.record_openai import recording_errors
from tests.intake.conversation.runner import Played, play
from tests.intake.conversation.test_scenarios import settings_for

ALL = scenarios.all_scenarios()
# A new patient through every question, and a returning patient found by the caller's number.
FALLBACK_SCENARIOS = [
    s for s in ALL if s.slug in ("new_patient_booked", "returning_patient_booked")
]
# Long enough for a loaded CI machine to answer a loopback request, short enough for a test.
ENGINE_TIMEOUT = 2.0
SHORT_TIMEOUT = 0.3


@dataclass(frozen=True)
class Heard:
    text: str
    expect: Expectation
    context: Context
    understanding: Understanding

    @property
    def schema_name(self) -> str:
        return schema_name(self.expect, self.context)


@dataclass
class Witness:
    """The real engine, with a note of each turn it was asked to understand and its answer.

    The runner builds a fresh Conversation per event, so this is where the understandings of
    a whole call can be seen together.
    """

    engine: OpenAIEngine
    heard: list[Heard] = field(default_factory=list)
    name: str = "openai"

    async def understand(self, text: str, expect: Expectation, context: Context) -> Understanding:
        understood = await self.engine.understand(text, expect, context)
        self.heard.append(Heard(text, expect, context, understood))
        return understood


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def _witness(fake: FakeOpenAI, timeout: float) -> Witness:
    engine = OpenAIEngine(
        api_key="test-key", model="gpt-4o-mini", base_url=fake.base_url, timeout=timeout
    )
    return Witness(engine)


async def _play(scenario: scenarios.Scenario, witness: Witness) -> Played:
    try:
        with override_settings(**settings_for(scenario)):
            return await play(scenario, witness)
    finally:
        await witness.engine.aclose()


def lines_for_the_engine(
    scenario: scenarios.Scenario, played: Played, heard: list[Heard]
) -> list[str]:
    """What the scenario's caller says that must reach the engine, in order.

    Red flags are screened by the rules before any engine, and the answer to "Did you say
    ...?" is read by the rules alone; keypad 0 asks for a person; other keys arrive as the
    words the conversation makes of them for the question asked.
    """
    texts: list[str] = []
    for line, asked in zip(scenario.lines, played.asked, strict=True):
        if asked == red_flags.QUESTION:
            continue
        if line.caller and screen(line.caller) is None:
            texts.append(line.caller)
        elif line.press and line.press.strip("#") != "0":
            asked = heard[len(texts)].expect if len(texts) < len(heard) else Expectation.FREE
            texts.append(keys_as_words(line.press, asked))
    return texts


def test_every_recording_is_a_valid_answer_under_its_strict_schema() -> None:
    assert recording_errors(load_recordings()) == []


@pytest.mark.parametrize("scenario", ALL, ids=[s.slug for s in ALL])
async def test_scenario_with_the_openai_engine_from_recordings(
    scenario: scenarios.Scenario, demo_clinic: None, fake_openai: FakeOpenAI
) -> None:
    witness = _witness(fake_openai, ENGINE_TIMEOUT)

    played = await _play(scenario, witness)

    assert played.problems == [], "\n".join(["", *played.agent_lines])
    heard = witness.heard
    assert [h.text for h in heard] == lines_for_the_engine(scenario, played, heard)
    # Every turn went over the wire once, with the schema of the question being asked...
    requests = fake_openai.requests
    assert [(r.schema_name, r.caller_text) for r in requests] == [
        (h.schema_name, h.text) for h in heard
    ]
    assert all(r.body["response_format"]["json_schema"]["strict"] is True for r in requests)
    # ...was answered from a recording, not with the fake's empty default...
    recordings = fake_openai.recordings
    unrecorded = [
        (h.schema_name, h.text) for h in heard if h.text not in recordings.get(h.schema_name, {})
    ]
    assert unrecorded == [], "record these: python -m tests.fakes.record_openai"
    # ...and was understood by the model: nothing fell back to the rules.
    assert [h.understanding.engine for h in heard] == ["openai"] * len(heard)


@pytest.mark.parametrize("scenario", FALLBACK_SCENARIOS, ids=[s.slug for s in FALLBACK_SCENARIOS])
async def test_scenario_falls_back_to_the_rules_when_the_api_answers_500(
    scenario: scenarios.Scenario, demo_clinic: None, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_next(500, count=1000)
    witness = _witness(fake_openai, ENGINE_TIMEOUT)

    played = await _play(scenario, witness)

    assert played.problems == [], "\n".join(["", *played.agent_lines])
    heard = witness.heard
    assert heard and [h.understanding.engine for h in heard] == [FALLBACK_ENGINE] * len(heard)
    # One request per turn: the engine does not retry a failing API while the caller waits.
    assert [(r.schema_name, r.caller_text) for r in fake_openai.requests] == [
        (h.schema_name, h.text) for h in heard
    ]


@pytest.mark.parametrize("scenario", FALLBACK_SCENARIOS, ids=[s.slug for s in FALLBACK_SCENARIOS])
async def test_scenario_falls_back_to_the_rules_when_the_api_is_slower_than_the_timeout(
    scenario: scenarios.Scenario, demo_clinic: None, fake_openai: FakeOpenAI
) -> None:
    fake_openai.delay = SHORT_TIMEOUT * 10
    witness = _witness(fake_openai, SHORT_TIMEOUT)

    played = await _play(scenario, witness)

    assert played.problems == [], "\n".join(["", *played.agent_lines])
    heard = witness.heard
    assert heard and [h.understanding.engine for h in heard] == [FALLBACK_ENGINE] * len(heard)
    assert [r.schema_name for r in fake_openai.requests] == [h.schema_name for h in heard]
    # Each understood turn waited out the timeout, and not the fake's slow answer.
    waits: list[int] = [
        ms or 0
        async for ms in Turn.objects.filter(
            call=played.call, speaker=Turn.Speaker.CALLER, understanding_ms__isnull=False
        ).values_list("understanding_ms", flat=True)
    ]
    assert len(waits) == len(heard)
    assert all(SHORT_TIMEOUT * 1000 * 0.9 <= ms < fake_openai.delay * 1000 for ms in waits), waits
