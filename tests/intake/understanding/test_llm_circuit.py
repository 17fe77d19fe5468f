"""The OpenAI engine's circuit breaker, against the loopback OpenAI made to fail and recover.

Everything is real: the openai client over HTTP on 127.0.0.1, the engine, the breaker. The
proof that an open breaker skips the API is the fake's request log: no request arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from clinic.circuit import BreakerSettings, CircuitBreaker, CircuitState
from intake.understanding import Context, Expectation, RulesEngine, engine_from_settings
from intake.understanding.llm import CIRCUIT, FALLBACK_ENGINE, OpenAIEngine
from tests.fakes.openai_server import FakeOpenAI

COOLDOWN_S = 0.3
SAID = "march third nineteen eighty four"


def gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value("provider_circuit_state", {"provider": provider})


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read afresh: an attribute compared in one assert would stay narrowed for mypy."""
    return breaker.state


EngineFactory = Callable[..., OpenAIEngine]


@pytest.fixture
async def make_engine(fake_openai: FakeOpenAI) -> AsyncIterator[EngineFactory]:
    """Engines on the fake, one per call as the conversation makes them, closed at the end."""
    made: list[OpenAIEngine] = []

    def make(breaker: CircuitBreaker, timeout: float = 1.0) -> OpenAIEngine:
        engine = OpenAIEngine(
            api_key="sk-test-loopback",
            model="gpt-4o-mini",
            base_url=fake_openai.base_url,
            timeout=timeout,
            breaker=breaker,
        )
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.aclose()


async def turn(engine: OpenAIEngine, context: Context) -> str:
    understood = await engine.understand(SAID, Expectation.DATE_OF_BIRTH, context)
    if understood.engine == FALLBACK_ENGINE:
        assert understood.date is not None  # the rules understood the caller
    return understood.engine


async def test_server_errors_open_the_breaker_and_turns_go_to_the_rules_without_a_request(
    make_engine: EngineFactory, fake_openai: FakeOpenAI, context: Context
) -> None:
    breaker = CircuitBreaker("test_nlu_500", BreakerSettings(3, COOLDOWN_S))
    engine = make_engine(breaker)
    fake_openai.fail_next(500, count=3)
    for _ in range(3):
        assert await turn(engine, context) == FALLBACK_ENGINE
    assert state(breaker) is CircuitState.OPEN and gauge("test_nlu_500") == 2
    assert len(fake_openai.requests) == 3

    # Another call's turn: the rules answer at once, and the API hears nothing.
    next_call = make_engine(breaker)
    understood = await next_call.understand(SAID, Expectation.DATE_OF_BIRTH, context)
    expected = RulesEngine().parse(SAID, Expectation.DATE_OF_BIRTH, context)
    assert understood == expected.with_engine(FALLBACK_ENGINE)
    assert len(fake_openai.requests) == 3

    # After the cool-down one turn is the trial; the API answers and the breaker closes.
    await asyncio.sleep(COOLDOWN_S + 0.05)
    assert await turn(next_call, context) == "openai"
    assert state(breaker) is CircuitState.CLOSED and gauge("test_nlu_500") == 0
    assert len(fake_openai.requests) == 4
    assert await turn(engine, context) == "openai"


async def test_timeouts_count_and_an_open_breaker_does_not_wait(
    make_engine: EngineFactory, fake_openai: FakeOpenAI, context: Context
) -> None:
    breaker = CircuitBreaker("test_nlu_slow", BreakerSettings(2, 60))
    engine = make_engine(breaker, timeout=0.2)
    fake_openai.delay = 3.0
    for _ in range(2):
        assert await turn(engine, context) == FALLBACK_ENGINE
    assert state(breaker) is CircuitState.OPEN

    started = time.monotonic()
    assert await turn(engine, context) == FALLBACK_ENGINE
    assert time.monotonic() - started < 1.0  # generous: the API would take 3 s
    assert len(fake_openai.requests) == 2


async def test_half_open_lets_one_trial_through_and_a_failed_trial_reopens(
    make_engine: EngineFactory, fake_openai: FakeOpenAI, context: Context
) -> None:
    breaker = CircuitBreaker("test_nlu_trial", BreakerSettings(1, COOLDOWN_S))
    engine = make_engine(breaker, timeout=2.0)
    fake_openai.fail_next(503)
    assert await turn(engine, context) == FALLBACK_ENGINE
    await asyncio.sleep(COOLDOWN_S + 0.05)

    fake_openai.delay = 0.5  # the trial is slow but answers
    fake_openai.fail_next(500)
    trial = asyncio.create_task(turn(make_engine(breaker, timeout=2.0), context))
    async with asyncio.timeout(5):
        while not fake_openai.requests[1:]:  # noqa: ASYNC110 - the fake has no event for it
            await asyncio.sleep(0.01)
    assert state(breaker) is CircuitState.HALF_OPEN and gauge("test_nlu_trial") == 1
    assert await turn(make_engine(breaker), context) == FALLBACK_ENGINE  # not a second trial
    assert len(fake_openai.requests) == 2
    assert await trial == FALLBACK_ENGINE  # the trial got a 500

    assert state(breaker) is CircuitState.OPEN and gauge("test_nlu_trial") == 2
    fake_openai.delay = 0.0
    assert await turn(engine, context) == FALLBACK_ENGINE
    assert len(fake_openai.requests) == 2


async def test_refused_connections_count_and_the_api_coming_back_closes_it(
    make_engine: EngineFactory, fake_openai: FakeOpenAI, context: Context
) -> None:
    breaker = CircuitBreaker("test_nlu_refused", BreakerSettings(2, COOLDOWN_S))
    engine = make_engine(breaker)
    assert await turn(engine, context) == "openai"  # a kept-alive connection exists
    await fake_openai.stop_accepting()
    for _ in range(2):
        assert await turn(engine, context) == FALLBACK_ENGINE
    assert state(breaker) is CircuitState.OPEN
    await fake_openai.start_accepting()
    assert await turn(engine, context) == FALLBACK_ENGINE  # still cooling down
    assert len(fake_openai.requests) == 1

    await asyncio.sleep(COOLDOWN_S + 0.05)
    assert await turn(engine, context) == "openai"
    assert state(breaker) is CircuitState.CLOSED and gauge("test_nlu_refused") == 0


@pytest.mark.parametrize("answer", ["refusal", "not_json", "bad_request"])
async def test_an_answer_the_api_gave_is_not_an_outage(
    answer: str, make_engine: EngineFactory, fake_openai: FakeOpenAI, context: Context
) -> None:
    breaker = CircuitBreaker(f"test_nlu_{answer}", BreakerSettings(1, 60))
    engine = make_engine(breaker)
    if answer == "refusal":
        fake_openai.refuse_next()
    elif answer == "not_json":
        fake_openai.answer_next_raw("Sure! March 3rd, 1984.")
    else:
        fake_openai.fail_next(400)
    assert await turn(engine, context) == FALLBACK_ENGINE
    assert state(breaker) is CircuitState.CLOSED
    assert await turn(engine, context) == "openai"


async def test_calls_of_a_process_share_the_breaker_the_settings_make(
    fake_openai: FakeOpenAI, context: Context
) -> None:
    fake_openai.fail_next(500, count=2)
    with override_settings(
        NLU_PROVIDER="openai",
        OPENAI_API_KEY="sk-test-loopback",
        OPENAI_BASE_URL=fake_openai.base_url,
        NLU_TIMEOUT_SECONDS=1.0,
        CIRCUIT_FAILURE_THRESHOLD=2,
        CIRCUIT_COOLDOWN_SECONDS=60.0,
    ):
        engines = [engine_from_settings() for _ in range(3)]  # three calls
    try:
        for engine in engines:
            assert isinstance(engine, OpenAIEngine)
            assert await turn(engine, context) == FALLBACK_ENGINE
        assert len(fake_openai.requests) == 2
        assert gauge(CIRCUIT) == 2
    finally:
        for engine in engines:
            assert isinstance(engine, OpenAIEngine)
            await engine.aclose()
