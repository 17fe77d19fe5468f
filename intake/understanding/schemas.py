"""Structured-output schemas and the system prompt for the language-model engine.

One JSON schema per expectation, holding only the fields that answer it plus the intent, so
the model has nothing else to fill in. Schemas follow the strict structured-outputs rules:
every property required, nullable values typed with "null", no additional properties. The
schema name (``intake_<expectation>``, plus ``_<confirming>`` for a read-back) is also the
key of the recorded answers the loopback fake serves in tests.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from openai.types.shared_params import ResponseFormatJSONSchema

from intake.understanding.types import (
    ANY_PROVIDER,
    SELF_PAY,
    WEEKDAY_NAMES,
    Context,
    Expectation,
    Intent,
    PartOfDay,
)

JsonSchema = dict[str, Any]


def _nullable(kind: str, description: str) -> JsonSchema:
    return {"type": [kind, "null"], "description": description}


def _address_schema() -> JsonSchema:
    parts = ("street", "unit", "city", "state", "postal_code")
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {part: {"type": ["string", "null"]} for part in parts},
                "required": list(parts),
                "additionalProperties": False,
            },
            {"type": "null"},
        ],
        "description": "The postal address said; state as its two-letter code.",
    }


FIELD_SCHEMAS: dict[str, JsonSchema] = {
    "first_name": _nullable("string", "Given name as said or spelled."),
    "last_name": _nullable("string", "Family name as said or spelled."),
    "spelled": _nullable("string", "Letters the caller spelled, upper case, no spaces."),
    "date": _nullable("string", "The date said, as YYYY-MM-DD."),
    "phone_digits": _nullable("string", "The phone number's digits only."),
    "use_calling_number": {
        "type": "boolean",
        "description": "True if the caller said to use the number they are calling from.",
    },
    "email": _nullable("string", "The e-mail address, written normally (a@b.com)."),
    "address": _address_schema(),
    "carrier": _nullable(
        "string", f"Insurance carrier as named, or '{SELF_PAY}' for no insurance / paying."
    ),
    "member_id": _nullable("string", "Member ID: upper-case letters and digits only."),
    "reason": _nullable("string", "Why the caller wants to be seen, in their words, short."),
    "provider": _nullable(
        "string", f"Provider named, from the list, or '{ANY_PROVIDER}' for no preference."
    ),
    "weekdays": {
        "type": "array",
        "items": {"type": "string", "enum": list(WEEKDAY_NAMES)},
        "description": "Days of the week the caller asked for.",
    },
    "part_of_day": {
        "anyOf": [{"type": "string", "enum": [str(p) for p in PartOfDay]}, {"type": "null"}],
        "description": "Part of the day the caller asked for.",
    },
    "soonest": {"type": "boolean", "description": "True if they want the earliest possible."},
    "not_before": _nullable("string", "Earliest acceptable date, YYYY-MM-DD ('next week')."),
    "option_number": _nullable("integer", "1-based number of the offered option chosen."),
    "new_patient": _nullable("boolean", "True if new to the clinic, false if returning."),
}

EXPECTATION_FIELDS: dict[Expectation, tuple[str, ...]] = {
    Expectation.YES_NO: (),
    Expectation.NAME: ("first_name", "last_name", "spelled"),
    Expectation.SPELLING: ("spelled",),
    Expectation.DATE_OF_BIRTH: ("date",),
    Expectation.PHONE: ("phone_digits", "use_calling_number"),
    Expectation.EMAIL: ("email",),
    Expectation.ADDRESS: ("address",),
    Expectation.CARRIER: ("carrier",),
    Expectation.MEMBER_ID: ("member_id",),
    Expectation.REASON: ("reason",),
    Expectation.PROVIDER: ("provider",),
    Expectation.DAY: ("date", "weekdays", "part_of_day", "soonest", "not_before"),
    Expectation.SLOT_CHOICE: ("option_number", "weekdays", "part_of_day"),
    Expectation.MENU: (),
    Expectation.PATIENT_STATUS: ("new_patient",),
    Expectation.FREE: (),
}

_TASKS: dict[Expectation, str] = {
    Expectation.YES_NO: "The caller answers a yes/no question.",
    Expectation.NAME: "The caller gives their first and last name.",
    Expectation.SPELLING: "The caller spells a name letter by letter.",
    Expectation.DATE_OF_BIRTH: (
        "The caller gives their date of birth (month first, US style). A two-digit year is "
        "the most recent such year that is not in the future."
    ),
    Expectation.PHONE: "The caller gives a phone number.",
    Expectation.EMAIL: "The caller gives an e-mail address ('dot' is '.', 'at' is '@').",
    Expectation.ADDRESS: "The caller gives a postal address.",
    Expectation.CARRIER: "The caller names their insurance carrier, or says they pay themselves.",
    Expectation.MEMBER_ID: "The caller reads their insurance member ID ('oh' is zero).",
    Expectation.REASON: "The caller says why they want an appointment.",
    Expectation.PROVIDER: "The caller says which provider they would like, if any.",
    Expectation.DAY: "The caller says when they would like to come in.",
    Expectation.SLOT_CHOICE: "The caller picks one of the offered appointments, or none.",
    Expectation.MENU: "The caller says what they are calling about.",
    Expectation.PATIENT_STATUS: "The caller says whether they are new to the clinic.",
    Expectation.FREE: "The caller says anything.",
}

_INTENTS = (
    "Intent: 'affirm' yes / agreement; 'deny' no / refusal (also 'none of those'); 'correction' "
    "the caller corrects a value read back or said before; 'repeat' asks to hear it again; "
    "'agent' wants a person; 'dont_know' does not know or have it; 'book', 'reschedule', "
    "'cancel' an appointment; 'question' a question for the clinic; 'goodbye' ends the call; "
    "'none' otherwise (for example a plain answer)."
)

SYSTEM_PROMPT = (
    "You read what a caller said on a medical clinic's phone line and extract structured "
    "fields. Extract only: never answer the caller, never give medical advice, never decide "
    "anything, and never invent a value the caller did not say. Use null, false or an empty "
    "list for anything not said. Speech recognition may write numbers and letters as words "
    "('five five five', 's m i t h'); convert them."
)


def schema_fields(expect: Expectation, context: Context) -> tuple[str, ...]:
    """The fields that answer ``expect``; a read-back question takes its value's fields."""
    if expect is Expectation.YES_NO and context.confirming is not None:
        return EXPECTATION_FIELDS[context.confirming]
    return EXPECTATION_FIELDS[expect]


def schema_name(expect: Expectation, context: Context) -> str:
    if expect is Expectation.YES_NO and context.confirming is not None:
        return f"intake_{expect.value}_{context.confirming.value}"
    return f"intake_{expect.value}"


@lru_cache(maxsize=64)
def _schema(fields: tuple[str, ...]) -> JsonSchema:
    properties: JsonSchema = {"intent": {"type": "string", "enum": [str(i) for i in Intent]}}
    properties.update({name: FIELD_SCHEMAS[name] for name in fields})
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def response_format(expect: Expectation, context: Context) -> ResponseFormatJSONSchema:
    """The ``response_format`` argument of a chat completion for this question."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema_name(expect, context),
            "strict": True,
            "schema": _schema(schema_fields(expect, context)),
        },
    }


def system_prompt(expect: Expectation, context: Context) -> str:
    """Instructions and the call's context; never the caller's phone number."""
    lines = [SYSTEM_PROMPT, _TASKS[expect], _INTENTS]
    today = context.today
    lines.append(f"Today is {today:%A} {today.isoformat()} ({context.time_zone}).")
    if context.last_question:
        lines.append(f"The question asked: {context.last_question}")
    if context.confirming is not None:
        lines.append(
            f"The agent read back a {context.confirming.value.replace('_', ' ')}: "
            f"{context.read_back or '(not given)'}. A 'no' with a new value is a correction."
        )
    fields = schema_fields(expect, context)
    if "carrier" in fields and context.accepted_carriers:
        lines.append("Carriers the clinic accepts: " + "; ".join(context.accepted_carriers))
    if "provider" in fields and context.provider_names:
        lines.append("Providers: " + "; ".join(context.provider_names))
    if "option_number" in fields and context.offered_options:
        offered = (f"{n}. {o.label}" for n, o in enumerate(context.offered_options, start=1))
        lines.append("Options offered: " + " | ".join(offered))
    return "\n".join(lines)
