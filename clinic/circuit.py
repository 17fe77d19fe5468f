"""Per-process circuit breakers for the hosted providers (speech, language model).

A provider that is down or slow costs every caller a timeout before the fallback speaks. After
``failure_threshold`` failures in a row a breaker *opens*: callers go straight to the fallback
(offline voice, offline recogniser, rules) without trying the provider. After ``cooldown_s``
the next caller is let through as the one *trial* (the breaker is then *half-open*: the others
keep using the fallback while the trial is out). The provider answering the trial closes the
breaker; failing it opens the breaker for another cool-down.

Why not a library: pybreaker wraps one synchronous call (asyncio only through Tornado
coroutines, a threading lock held across the call, wall-clock ``datetime`` for the cool-down)
and lets every caller through while half-open; purgatory (asyncio) also uses the wall clock,
also lets every caller through while half-open, and brings a message bus and unit of work for
a state that fits in a few fields. Neither fits the three shapes of call here: an awaited
request (OpenAI), a streamed body that can fail midway (Aura), and a WebSocket whose failure is
known long after the call began (Deepgram STT gives up reconnecting mid-call). So the state
machine is explicit: :meth:`CircuitBreaker.attempt` hands out an :class:`Attempt` (or ``None``
while open), and whoever made the call reports :meth:`Attempt.succeeded`, :meth:`Attempt.failed`
or :meth:`Attempt.abandoned` (cancelled by a barge-in or a hang-up: no verdict either way).

What counts as a failure is the caller's decision: a timeout, a refused connection, a 5xx, a
stream cut short. An answer the provider gave (a 4xx about our request, a model refusal) is not
an outage. Outcomes of calls that began before the breaker opened are ignored while it is open.

State is per process (each Daphne process learns on its own, within ``failure_threshold``
calls) and is exported as the gauge ``provider_circuit_state{provider}``: 0 closed, 1 half-open
(a trial is out), 2 open. ``provider`` is a fixed name from the code, never caller data.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from clinic.logs import get_logger

log = get_logger(__name__)

CIRCUIT_STATE = Gauge(
    "provider_circuit_state",
    "Circuit breaker of a hosted provider in this process: 0 closed, 1 half-open, 2 open.",
    ["provider"],
)
SHORT_CIRCUITS = Counter(
    "provider_circuit_short_circuits_total",
    "Calls sent straight to the fallback because the provider's breaker was open.",
    ["provider"],
)


class CircuitState(enum.IntEnum):
    """The gauge's values: higher is worse, so an alert can be ``> 0``."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int = 3
    """Failures in a row (no success in between) that open the breaker."""
    cooldown_s: float = 30.0
    """How long an open breaker sends every call to the fallback before a trial."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.cooldown_s <= 0:
            raise ValueError("cooldown_s must be positive")


class CircuitBreaker:
    """One provider's breaker. Safe to share between the calls (tasks and threads) of a process.

    ``clock`` is a monotonic clock in seconds: the cool-down must not jump with the wall clock.
    """

    def __init__(
        self,
        provider: str,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_started_at: float | None = None
        self._trial_id = 0
        self._gauge = CIRCUIT_STATE.labels(provider=provider)
        self._gauge.set(self._state)

    @property
    def state(self) -> CircuitState:
        """The state as last changed; an open breaker past its cool-down stays open until a
        call comes and takes the trial (the gauge says the same)."""
        return self._state

    @property
    def failures(self) -> int:
        """Failures in a row so far (reset by a success)."""
        return self._failures

    def attempt(self) -> Attempt | None:
        """Permission to call the provider now, or ``None``: use the fallback.

        The caller must report the outcome on the returned :class:`Attempt`.
        """
        with self._lock:
            now = self._clock()
            if self._state is CircuitState.CLOSED:
                return Attempt(self, trial_id=None)
            if self._state is CircuitState.OPEN:
                if now - self._opened_at < self.settings.cooldown_s:
                    SHORT_CIRCUITS.labels(provider=self.provider).inc()
                    return None
                self._set_state(CircuitState.HALF_OPEN)
                return self._start_trial(now)
            # Half-open: one trial at a time. A trial nobody reported on for a whole
            # cool-down (its call died without a verdict) is given up and another goes.
            started = self._trial_started_at
            if started is None or now - started >= self.settings.cooldown_s:
                return self._start_trial(now)
            SHORT_CIRCUITS.labels(provider=self.provider).inc()
            return None

    def record_success(self) -> None:
        """The provider answered: a closed breaker forgets its failures, a trial closes it."""
        with self._lock:
            if self._state is CircuitState.OPEN:
                return  # a call from before the breaker opened
            self._failures = 0
            self._trial_started_at = None
            if self._state is CircuitState.HALF_OPEN:
                self._set_state(CircuitState.CLOSED)
                log.info("circuit_closed", provider=self.provider)

    def record_failure(self) -> None:
        """The provider failed a call (timeout, refused, 5xx, stream cut)."""
        with self._lock:
            if self._state is CircuitState.OPEN:
                return
            self._failures += 1
            if (
                self._state is CircuitState.HALF_OPEN
                or self._failures >= self.settings.failure_threshold
            ):
                self._open()

    def _start_trial(self, now: float) -> Attempt:
        self._trial_started_at = now
        self._trial_id += 1
        log.info("circuit_trial", provider=self.provider)
        return Attempt(self, trial_id=self._trial_id)

    def _abandon_trial(self, trial_id: int) -> None:
        with self._lock:
            if self._state is CircuitState.HALF_OPEN and trial_id == self._trial_id:
                self._trial_started_at = None  # the next call may try

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._trial_started_at = None
        self._set_state(CircuitState.OPEN)
        log.warning(
            "circuit_opened",
            provider=self.provider,
            failures=self._failures,
            cooldown_s=self.settings.cooldown_s,
        )

    def _set_state(self, state: CircuitState) -> None:
        self._state = state
        self._gauge.set(state)


class Attempt:
    """One call's permission to use the provider. The first verdict counts; later ones are
    ignored, so a caller may report defensively (say, ``abandoned()`` in a ``finally``)."""

    def __init__(self, breaker: CircuitBreaker, *, trial_id: int | None) -> None:
        self.breaker = breaker
        self.trial_id = trial_id
        self.reported = False

    @property
    def is_trial(self) -> bool:
        return self.trial_id is not None

    def succeeded(self) -> None:
        if self._first():
            self.breaker.record_success()

    def failed(self) -> None:
        if self._first():
            self.breaker.record_failure()

    def abandoned(self) -> None:
        """The call was cancelled before the provider showed whether it works."""
        if self._first() and self.trial_id is not None:
            self.breaker._abandon_trial(self.trial_id)

    def _first(self) -> bool:
        if self.reported:
            return False
        self.reported = True
        return True


# --- the process's breakers -------------------------------------------------------------------

_breakers: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def circuit_breaker(provider: str) -> CircuitBreaker:
    """The process-wide breaker of ``provider``, made on first use from the settings
    ``CIRCUIT_FAILURE_THRESHOLD`` and ``CIRCUIT_COOLDOWN_SECONDS`` (read then, not at import)."""
    with _registry_lock:
        breaker = _breakers.get(provider)
        if breaker is None:
            from django.conf import settings

            breaker = CircuitBreaker(
                provider,
                BreakerSettings(
                    failure_threshold=settings.CIRCUIT_FAILURE_THRESHOLD,
                    cooldown_s=settings.CIRCUIT_COOLDOWN_SECONDS,
                ),
            )
            _breakers[provider] = breaker
        return breaker


def reset_breakers() -> None:
    """Forget every breaker (tests, or settings changed): the next use starts closed."""
    with _registry_lock:
        for breaker in _breakers.values():
            breaker._gauge.set(CircuitState.CLOSED)
        _breakers.clear()
