"""Deepgram STT down or slow: the ``deepgram_stt`` circuit breaker, against the loopback
Deepgram made to refuse, hang and recover.

The real SDK connects over WebSockets on 127.0.0.1; the offline recogniser that takes over is
whatever :func:`voice.stt.offline_stt_from_settings` gives, started for real. The proof that
an open breaker skips Deepgram is the fake's handshake count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from clinic.circuit import BreakerSettings, CircuitBreaker, CircuitState, circuit_breaker
from tests.fakes.deepgram_server import FakeDeepgram
from tests.voice.conftest import collecting
from tests.voice.signals import feed, frames_of, join, quiet, voiced
from voice.stt import offline_stt_from_settings, stt_from_settings
from voice.stt.base import Final, SpeechToTextError
from voice.stt.deepgram import CIRCUIT, DeepgramSTT, DeepgramSttOptions
from voice.stt.fallback import StartFallbackSTT

COOLDOWN_S = 0.3
FAST = DeepgramSttOptions(
    reconnect_backoff_s=0.01, max_reconnect_attempts=1, connect_timeout_s=0.3, start_timeout_s=1.0
)


def gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value("provider_circuit_state", {"provider": provider})


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read afresh: an attribute compared in one assert would stay narrowed for mypy."""
    return breaker.state


def deepgram_for(fake: FakeDeepgram, breaker: CircuitBreaker) -> DeepgramSTT:
    attempt = breaker.attempt()
    assert attempt is not None
    return DeepgramSTT(api_key=fake.api_key, base_url=fake.base_url, options=FAST, attempt=attempt)


@pytest.fixture
def deepgram_settings(deepgram: FakeDeepgram) -> Iterator[None]:
    with override_settings(
        STT_PROVIDER="deepgram",
        DEEPGRAM_API_KEY=deepgram.api_key,
        DEEPGRAM_BASE_URL=deepgram.base_url,
        CIRCUIT_FAILURE_THRESHOLD=1,
        CIRCUIT_COOLDOWN_SECONDS=COOLDOWN_S,
    ):
        yield


async def test_a_hung_handshake_fails_the_start_within_its_budget_and_counts(
    deepgram: FakeDeepgram,
) -> None:
    breaker = CircuitBreaker("test_stt_hang", BreakerSettings(2, 60))
    deepgram.hang_handshakes = True
    for _ in range(2):
        stt = deepgram_for(deepgram, breaker)
        started = time.monotonic()
        with pytest.raises(SpeechToTextError, match="deepgram_unavailable"):
            await stt.start()
        assert time.monotonic() - started < 5  # generous: the start budget is 1 s
        await stt.close()
    assert deepgram.handshakes >= 2
    assert state(breaker) is CircuitState.OPEN and gauge("test_stt_hang") == 2
    assert breaker.attempt() is None


async def test_giving_up_mid_call_counts_a_failure(deepgram: FakeDeepgram) -> None:
    breaker = CircuitBreaker("test_stt_midcall", BreakerSettings(1, 60))
    deepgram.say("hello")
    stt = deepgram_for(deepgram, breaker)
    await stt.start()
    assert state(breaker) is CircuitState.CLOSED and breaker.failures == 0
    async with collecting(stt) as got:
        await deepgram.stop_accepting()  # the socket drops and reconnecting is refused
        await feed(stt, frames_of(join(voiced(600), quiet(800))), speedup=10)
        await got.finished()
    assert isinstance(got.error, SpeechToTextError)
    assert state(breaker) is CircuitState.OPEN and gauge("test_stt_midcall") == 2
    await stt.close()


async def test_a_reconnect_that_succeeds_is_not_a_failure(deepgram: FakeDeepgram) -> None:
    breaker = CircuitBreaker("test_stt_reconnect", BreakerSettings(1, 60))
    deepgram.say("hello", "again")
    deepgram.drop_after(0)
    stt = deepgram_for(deepgram, breaker)
    await stt.start()
    async with collecting(stt) as got:
        await feed(stt, frames_of(join(voiced(600), quiet(800))), speedup=10)
        await got.wait_for(1)
        await stt.close()
    assert stt.reconnects == 1
    assert [e.text for e in got.events if isinstance(e, Final)] == ["hello"]
    assert state(breaker) is CircuitState.CLOSED


@override_settings(CIRCUIT_COOLDOWN_SECONDS=60.0)
async def test_a_call_during_an_outage_is_heard_offline_and_opens_the_breaker_for_the_next(
    deepgram: FakeDeepgram, deepgram_settings: None
) -> None:
    offline = type(offline_stt_from_settings())
    await deepgram.stop_accepting()

    # The first call finds Deepgram refusing at its start: the offline recogniser takes it.
    first = stt_from_settings(call_id="call-1")
    assert isinstance(first, StartFallbackSTT) and isinstance(first.primary, DeepgramSTT)
    await first.start(["yes", "no"])
    assert type(first.active) is offline
    await first.close()
    assert gauge(CIRCUIT) == 2

    # The next call gets the offline recogniser outright; Deepgram hears nothing of it.
    await deepgram.start_accepting()
    second = stt_from_settings(call_id="call-2")
    assert type(second) is offline
    assert deepgram.handshakes == 0 and deepgram.listen_sessions == []


async def test_after_the_cooldown_one_call_is_the_trial_and_deepgram_answering_closes_it(
    deepgram: FakeDeepgram, deepgram_settings: None
) -> None:
    offline = type(offline_stt_from_settings())
    await deepgram.stop_accepting()
    failing = deepgram_for(deepgram, circuit_breaker(CIRCUIT))  # the process's breaker
    with pytest.raises(SpeechToTextError):
        await failing.start()
    await failing.close()
    assert gauge(CIRCUIT) == 2
    await deepgram.start_accepting()

    await asyncio.sleep(COOLDOWN_S + 0.05)
    trial = stt_from_settings(call_id="call-3")
    assert isinstance(trial, StartFallbackSTT)
    assert gauge(CIRCUIT) == 1
    assert type(stt_from_settings(call_id="call-4")) is offline  # one trial at a time
    await trial.start()
    assert isinstance(trial.active, DeepgramSTT)
    assert gauge(CIRCUIT) == 0
    await trial.close()
    assert len(deepgram.listen_sessions) == 1
    assert isinstance(stt_from_settings(call_id="call-5"), StartFallbackSTT)
