"""The conversation's memory between turns, stored encrypted in ``Call.state``.

A plain dataclass with a JSON round trip. Nothing lives only in a process: after each turn
the whole state is written, so a call whose process restarts resumes at the same question
with everything it already knew.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

STATE_VERSION = 1
# Goals that, once reached, are the call's outcome (they equal Call.Outcome values).
COMPLETED_GOALS = frozenset({"booked", "rescheduled", "cancelled"})


@dataclass
class Offer:
    """One slot offered to the caller, as it was read out."""

    slot_id: int
    label: str
    weekday: int
    hour: int
    minute: int
    provider: str
    date: str  # ISO, clinic-local

    @property
    def when(self) -> str:
        """The day and time as read out, without the provider ("Tuesday, March 3 at 9 AM")."""
        return self.label.rsplit(" with ", 1)[0]


@dataclass
class ConversationState:
    question: str = ""  # id of the question last asked (see questions.QUESTIONS)
    goal: str = ""  # book | reschedule | cancel
    last_prompt: str = ""
    misunderstood: int = 0  # reprompts for the current question
    silences: int = 0
    finished: bool = False

    # who is calling
    patient_id: int | None = None
    verified: bool = False
    new_patient: bool | None = None
    dob_attempts: int = 0
    first_name: str = ""
    last_name: str = ""
    date_of_birth: str = ""  # ISO
    phone: str = ""  # E.164
    email: str = ""
    address: dict[str, str] = field(default_factory=dict)

    # insurance
    carrier: str = ""
    carrier_heard: str = ""
    member_id: str = ""

    # the visit
    reason: str = ""
    appointment_type_id: int | None = None
    provider: str = ""  # a provider's name, or "any"
    weekdays: list[int] = field(default_factory=list)
    part_of_day: str = ""
    not_before: str = ""  # ISO date
    offers: list[Offer] = field(default_factory=list)
    offer_round: int = 0
    chosen_slot_id: int | None = None
    hold_token: str = ""
    existing_appointment_id: int | None = None
    appointment_id: int | None = None

    # a red flag heard uncertainly, while the caller is asked "Did you say ...?" (red_flags.py);
    # the interrupted question and its counters, to resume exactly there on a clear no
    flag_category: str = ""
    flag_rule: str = ""
    flag_evidence: str = ""
    flag_someone_else: bool = False
    flag_repeats: int = 0
    resume_question: str = ""
    resume_misunderstood: int = 0
    resume_silences: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ConversationState:
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["offers"] = [Offer(**offer) for offer in values.get("offers", [])]
        return cls(**values)

    @property
    def completed_goal(self) -> str | None:
        """The call outcome already achieved ("booked", ...), or None if nothing was done."""
        return self.goal if self.goal in COMPLETED_GOALS else None

    @property
    def chosen_offer(self) -> Offer | None:
        return next((o for o in self.offers if o.slot_id == self.chosen_slot_id), None)
