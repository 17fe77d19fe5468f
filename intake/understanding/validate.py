"""Check a language model's structured output before anything believes it.

A model's answer goes through the same normalisers as the rules engine's: a carrier must be
one the clinic accepts (or it is reported as heard, not accepted), a provider one of the
clinic's, an option one that was offered, a date of birth not in the future, a phone number
valid, and a name, member ID or spelling must be grounded in what the caller actually said.
A value that fails is dropped (and the turn's confidence lowered), never repaired by guessing.
An answer that does not have the schema's shape at all raises :class:`InvalidModelOutput`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from rapidfuzz import fuzz

from intake.understanding.address import STATE_CODES, STATES
from intake.understanding.contact import VALID_EMAIL, phone_e164
from intake.understanding.matching import CARRIER_ALIASES, best_window, match_carrier
from intake.understanding.matching import match_provider as _match_provider
from intake.understanding.member_id import normalize_member_id
from intake.understanding.names import name_case, parse_spelling, place_name
from intake.understanding.schemas import schema_fields
from intake.understanding.spoken import digit_string, tokens
from intake.understanding.types import (
    ANY_PROVIDER,
    SELF_PAY,
    WEEKDAY_NAMES,
    Address,
    Context,
    Expectation,
    Intent,
    PartOfDay,
    Understanding,
)

MAX_REASON_LENGTH = 500
_OLDEST_BIRTH_YEAR = 1900
_BOOKING_HORIZON = dt.timedelta(days=400)
_GROUNDED = 70.0


class InvalidModelOutput(ValueError):
    """The model's answer is not the object its schema describes. Never carries its text."""


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def _grounded_name(value: str, text: str, context: Context) -> bool:
    """Whether a name is in what was said (or read back, for "with a y" corrections)."""
    haystacks = [_letters(text), _letters(context.read_back)]
    spelled, _ = parse_spelling(text)
    if spelled:
        haystacks.append(_letters(spelled))
    needle = _letters(value)
    return bool(needle) and any(
        hay and fuzz.partial_ratio(needle, hay) >= _GROUNDED for hay in haystacks
    )


class _Fields:
    """Turns one model answer into validated fields, counting what it had to reject."""

    def __init__(self, data: Mapping[str, Any], text: str, context: Context, kind: Expectation):
        self.data = data
        self.text = text
        self.context = context
        self.kind = kind
        self.rejected = 0
        self.values: dict[str, Any] = {}

    def raw(self, name: str) -> Any:
        if name not in self.data:
            raise InvalidModelOutput(f"missing field {name}")
        return self.data[name]

    def keep(self, name: str, value: Any, raw: Any) -> None:
        if value is None or value == frozenset():
            if raw not in (None, "", [], False):
                self.rejected += 1
            return
        self.values[name] = value

    def string(self, name: str) -> str | None:
        raw = self.raw(name)
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise InvalidModelOutput(f"{name} is not a string")
        return raw.strip() or None

    def boolean(self, name: str) -> bool | None:
        raw = self.raw(name)
        if raw is not None and not isinstance(raw, bool):
            raise InvalidModelOutput(f"{name} is not a boolean")
        return raw

    def date(self, name: str) -> dt.date | None:
        raw = self.string(name)
        if raw is None:
            return None
        try:
            value = dt.date.fromisoformat(raw)
        except ValueError:
            return None
        today = self.context.today
        if self.kind is Expectation.DATE_OF_BIRTH:
            return value if _OLDEST_BIRTH_YEAR <= value.year and value <= today else None
        return value if today <= value <= today + _BOOKING_HORIZON else None


def _name(f: _Fields, name: str) -> None:
    raw = f.string(name)
    valid = bool(raw and re.fullmatch(r"[A-Za-z][A-Za-z' -]{0,39}", raw))
    grounded = valid and raw is not None and _grounded_name(raw, f.text, f.context)
    f.keep(name, name_case(raw) if raw and grounded else None, raw)


def _spelled(f: _Fields) -> None:
    raw = f.string("spelled")
    letters = re.sub(r"[^A-Z'-]", "", raw.upper()) if raw else ""
    grounded = bool(letters) and _grounded_name(letters, f.text, f.context)
    f.keep("spelled", letters if grounded and len(letters) <= 40 else None, raw)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _phone(f: _Fields) -> None:
    raw = f.string("phone_digits")
    number = phone_e164(raw)[0] if raw else None
    if number and _digits(number)[-10:] not in digit_string(tokens(f.text)):
        number = None  # not the digits the caller said
    if number is None and f.boolean("use_calling_number") and f.context.caller_number:
        f.keep("phone_e164", f.context.caller_number, True)
        return
    f.keep("phone_e164", number, raw)


def _email(f: _Fields) -> None:
    raw = f.string("email")
    value = raw.lower().strip(" .") if raw else None
    f.keep("email", value if value and VALID_EMAIL.match(value) else None, raw)


def _address(f: _Fields) -> None:
    raw = f.raw("address")
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        raise InvalidModelOutput("address is not an object")
    parts: dict[str, str | None] = {}
    for part in ("street", "unit", "city", "state", "postal_code"):
        value = raw.get(part)
        parts[part] = value.strip() if isinstance(value, str) and value.strip() else None
    state = parts["state"]
    if state:
        parts["state"] = (
            state.upper() if state.upper() in STATE_CODES else STATES.get(state.lower())
        )
    postal = parts["postal_code"]
    if postal and not re.fullmatch(r"\d{5}(-?\d{4})?", postal):
        parts["postal_code"] = None
    address = Address(**parts)
    f.keep("address", address if address.as_dict() else None, raw)


def _carrier(f: _Fields) -> None:
    raw = f.string("carrier")
    if raw is None:
        return
    if raw.lower().replace(" ", "-") in (SELF_PAY, "selfpay", "cash", "no-insurance"):
        f.keep("carrier", SELF_PAY, raw)
        f.keep("carrier_heard", SELF_PAY, raw)
        return
    words = tokens(f.text)
    aliases = [alias for alias, usual in CARRIER_ALIASES.items() if usual.lower() == raw.lower()]
    said = best_window(raw, words) >= _GROUNDED or any(
        best_window(alias, words) >= 85 for alias in aliases
    )
    if not said:
        f.keep("carrier_heard", None, raw)  # a carrier the caller did not name
        return
    # Named but not accepted is an answer, not an error: carrier None, carrier_heard set.
    f.values["carrier_heard"] = raw
    carrier = match_carrier(raw, f.context.accepted_carriers).carrier
    if carrier is not None:
        f.values["carrier"] = carrier


def _member_id(f: _Fields) -> None:
    raw = f.string("member_id")
    value = normalize_member_id(raw)[0] if raw else None
    if value and _digits(value) not in digit_string(tokens(f.text)):
        value = None  # digits the caller did not say
    f.keep("member_id", value, raw)


def _reason(f: _Fields) -> None:
    raw = f.string("reason")
    f.keep("reason", raw[:MAX_REASON_LENGTH] if raw else None, raw)


def _provider(f: _Fields) -> None:
    raw = f.string("provider")
    if raw is None:
        return
    if raw.lower() in (ANY_PROVIDER, "anyone", "no preference"):
        f.keep("provider", ANY_PROVIDER, raw)
        return
    provider, _ = _match_provider(raw, f.context.provider_names)
    f.keep("provider", provider if provider != ANY_PROVIDER else None, raw)


def _date(f: _Fields, name: str) -> None:
    f.keep(name, f.date(name), f.raw(name))


def _weekdays(f: _Fields) -> None:
    raw = f.raw("weekdays")
    if not isinstance(raw, list):
        raise InvalidModelOutput("weekdays is not a list")
    days = frozenset(WEEKDAY_NAMES.index(day) for day in raw if day in WEEKDAY_NAMES)
    f.keep("weekdays", days, raw)


def _part_of_day(f: _Fields) -> None:
    raw = f.string("part_of_day")
    f.keep("part_of_day", PartOfDay(raw) if raw in {str(p) for p in PartOfDay} else None, raw)


def _soonest(f: _Fields) -> None:
    f.keep("soonest", True if f.boolean("soonest") else None, None)


def _option(f: _Fields) -> None:
    raw = f.raw("option_number")
    if raw is not None and (not isinstance(raw, int) or isinstance(raw, bool)):
        raise InvalidModelOutput("option_number is not an integer")
    index = raw - 1 if raw is not None and 1 <= raw <= len(f.context.offered_options) else None
    f.keep("slot_index", index, raw)


def _new_patient(f: _Fields) -> None:
    f.keep("new_patient", f.boolean("new_patient"), None)


def _nothing(f: _Fields) -> None:
    """A field read together with another one (use_calling_number, by the phone)."""


_CONVERTERS: dict[str, Callable[[_Fields], None]] = {
    "first_name": lambda f: _name(f, "first_name"),
    "last_name": lambda f: _name(f, "last_name"),
    "spelled": _spelled,
    "date": lambda f: _date(f, "date"),
    "not_before": lambda f: _date(f, "not_before"),
    "phone_digits": _phone,
    "use_calling_number": _nothing,
    "email": _email,
    "address": _address,
    "carrier": _carrier,
    "member_id": _member_id,
    "reason": _reason,
    "provider": _provider,
    "weekdays": _weekdays,
    "part_of_day": _part_of_day,
    "soonest": _soonest,
    "option_number": _option,
    "new_patient": _new_patient,
}


def understanding_from_model(
    data: Mapping[str, Any], text: str, expect: Expectation, context: Context
) -> Understanding:
    """A validated :class:`Understanding` from a model's structured answer."""
    try:
        intent = Intent(str(data["intent"]))
    except (KeyError, ValueError):
        raise InvalidModelOutput("intent is not one of the schema's") from None
    kind = context.confirming if expect is Expectation.YES_NO and context.confirming else expect
    f = _Fields(data, text, context, kind)
    for name in schema_fields(expect, context):
        _CONVERTERS[name](f)
    result = Understanding(intent=intent, **f.values)
    if kind in (Expectation.NAME, Expectation.SPELLING) and intent is Intent.CORRECTION:
        result = _placed_correction(result, context)
    if f.rejected:
        confidence = 0.4
    elif result.extracted or intent is not Intent.NONE:
        confidence = 0.85
    else:
        confidence = 0.3
    return replace(result, confidence=confidence, engine="openai")


def _placed_correction(result: Understanding, context: Context) -> Understanding:
    """A spelled correction ("Smith with a y") names the first or the last name."""
    if result.first_name or result.last_name or not result.spelled:
        return result
    first, last = place_name(name_case(result.spelled), context.read_back)
    return replace(result, first_name=first, last_name=last)
