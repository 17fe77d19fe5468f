"""What goes into the conversation (events) and what comes out (actions).

Plain frozen dataclasses, so the voice layer, the ``chat`` command and the tests speak the
same small language.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from intake.understanding.types import Expectation

# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallStarted:
    """The caller is connected."""


@dataclass(frozen=True)
class CallerSaid:
    """A final transcript of the caller's turn. ``stt_final_ms`` is recorded on the turn."""

    text: str
    confidence: float = 1.0
    stt_final_ms: int | None = None


@dataclass(frozen=True)
class Silence:
    """The caller said nothing for ``seconds`` after a question."""

    seconds: float


@dataclass(frozen=True)
class KeyPressed:
    """Keypad input: one key, or a run of digits ended by # (a date of birth, a member ID)."""

    keys: str


@dataclass(frozen=True)
class CallEnded:
    """The line closed (hang-up, network loss, maximum length)."""

    reason: str = "hangup"


Event = CallStarted | CallerSaid | Silence | KeyPressed | CallEnded


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """Speak this. ``turn_id`` is the stored agent turn, for timings added by the voice layer."""

    text: str
    turn_id: int | None = None


@dataclass(frozen=True)
class Expect:
    """What the next caller turn should be, with vocabulary hints for speech recognition."""

    expectation: Expectation
    hints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Transfer:
    """Hand the caller to the front desk (the voice layer closes the stream into <Dial>)."""


@dataclass(frozen=True)
class HangUp:
    """End the call after the last words have played."""


@dataclass(frozen=True)
class FollowUpOpened:
    """For display and logs: staff have work from this call."""

    followup_id: int
    reason: str


Action = Say | Expect | Transfer | HangUp | FollowUpOpened
