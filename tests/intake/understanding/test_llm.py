"""The OpenAI engine, through the real openai client, against the loopback fake of the API.

Recorded structured outputs stand in for the model (tests/fakes/openai_recordings.json);
everything else is real: the client library, HTTP on 127.0.0.1, the engine's schemas, its
post-validation and its fallback to the rules.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

import pytest

from intake.understanding import Context, Expectation, Intent, RulesEngine
from intake.understanding.llm import OpenAIEngine
from intake.understanding.schemas import EXPECTATION_FIELDS
from tests.fakes.openai_server import FakeOpenAI


async def test_a_recorded_answer_comes_through_the_real_client(
    openai_engine: OpenAIEngine, fake_openai: FakeOpenAI, context: Context
) -> None:
    text = "uh my birthday's the third of march, eighty four"

    understood = await openai_engine.understand(text, Expectation.DATE_OF_BIRTH, context)

    assert (understood.engine, understood.intent) == ("openai", Intent.NONE)
    assert understood.date == dt.date(1984, 3, 3)
    assert understood.confidence >= 0.8
    [request] = fake_openai.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test-loopback"
    assert request.headers["User-Agent"].startswith("AsyncOpenAI/Python")
    assert request.body["model"] == "gpt-4o-mini"
    assert request.schema_name == "intake_date_of_birth"
    assert request.caller_text == text


async def test_the_system_prompt_asks_for_extraction_only_and_keeps_the_callers_number(
    openai_engine: OpenAIEngine, fake_openai: FakeOpenAI, context: Context
) -> None:
    await openai_engine.understand("my number is the one I'm on", Expectation.PHONE, context)

    prompt = fake_openai.requests[0].system_prompt
    assert "Extract only" in prompt
    assert "never give medical advice" in prompt
    assert "2025-03-03" in prompt
    assert context.caller_number not in prompt
    assert "5551212" not in prompt


@pytest.mark.parametrize("expect", list(Expectation), ids=str)
async def test_each_expectation_sends_its_own_strict_schema(
    expect: Expectation, openai_engine: OpenAIEngine, fake_openai: FakeOpenAI, context: Context
) -> None:
    understood = await openai_engine.understand("something unrecorded", expect, context)

    [request] = fake_openai.requests
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    assert request.schema_name == f"intake_{expect.value}"
    schema = request.schema
    assert set(schema["properties"]) == {"intent", *EXPECTATION_FIELDS[expect]}
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]["intent"]["enum"]) == {str(i) for i in Intent}
    # An unrecorded line gets the fake's empty answer: nothing understood, and it says so.
    assert (understood.engine, understood.intent, understood.fields()) == ("openai", "none", {})
    assert understood.confidence <= 0.3


async def test_a_read_back_question_sends_the_schema_of_the_value_being_confirmed(
    openai_engine: OpenAIEngine, fake_openai: FakeOpenAI, context: Context
) -> None:
    confirming = replace(context, confirming=Expectation.NAME, read_back="Jane Smith")

    understood = await openai_engine.understand(
        "no no it's smyth, with a y", Expectation.YES_NO, confirming
    )

    assert fake_openai.requests[0].schema_name == "intake_yes_no_name"
    assert set(fake_openai.requests[0].schema["properties"]) == {
        "intent",
        "first_name",
        "last_name",
        "spelled",
    }
    assert understood.intent is Intent.CORRECTION
    assert (understood.last_name, understood.spelled) == ("Smyth", "SMYTH")


@pytest.mark.parametrize(
    ("text", "carrier", "heard"),
    [
        (
            "we've got the blue cross plan through my husband's job",
            "Blue Cross Blue Shield",
            "Blue Cross Blue Shield",
        ),
        ("I'm with Geico health", None, "Geico Health"),
        ("I'll just cover it myself, I'm between jobs", "self-pay", "self-pay"),
    ],
)
async def test_a_carrier_must_be_accepted_to_be_a_carrier(
    text: str, carrier: str | None, heard: str, openai_engine: OpenAIEngine, context: Context
) -> None:
    understood = await openai_engine.understand(text, Expectation.CARRIER, context)

    assert (understood.carrier, understood.carrier_heard) == (carrier, heard)
    assert understood.engine == "openai"


@pytest.mark.parametrize(
    ("expect", "text", "dropped"),
    [
        (Expectation.CARRIER, "I have Cigna", "carrier"),  # the model said Aetna
        (Expectation.DATE_OF_BIRTH, "march third twenty ninety", "date"),  # in the future
        (Expectation.SLOT_CHOICE, "the fifth one", "slot_index"),  # three were offered
        (Expectation.MEMBER_ID, "x j nine eight seven", "member_id"),  # digits never said
        (Expectation.NAME, "yeah it's me again", "last_name"),  # a name never said
        (Expectation.PROVIDER, "the new one, doctor house", "provider"),  # not on staff
    ],
)
async def test_post_validation_drops_what_the_caller_did_not_say_or_the_clinic_lacks(
    expect: Expectation, text: str, dropped: str, openai_engine: OpenAIEngine, context: Context
) -> None:
    understood = await openai_engine.understand(text, expect, context)

    assert understood.engine == "openai"
    assert dropped not in understood.fields()
    assert understood.confidence <= 0.4


async def test_validated_values_are_normalised_like_the_rules_do(
    openai_engine: OpenAIEngine, context: Context
) -> None:
    slot = await openai_engine.understand(
        "let's do the later one on tuesday", Expectation.SLOT_CHOICE, context
    )
    member = await openai_engine.understand(
        "it's xray juliet nine eight seven six five", Expectation.MEMBER_ID, context
    )
    phone = await openai_engine.understand(
        "you can call me back at two one two, five five five, oh one two three",
        Expectation.PHONE,
        context,
    )
    same_phone = await openai_engine.understand(
        "just use the one I'm on right now", Expectation.PHONE, context
    )
    address = await openai_engine.understand(
        "it's 12 elm road, apartment 3, in springfield, illinois", Expectation.ADDRESS, context
    )
    day = await openai_engine.understand(
        "sometime early next week, mornings are best", Expectation.DAY, context
    )
    anyone = await openai_engine.understand(
        "whoever has the earliest opening", Expectation.PROVIDER, context
    )
    menu = await openai_engine.understand(
        "I gotta move my thing on friday to sometime next week", Expectation.MENU, context
    )

    assert (slot.intent, slot.slot_index) == (Intent.AFFIRM, 1)
    assert member.member_id == "XJ98765"
    assert phone.phone_e164 == "+12125550123"
    assert same_phone.phone_e164 == context.caller_number
    assert address.address is not None
    assert (address.address.state, address.address.unit) == ("IL", "Apartment 3")
    assert (day.part_of_day, day.not_before) == ("morning", dt.date(2025, 3, 10))
    assert anyone.provider == "any"
    assert menu.intent is Intent.RESCHEDULE


async def _expect_rules_fallback(
    engine: OpenAIEngine, context: Context, caplog: pytest.LogCaptureFixture, *errors: str
) -> None:
    """The turn is the rules' answer, and the log names the expectation and error class only."""
    text = "march third nineteen eighty four"
    with caplog.at_level(logging.WARNING):
        understood = await engine.understand(text, Expectation.DATE_OF_BIRTH, context)

    rules = RulesEngine().parse(text, Expectation.DATE_OF_BIRTH, context)
    assert understood == rules.with_engine("rules-fallback")
    assert understood.date == dt.date(1984, 3, 3)
    [record] = [r for r in caplog.records if "nlu_fallback" in str(r.msg)]
    assert isinstance(record.msg, dict)
    assert record.msg["expectation"] == "date_of_birth"
    assert record.msg["error"] in errors
    assert set(record.msg) <= {"event", "expectation", "error", "level", "logger", "timestamp"}
    assert "nineteen" not in caplog.text and "march" not in caplog.text.lower()


async def test_a_slow_model_times_out_and_the_rules_answer(
    fake_openai: FakeOpenAI, context: Context, caplog: pytest.LogCaptureFixture
) -> None:
    fake_openai.delay = 2.0
    engine = OpenAIEngine(
        api_key="sk-test-loopback", model="gpt-4o-mini", base_url=fake_openai.base_url, timeout=0.2
    )
    try:
        await _expect_rules_fallback(engine, context, caplog, "APITimeoutError", "TimeoutError")
    finally:
        await engine.aclose()
    assert len(fake_openai.requests) == 1, "no retries: the caller is waiting"


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, "InternalServerError"), (429, "RateLimitError"), (503, "InternalServerError")],
)
async def test_an_http_error_falls_back_to_the_rules_without_retrying(
    status: int,
    error: str,
    openai_engine: OpenAIEngine,
    fake_openai: FakeOpenAI,
    context: Context,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_openai.fail_next(status)

    await _expect_rules_fallback(openai_engine, context, caplog, error)

    assert len(fake_openai.requests) == 1
    recovered = await openai_engine.understand(
        "uh my birthday's the third of march, eighty four", Expectation.DATE_OF_BIRTH, context
    )
    assert recovered.engine == "openai"


@pytest.mark.parametrize(
    "content",
    [
        '{"intent": "none", "date": "1984-03-0',  # cut off
        "Sure! The date of birth is March 3rd, 1984.",  # prose, not JSON
        "[1984, 3, 3]",  # JSON, not an object
        '{"intent": "maybe", "date": "1984-03-03"}',  # not the schema's intent
        '{"intent": "none"}',  # a required field missing
    ],
)
async def test_an_answer_that_is_not_the_schemas_json_falls_back_to_the_rules(
    content: str,
    openai_engine: OpenAIEngine,
    fake_openai: FakeOpenAI,
    context: Context,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_openai.answer_next_raw(content)

    await _expect_rules_fallback(openai_engine, context, caplog, "InvalidModelOutput")


async def test_a_refusal_falls_back_to_the_rules(
    openai_engine: OpenAIEngine,
    fake_openai: FakeOpenAI,
    context: Context,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_openai.refuse_next()

    await _expect_rules_fallback(openai_engine, context, caplog, "ModelRefusal")


async def test_an_unreachable_api_falls_back_to_the_rules(
    context: Context, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeOpenAI() as gone:
        base_url = gone.base_url  # the port is free again once the fake has stopped
    engine = OpenAIEngine(api_key="sk-test", model="gpt-4o-mini", base_url=base_url, timeout=1.0)
    try:
        await _expect_rules_fallback(engine, context, caplog, "APIConnectionError")
    finally:
        await engine.aclose()


async def test_silence_costs_no_request(
    openai_engine: OpenAIEngine, fake_openai: FakeOpenAI, context: Context
) -> None:
    understood = await openai_engine.understand("  ", Expectation.NAME, context)

    assert (understood.intent, understood.fields(), understood.confidence) == ("none", {}, 0.0)
    assert fake_openai.requests == []
