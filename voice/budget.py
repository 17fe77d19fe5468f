"""A per-stream message budget: no stream makes the process parse far more than real time.

Twilio sends one media message per 20 ms of caller audio (50 a second), plus a handful of
others: ``connected`` and ``start`` once, a ``mark`` echo per agent utterance, a ``dtmf`` per
key pressed, ``stop`` once. A stream that sends far more than that is broken or hostile, and
every message it sends costs the event loop a JSON parse that the other calls on this process
wait behind. So each stream's consumer holds one :class:`MessageBudget`, asked *before* a
message is parsed, and again after, for messages that are not media:

- **messages** (:meth:`MessageBudget.admit_message`): a token bucket of
  :data:`MESSAGES_PER_SECOND` (four times Twilio's media rate) with room for a burst of
  :data:`BURST_MESSAGES` (thirty seconds of media: after a stall of this process or of the
  network, Twilio's buffered frames arrive at once, and they are the caller's words; parsing
  all of them costs a few tens of milliseconds, once). Four times, not one: this budget bounds
  the cost of parsing, not the pace of audio (the recogniser's own budget holds audio to real
  time), and jittery delivery or a test client that sends a scripted caller faster than real
  time must not lose words to it; 200 small JSON parses a second are well under 1% of a core.
  A message costs one token per started :data:`MESSAGE_UNIT_BYTES`, so large messages spend
  the budget faster (a real media message is about 400 bytes: one token).
- **control** (:meth:`MessageBudget.admit_event`): a second bucket of
  :data:`CONTROL_PER_SECOND` for everything but media (marks, keypresses, starts, stops), so
  that a flood of marks or dtmf cannot reach the session even inside the message budget.

What is over budget is dropped unread, counted (``voice_stream_messages_over_budget_total``
by kind) and logged at most once per :data:`LOG_INTERVAL_SECONDS` per stream and kind, with
the running count: a flood must not become a flood of log lines (a bucket that refills
between drops would otherwise start a new "episode" every few milliseconds). A well-behaved
stream never comes near either limit, and the budget never closes a call: a caller behind a
misbehaving carrier still reaches the agent with what gets through.

The recogniser's own budget (audio seconds against wall-clock seconds) is separate; this one
bounds the cost of the wire itself. The rates are Twilio's protocol, not something a clinic
tunes, so they are constants here rather than settings.

The consumer wires it in three lines (see :meth:`MessageBudget.admit_message`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from clinic.logs import get_logger
from voice import metrics
from voice.twilio_wire import InboundEvent, Media

log = get_logger(__name__)

TWILIO_MEDIA_PER_SECOND = 50
"""Twilio's media rate: one message per 20 ms frame."""
MESSAGES_PER_SECOND = 4.0 * TWILIO_MEDIA_PER_SECOND
"""Sustained messages a stream may send: media plus everything else, with room to spare."""
BURST_MESSAGES = 30 * TWILIO_MEDIA_PER_SECOND
"""Messages a stream may send at once after a quiet spell: thirty seconds of Twilio's media."""
MESSAGE_UNIT_BYTES = 2048
"""A message costs one token per started unit of this size."""
CONTROL_PER_SECOND = 10.0
"""Sustained non-media messages: a mark per agent utterance, a dtmf per key pressed."""
CONTROL_BURST = 50
"""Non-media messages at once: the marks Twilio echoes together after a ``clear``, with room."""

LOG_INTERVAL_SECONDS = 10.0
"""At most one ``stream_over_budget`` line per stream and kind in this long."""

MESSAGE = "message"
CONTROL = "control"


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; starts full.

    ``clock`` is any monotonic seconds function (tests pass their own to step time).
    """

    def __init__(
        self, *, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are that many; otherwise spend none and say no."""
        now = self._clock()
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False


class MessageBudget:
    """One stream's allowance of inbound messages; see the module docstring.

    Not thread-safe, and need not be: one consumer's messages arrive one at a time.
    """

    def __init__(
        self,
        *,
        messages_per_second: float = MESSAGES_PER_SECOND,
        burst_messages: float = BURST_MESSAGES,
        control_per_second: float = CONTROL_PER_SECOND,
        control_burst: float = CONTROL_BURST,
        unit_bytes: int = MESSAGE_UNIT_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._messages = TokenBucket(rate=messages_per_second, burst=burst_messages, clock=clock)
        self._control = TokenBucket(rate=control_per_second, burst=control_burst, clock=clock)
        self._unit_bytes = max(1, unit_bytes)
        self._clock = clock
        self._logged_at: dict[str, float] = {}
        # Bound once: looking a label up takes a lock, and a flood calls this per message.
        self._counters = {
            kind: metrics.OVER_BUDGET.labels(kind=kind) for kind in (MESSAGE, CONTROL)
        }
        self.dropped: dict[str, int] = {MESSAGE: 0, CONTROL: 0}
        self.call_id: int | None = None
        """Set once the stream has started, so that log lines name the call."""

    def admit_message(self, size: int) -> bool:
        """Whether to parse a message of ``size`` characters (or bytes) at all.

        Call it first thing in ``receive``::

            raw = text_data if text_data is not None else (bytes_data or b"")
            if not self.budget.admit_message(len(raw)):
                return
        """
        cost = 1 + max(0, size - 1) // self._unit_bytes
        return self._admit(MESSAGE, self._messages.take(cost))

    def admit_event(self, event: InboundEvent) -> bool:
        """Whether to handle a parsed event: media always (it was paid for by
        :meth:`admit_message`), anything else only within the control budget."""
        if isinstance(event, Media):
            return True
        return self._admit(CONTROL, self._control.take())

    def _admit(self, kind: str, allowed: bool) -> bool:
        if allowed:
            return True
        self.dropped[kind] += 1
        self._counters[kind].inc()
        now = self._clock()
        last = self._logged_at.get(kind)
        if last is None or now - last >= LOG_INTERVAL_SECONDS:
            self._logged_at[kind] = now
            log.warning(
                "stream_over_budget", kind=kind, dropped=self.dropped[kind], call_id=self.call_id
            )
        return False
