"""The rules engine beyond the corpus: context, corrections, hedges, and its contract."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import pytest
from pytest_django.fixtures import Settings

from intake.understanding import (
    Address,
    Context,
    Expectation,
    Intent,
    RulesEngine,
    Understanding,
    UnderstandingEngine,
    engine_from_settings,
)
from intake.understanding.address import parse_address
from intake.understanding.llm import OpenAIEngine

ENGINE = RulesEngine()


def test_the_rules_engine_is_an_understanding_engine() -> None:
    engine: UnderstandingEngine = ENGINE

    assert engine.name == "rules"


@pytest.mark.parametrize("text", ["", "   ", "...", "um uh"])
def test_silence_and_noise_are_understood_as_nothing(text: str, context: Context) -> None:
    understood = ENGINE.parse(text, Expectation.NAME, context)

    assert understood == Understanding(engine="rules")


def test_a_correction_of_the_first_name_is_placed_by_the_read_back(context: Context) -> None:
    read_back = replace(context, confirming=Expectation.NAME, read_back="Jane Smith")

    first = ENGINE.parse("no it's jayne, j a y n e", Expectation.YES_NO, read_back)
    last = ENGINE.parse("no it's smyth, s m y t h", Expectation.YES_NO, read_back)

    assert (first.intent, first.first_name, first.last_name) == (Intent.CORRECTION, "Jayne", None)
    assert (last.intent, last.first_name, last.last_name) == (Intent.CORRECTION, None, "Smyth")


def test_a_restated_value_instead_of_yes_or_no_is_kept_without_claiming_a_correction(
    context: Context,
) -> None:
    read_back = replace(context, confirming=Expectation.DATE_OF_BIRTH, read_back="March 3, 1984")

    understood = ENGINE.parse("march third nineteen eighty four", Expectation.YES_NO, read_back)

    assert (understood.intent, understood.date) == (Intent.NONE, dt.date(1984, 3, 3))


def test_a_hedged_answer_keeps_its_value_but_is_trusted_less(context: Context) -> None:
    sure = ENGINE.parse("march third eighty four", Expectation.DATE_OF_BIRTH, context)
    hedged = ENGINE.parse(
        "I'm not sure, maybe march third eighty four", Expectation.DATE_OF_BIRTH, context
    )

    assert hedged.date == sure.date == dt.date(1984, 3, 3)
    assert hedged.intent is Intent.NONE
    assert hedged.confidence < sure.confidence


def test_a_two_digit_birth_year_is_never_in_the_future(context: Context) -> None:
    this_year = ENGINE.parse("january 5 25", Expectation.DATE_OF_BIRTH, context)
    next_month = ENGINE.parse("april 5 25", Expectation.DATE_OF_BIRTH, context)

    assert this_year.date == dt.date(2025, 1, 5)
    assert next_month.date == dt.date(1925, 4, 5)


def test_a_requested_day_is_read_from_the_clinics_today(context: Context) -> None:
    on_friday = replace(context, today=dt.date(2025, 3, 7))

    monday = ENGINE.parse("next tuesday", Expectation.DAY, context)
    friday = ENGINE.parse("next tuesday", Expectation.DAY, on_friday)
    tomorrow = ENGINE.parse("tomorrow", Expectation.DAY, on_friday)

    assert monday.date == dt.date(2025, 3, 11)
    assert friday.date == dt.date(2025, 3, 11)
    assert tomorrow.date == dt.date(2025, 3, 8)


def test_a_slot_needs_an_offer_to_be_chosen(context: Context) -> None:
    nothing_offered = replace(context, offered_options=[])

    understood = ENGINE.parse("the first one", Expectation.SLOT_CHOICE, nothing_offered)

    assert understood.slot_index is None


def test_the_phone_the_call_comes_from_is_used_only_when_the_call_has_one(
    context: Context,
) -> None:
    hidden = replace(context, caller_number="")

    assert ENGINE.parse("use this number", Expectation.PHONE, context).phone_e164 == "+16175551212"
    assert ENGINE.parse("use this number", Expectation.PHONE, hidden).phone_e164 is None


def test_an_address_with_a_repeated_part_keeps_the_first_rather_than_losing_the_turn() -> None:
    address, confidence = parse_address("12 elm road apartment 4 apartment 5 boston ma")

    assert address == Address(street="12 Elm Road", unit="Apartment 4", city="Boston", state="MA")
    assert confidence >= 0.8


def test_fields_are_json_friendly_and_keep_meaningful_falses() -> None:
    understood = Understanding(
        intent=Intent.AFFIRM,
        confidence=0.9,
        date=dt.date(1984, 3, 3),
        address=Address(street="12 Elm Road", city="Boston"),
        weekdays=frozenset({3, 1}),
        new_patient=False,
        slot_index=0,
    )

    fields = understood.fields()

    assert fields == {
        "date": "1984-03-03",
        "address": {"street": "12 Elm Road", "city": "Boston"},
        "weekdays": ["tuesday", "thursday"],
        "slot_index": 0,
        "new_patient": False,
    }
    assert json.loads(json.dumps(fields)) == fields
    assert Understanding(soonest=False).fields() == {}


def test_an_address_reads_back_on_one_line() -> None:
    address = Address(
        street="123 Main St", unit="Apt 4B", city="Springfield", state="IL", postal_code="62701"
    )

    assert address.one_line() == "123 Main St, Apt 4B, Springfield, IL 62701"


def test_warming_up_loads_the_parsers_without_error() -> None:
    ENGINE.warm_up()


def test_the_settings_choose_the_engine(settings: Settings) -> None:
    settings.NLU_PROVIDER = "rules"
    assert isinstance(engine_from_settings(), RulesEngine)

    settings.NLU_PROVIDER = "openai"
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.OPENAI_MODEL = "gpt-4o-mini"
    settings.NLU_TIMEOUT_SECONDS = 1.5
    engine = engine_from_settings()

    assert isinstance(engine, OpenAIEngine)
    assert (engine.model, engine.timeout) == ("gpt-4o-mini", 1.5)


NOISE = [
    "99999999999 third b zero at + with four zero",
    "oh com y no thousand 99999999999 zero",
    "actually eighty ... 999999999999999999999 xray , 7 a fifth",
    "double double triple hundred thousand thousand",
    "s as in for like instead of at the end",
    "25:00 2:99 0th 32nd of march",
    "ñ é 中 !!! @ . + #",
    "with a with an with two",
    "x" * 2000,
]


@pytest.mark.parametrize("text", NOISE)
def test_noise_never_breaks_an_extractor(
    text: str, context: Context, caplog: pytest.LogCaptureFixture
) -> None:
    for expect in Expectation:
        understood = ENGINE.parse(text, expect, replace(context, confirming=Expectation.NAME))

        assert 0.0 <= understood.confidence <= 1.0
    assert "nlu_rules_error" not in caplog.text, "an extractor raised and was caught"
