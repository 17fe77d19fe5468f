"""The vocabulary shared by the conversation and the understanding engines.

The conversation asks a question and says what kind of answer it expects (:class:`Expectation`);
an engine turns the caller's words into an :class:`Understanding`: an intent and the typed
fields it could extract. Everything an engine may need to know about the call so far travels
in a :class:`Context`, so engines never reach for Django settings or the database and can be
tested (and benchmarked) as plain functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SELF_PAY = "self-pay"
ANY_PROVIDER = "any"


class Expectation(StrEnum):
    """What kind of answer the question just asked calls for."""

    YES_NO = "yes_no"
    NAME = "name"  # first and last name
    SPELLING = "spelling"  # the letters of a name
    DATE_OF_BIRTH = "date_of_birth"
    PHONE = "phone"
    EMAIL = "email"
    ADDRESS = "address"
    CARRIER = "carrier"
    MEMBER_ID = "member_id"
    REASON = "reason"
    PROVIDER = "provider"  # a preference, or "anyone"
    DAY = "day"  # a day, a date or a part of the day
    SLOT_CHOICE = "slot_choice"  # which of the offered options
    MENU = "menu"  # book, reschedule, cancel, or a question
    PATIENT_STATUS = "patient_status"  # new or returning
    FREE = "free"


class Intent(StrEnum):
    """What the caller is doing with this turn, whatever the fields."""

    AFFIRM = "affirm"
    DENY = "deny"
    CORRECTION = "correction"
    REPEAT = "repeat"
    AGENT = "agent"  # wants a person
    DONT_KNOW = "dont_know"
    BOOK = "book"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    QUESTION = "question"  # a question for the clinic: answered by staff, never by a model
    GOODBYE = "goodbye"
    NONE = "none"


class PartOfDay(StrEnum):
    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"


@dataclass(frozen=True)
class Address:
    """A postal address as heard; any part may be missing."""

    street: str | None = None
    unit: str | None = None
    city: str | None = None
    state: str | None = None  # two-letter code when recognised
    postal_code: str | None = None

    def one_line(self) -> str:
        """The address as one line, for reading back."""
        locality = " ".join(part for part in (self.state, self.postal_code) if part)
        parts = (self.street, self.unit, self.city, locality)
        return ", ".join(part for part in parts if part)

    def as_dict(self) -> dict[str, str]:
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name))}


@dataclass(frozen=True)
class OfferedOption:
    """One appointment the conversation offered, as the caller heard it.

    ``label`` is the spoken description ("Tuesday March 3 at 9:30 AM with Dr. Patel");
    ``weekday`` (0 = Monday), ``hour`` and ``minute`` are in the clinic's local time.
    """

    label: str
    weekday: int
    hour: int
    minute: int
    provider: str = ""
    date: dt.date | None = None


@dataclass(frozen=True)
class Context:
    """What an engine may know about the call: nothing here comes from the caller's words.

    ``confirming`` and ``read_back`` describe a read-back question ("I have Jane Smith, is that
    right?"): what kind of value is being confirmed and how it was read, so that "no, it's
    Smyth with a y" can be understood as a correction of that value. ``caller_number`` is the
    number the call comes from (E.164), for "use the number I'm calling from"; it is never
    sent to a language model.
    """

    today: dt.date
    time_zone: str = "America/New_York"
    accepted_carriers: Sequence[str] = ()
    provider_names: Sequence[str] = ()
    offered_options: Sequence[OfferedOption] = ()
    last_question: str = ""
    confirming: Expectation | None = None
    read_back: str = ""
    caller_number: str = ""

    @property
    def offered_labels(self) -> list[str]:
        return [option.label for option in self.offered_options]


# Fields that describe the turn rather than something the caller said.
_META_FIELDS = frozenset({"intent", "confidence", "engine"})


@dataclass(frozen=True, kw_only=True)
class Understanding:
    """What one caller turn meant. Every field is optional: an engine fills what it heard.

    ``confidence`` in [0, 1] says how sure the parse is (low when nothing was extracted);
    ``engine`` names who produced it: ``rules``, ``openai``, or ``rules-fallback`` when the
    language model failed and the rules answered instead.
    """

    intent: Intent = Intent.NONE
    confidence: float = 0.0
    engine: str = "rules"
    first_name: str | None = None
    last_name: str | None = None
    spelled: str | None = None  # letters of a name, upper case ("SMYTH", "O'BRIEN")
    date: dt.date | None = None  # a date of birth, or a requested day
    phone_e164: str | None = None
    email: str | None = None
    address: Address | None = None
    carrier: str | None = None  # an accepted carrier's canonical name, or "self-pay"
    carrier_heard: str | None = None  # what the caller named, accepted or not
    member_id: str | None = None  # upper-case letters and digits
    reason: str | None = None
    provider: str | None = None  # a provider's canonical name, or "any"
    weekdays: frozenset[int] = field(default_factory=frozenset)  # 0 = Monday
    part_of_day: PartOfDay | None = None
    soonest: bool = False  # "as soon as possible"
    not_before: dt.date | None = None  # "next week", "after the 15th"
    slot_index: int | None = None  # 0-based index into Context.offered_options
    new_patient: bool | None = None

    def fields(self) -> dict[str, object]:
        """The extracted fields that are set, as JSON-friendly values (for display)."""
        shown: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _META_FIELDS or value is None or value == frozenset():
                continue
            if f.name == "soonest" and not value:  # new_patient=False is an answer; this isn't
                continue
            if isinstance(value, dt.date):
                shown[f.name] = value.isoformat()
            elif isinstance(value, Address):
                shown[f.name] = value.as_dict()
            elif isinstance(value, frozenset):
                shown[f.name] = [WEEKDAY_NAMES[day] for day in sorted(value)]
            elif isinstance(value, StrEnum):
                shown[f.name] = str(value)
            else:
                shown[f.name] = value
        return shown

    @property
    def extracted(self) -> bool:
        """Whether any field was extracted (the intent alone does not count)."""
        return bool(self.fields())

    def with_engine(self, engine: str) -> Understanding:
        return replace(self, engine=engine)
