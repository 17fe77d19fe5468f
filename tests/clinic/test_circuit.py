"""The circuit breaker's state machine, its gauge, and its settings.

The breaker runs for real; time is a manual monotonic clock passed in (the breaker's own
parameter), so cool-downs are exact and the tests never sleep. The providers' tests
(tests/voice/test_provider_circuits.py, tests/intake/understanding/test_llm_circuit.py) run it
against the loopback fakes made to fail and recover.
"""

from __future__ import annotations

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from clinic.circuit import (
    Attempt,
    BreakerSettings,
    CircuitBreaker,
    CircuitState,
    circuit_breaker,
    reset_breakers,
)
from clinic.config import ConfigError, load_config


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value("provider_circuit_state", {"provider": provider})


def short_circuits(provider: str) -> float:
    value = REGISTRY.get_sample_value(
        "provider_circuit_short_circuits_total", {"provider": provider}
    )
    return value or 0.0


def make(provider: str, threshold: int = 3, cooldown: float = 30.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    breaker = CircuitBreaker(provider, BreakerSettings(threshold, cooldown), clock=clock)
    return breaker, clock


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read afresh (a plain attribute read lets mypy narrow it across calls)."""
    return breaker.state


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        attempt = breaker.attempt()
        assert attempt is not None
        attempt.failed()


def test_a_new_breaker_is_closed_and_says_so_on_the_gauge() -> None:
    breaker, _ = make("unit_new")
    assert state(breaker) is CircuitState.CLOSED
    assert gauge("unit_new") == 0


def test_failures_in_a_row_open_it_and_a_success_in_between_resets_the_count() -> None:
    breaker, _ = make("unit_count", threshold=3)
    fail(breaker, 2)
    attempt = breaker.attempt()
    assert attempt is not None
    attempt.succeeded()
    fail(breaker, 2)
    assert state(breaker) is CircuitState.CLOSED and breaker.failures == 2

    fail(breaker, 1)
    assert state(breaker) is CircuitState.OPEN
    assert gauge("unit_count") == 2


def test_an_open_breaker_refuses_until_the_cooldown_then_lets_one_trial_through() -> None:
    breaker, clock = make("unit_trial", threshold=2, cooldown=30)
    fail(breaker, 2)
    before = short_circuits("unit_trial")

    clock.now += 29.9
    assert breaker.attempt() is None
    assert short_circuits("unit_trial") == before + 1

    clock.now += 0.1
    trial = breaker.attempt()
    assert trial is not None and trial.is_trial
    assert state(breaker) is CircuitState.HALF_OPEN and gauge("unit_trial") == 1
    # Others keep using the fallback while the trial is out.
    assert breaker.attempt() is None and breaker.attempt() is None

    trial.succeeded()
    assert state(breaker) is CircuitState.CLOSED and gauge("unit_trial") == 0
    assert breaker.failures == 0
    ordinary = breaker.attempt()
    assert ordinary is not None and not ordinary.is_trial


def test_a_failed_trial_opens_it_for_another_full_cooldown() -> None:
    breaker, clock = make("unit_retrial", threshold=1, cooldown=10)
    fail(breaker, 1)
    clock.now += 10
    trial = breaker.attempt()
    assert trial is not None
    clock.now += 4  # the trial took a while to fail
    trial.failed()
    assert state(breaker) is CircuitState.OPEN and gauge("unit_retrial") == 2

    clock.now += 9.9
    assert breaker.attempt() is None
    clock.now += 0.1
    assert breaker.attempt() is not None


def test_an_abandoned_trial_lets_the_next_call_try() -> None:
    breaker, clock = make("unit_abandon", threshold=1, cooldown=10)
    fail(breaker, 1)
    clock.now += 10
    trial = breaker.attempt()
    assert trial is not None
    trial.abandoned()  # the caller hung up before the provider answered
    assert state(breaker) is CircuitState.HALF_OPEN
    second = breaker.attempt()
    assert second is not None and second.is_trial


def test_a_trial_nobody_reports_on_is_given_up_after_a_cooldown() -> None:
    breaker, clock = make("unit_lost", threshold=1, cooldown=10)
    fail(breaker, 1)
    clock.now += 10
    lost = breaker.attempt()
    assert lost is not None
    clock.now += 9
    assert breaker.attempt() is None
    clock.now += 1
    replacement = breaker.attempt()
    assert replacement is not None and replacement.is_trial
    lost.abandoned()  # a stale trial's verdict does not free the new one's slot
    assert breaker.attempt() is None
    replacement.succeeded()
    assert state(breaker) is CircuitState.CLOSED


def test_only_the_first_verdict_of_an_attempt_counts() -> None:
    breaker, _ = make("unit_verdict", threshold=2)
    attempt = breaker.attempt()
    assert isinstance(attempt, Attempt)
    attempt.failed()
    attempt.failed()
    attempt.abandoned()
    assert breaker.failures == 1 and state(breaker) is CircuitState.CLOSED


def test_outcomes_of_calls_begun_before_it_opened_do_not_close_it() -> None:
    breaker, _ = make("unit_straggler", threshold=2)
    straggler = breaker.attempt()
    assert straggler is not None
    fail(breaker, 2)
    straggler.succeeded()
    assert state(breaker) is CircuitState.OPEN


def test_breaker_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerSettings(failure_threshold=0)
    with pytest.raises(ValueError, match="cooldown_s"):
        BreakerSettings(cooldown_s=0)


def test_the_process_breakers_are_made_from_the_settings_once() -> None:
    reset_breakers()
    try:
        with override_settings(CIRCUIT_FAILURE_THRESHOLD=7, CIRCUIT_COOLDOWN_SECONDS=12.5):
            breaker = circuit_breaker("unit_registry")
        assert breaker.settings == BreakerSettings(failure_threshold=7, cooldown_s=12.5)
        assert circuit_breaker("unit_registry") is breaker
        fail(breaker, 7)
        assert gauge("unit_registry") == 2
    finally:
        reset_breakers()
    assert gauge("unit_registry") == 0
    assert circuit_breaker("unit_registry") is not breaker
    reset_breakers()


def test_circuit_settings_have_defaults_and_are_validated() -> None:
    config = load_config({})
    assert (config.circuit_failure_threshold, config.circuit_cooldown_seconds) == (3, 30.0)
    tuned = load_config({"CIRCUIT_FAILURE_THRESHOLD": "5", "CIRCUIT_COOLDOWN_SECONDS": "90"})
    assert (tuned.circuit_failure_threshold, tuned.circuit_cooldown_seconds) == (5, 90.0)
    for environ in (
        {"CIRCUIT_FAILURE_THRESHOLD": "0"},
        {"CIRCUIT_FAILURE_THRESHOLD": "three"},
        {"CIRCUIT_COOLDOWN_SECONDS": "0.5"},
        {"CIRCUIT_COOLDOWN_SECONDS": "soon"},
        {"CIRCUIT_COOLDOWN": "30"},  # misspelled: refused, not ignored
    ):
        with pytest.raises(ConfigError) as caught:
            load_config(environ)
        assert str(caught.value).startswith(next(iter(environ)) + ":")
        assert "\n" not in str(caught.value)
