"""A red flag that may have been misheard is confirmed before the call ends in guidance.

Each test drives the real conversation (rules engine, database, calendar) turn by turn, as
the voice layer would, with the recogniser confidence a line was heard with.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from clinic.config import ConfigError, load_config
from intake import services
from intake.conversation import (
    Action,
    CallEnded,
    CallerSaid,
    CallStarted,
    Conversation,
    Event,
    Expect,
    FollowUpOpened,
    HangUp,
    KeyPressed,
    Say,
    Silence,
    Transfer,
)
from intake.conversation.prompts import FIXED_PROMPTS, MISHEARD
from intake.models import Call, FollowUp, Turn
from intake.understanding.rules import RulesEngine
from intake.understanding.types import Context, Expectation, Understanding

CALLER = "+16175550140"
CONFIDENT = 0.95
UNSURE = 0.4
BREATHING_QUESTION = "Did you say you're having trouble breathing?"
GUIDANCE = "call 9 1 1"  # in the emergency and the crisis guidance; the greeting says "dial"


@dataclass
class CountingEngine:
    """The real rules engine, noting every text it is asked to understand."""

    rules: RulesEngine = field(default_factory=RulesEngine)
    heard: list[str] = field(default_factory=list)
    name: str = "rules"

    async def understand(self, text: str, expect: Expectation, context: Context) -> Understanding:
        self.heard.append(text)
        return await self.rules.understand(text, expect, context)


@dataclass
class Caller:
    """One call, one event at a time; a fresh Conversation per event, as in production."""

    call: Call
    engine: CountingEngine = field(default_factory=CountingEngine)

    async def send(self, event: Event) -> list[Action]:
        return await Conversation(self.call.pk, self.engine).handle(event)

    async def says(self, text: str, confidence: float = CONFIDENT) -> list[Action]:
        return await self.send(CallerSaid(text, confidence=confidence, stt_final_ms=100))

    async def state(self) -> dict[str, object]:
        fresh = await Call.objects.aget(pk=self.call.pk)
        return dict(fresh.state)

    async def refreshed(self) -> Call:
        return await Call.objects.aget(pk=self.call.pk)


def said(actions: list[Action]) -> str:
    return " ".join(a.text for a in actions if isinstance(a, Say))


def expected(actions: list[Action]) -> Expect:
    expects = [a for a in actions if isinstance(a, Expect)]
    assert len(expects) == 1, actions
    return expects[0]


async def new_call() -> Caller:
    call = await sync_to_async(services.call_start)(
        call_sid=f"CA{uuid.uuid4().hex}", caller_number=CALLER
    )
    caller = Caller(call)
    await caller.send(CallStarted())
    return caller


async def at_the_date_of_birth_read_back() -> Caller:
    """A new patient who has given a name and a date of birth, asked to confirm the date."""
    caller = await new_call()
    for line in ("can I book an appointment", "no", "Lena Novak", "yes", "11 22 1995"):
        await caller.says(line)
    assert (await caller.state())["question"] == "confirm_dob"
    return caller


async def emergency_followups(call: Call) -> list[FollowUp]:
    return [f async for f in FollowUp.objects.filter(call=call, reason=FollowUp.Reason.EMERGENCY)]


async def assert_emergency(caller: Caller, actions: list[Action], why: str) -> None:
    assert GUIDANCE in said(actions)
    assert isinstance(actions[-1], HangUp)
    assert any(isinstance(a, FollowUpOpened) for a in actions)
    call = await caller.refreshed()
    assert call.outcome == Call.Outcome.EMERGENCY
    assert call.appointment_id is None
    followups = await emergency_followups(call)
    assert len(followups) == 1
    assert followups[0].priority == FollowUp.Priority.URGENT
    assert why in followups[0].summary


# --- a confident, clear flag ----------------------------------------------------------------


async def test_a_clear_confident_red_flag_ends_intake_at_once(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()

    actions = await caller.says("I've had crushing chest pain since this morning", CONFIDENT)

    assert "Did you say" not in said(actions)
    await assert_emergency(caller, actions, "chest pain")


@override_settings(RED_FLAG_MIN_CONFIDENCE=0.5)
async def test_the_threshold_is_a_setting(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()

    actions = await caller.says("I can't breathe", 0.6)

    await assert_emergency(caller, actions, "breathing")


# --- asked, then answered -------------------------------------------------------------------


async def test_a_low_confidence_flag_is_asked_about_as_a_yes_no_question(
    demo_clinic: None,
) -> None:
    caller = await at_the_date_of_birth_read_back()

    actions = await caller.says("I can't breathe", UNSURE)

    assert said(actions) == BREATHING_QUESTION
    assert said(actions) in FIXED_PROMPTS  # synthesised ahead of time, like other fixed prompts
    expect = expected(actions)
    assert expect.expectation is Expectation.YES_NO
    assert {"yes", "no"} <= set(expect.hints)  # the answers go to the recogniser as hints
    call = await caller.refreshed()
    assert not call.finished and call.phase == "triage"
    assert await emergency_followups(call) == []


async def test_yes_ends_in_emergency_guidance(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("I can't breathe", UNSURE)

    actions = await caller.says("yes")

    await assert_emergency(caller, actions, "confirmed by the caller")


async def test_silence_counts_as_yes(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("I can't breathe", UNSURE)

    actions = await caller.send(Silence(6))

    assert "still there" not in said(actions).lower()
    await assert_emergency(caller, actions, "no answer")


@pytest.mark.parametrize("answer", ["I don't know", "no, my husband does", "maybe", "banana"])
async def test_an_unclear_answer_counts_as_yes(demo_clinic: None, answer: str) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("I can't breathe", UNSURE)

    actions = await caller.says(answer)

    await assert_emergency(caller, actions, "not a clear no")


async def test_a_no_heard_as_noise_is_not_a_no(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("I can't breathe", UNSURE)

    actions = await caller.says("no", confidence=0.1)

    await assert_emergency(caller, actions, "not a clear no")


async def test_no_resumes_the_same_question_with_every_answer_kept(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("purple")  # not an answer: the read-back is asked again, once counted
    before = await caller.state()
    assert before["misunderstood"] == 1

    await caller.says("can't breathe", CONFIDENT)  # a bare phrase: asked whatever the confidence
    actions = await caller.says("no, I said please")

    after = await caller.state()
    assert said(actions).startswith(MISHEARD)
    assert said(actions).endswith("Your date of birth is November 22, 1995. Is that correct?")
    assert expected(actions).expectation is Expectation.YES_NO
    for key in ("question", "misunderstood", "silences", "first_name", "last_name"):
        assert after[key] == before[key], key
    assert after["date_of_birth"] == "1995-11-22"
    assert after["flag_category"] == "" and after["resume_question"] == ""
    call = await caller.refreshed()
    assert not call.finished and call.phase == "demographics"
    assert await emergency_followups(call) == []
    # ...and the call goes on from there.
    actions = await caller.says("yes")
    assert "best number" in said(actions)


async def test_no_at_the_booking_read_back_keeps_the_held_slot(demo_clinic: None) -> None:
    caller = await new_call()
    for line in (
        "can I book an appointment",
        "no",
        "Lena Novak",
        "yes",
        "11 22 1995",
        "yes",
        "yes",
        "skip",
        "77 Pine Street, Somerville MA 02143",
        "self pay",
        "I have a bad cough",
        "no preference",
        "Thursday afternoon",
        "the first one",
    ):
        await caller.says(line)
    held = await caller.state()
    assert held["question"] == "confirm_booking" and held["hold_token"]

    await caller.says("he fainted")
    actions = await caller.says("nope")

    assert "Shall I book it?" in said(actions)
    resumed = await caller.state()
    assert (resumed["chosen_slot_id"], resumed["hold_token"]) == (
        held["chosen_slot_id"],
        held["hold_token"],
    )
    actions = await caller.says("yes")
    assert "You're booked" in said(actions)
    call = await caller.refreshed()
    assert call.appointment_id is not None


async def test_a_second_red_flag_during_the_confirmation_ends_intake(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("can't breathe", UNSURE)

    actions = await caller.says("no, I just want to die", UNSURE)

    # Crisis guidance comes first, whichever flag was heard first.
    assert "9 8 8" in said(actions)
    await assert_emergency(caller, actions, "suicidal (heard again when asked)")


async def test_the_answer_is_read_by_the_rules_never_by_the_engine(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    understood = list(caller.engine.heard)

    await caller.says("I can't breathe", UNSURE)
    await caller.says("no")

    assert caller.engine.heard == understood  # neither the flag nor the answer reached it


async def test_sorry_what_asks_once_more_then_counts_as_yes(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("I can't breathe", UNSURE)

    again = await caller.says("sorry, what?")
    assert said(again) == BREATHING_QUESTION
    assert not (await caller.refreshed()).finished

    actions = await caller.says("what?")
    await assert_emergency(caller, actions, "not a clear no")


# --- the keypad, a person, the line ---------------------------------------------------------


async def test_keypad_two_is_a_clear_no(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("I can't breathe", UNSURE)

    actions = await caller.send(KeyPressed("2"))

    assert said(actions).startswith(MISHEARD)
    assert (await caller.state())["question"] == "confirm_dob"


async def test_keypad_one_is_a_yes(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("I can't breathe", UNSURE)

    actions = await caller.send(KeyPressed("1"))

    await assert_emergency(caller, actions, "confirmed by the caller")


async def test_asking_for_a_person_instead_of_answering_counts_as_yes(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("I can't breathe", UNSURE)

    actions = await caller.send(KeyPressed("0"))

    assert not any(isinstance(a, Transfer) for a in actions)
    await assert_emergency(caller, actions, "asked for a person")


async def test_hanging_up_when_asked_leaves_staff_an_urgent_follow_up(demo_clinic: None) -> None:
    caller = await at_the_date_of_birth_read_back()
    await caller.says("I can't breathe", UNSURE)

    await caller.send(CallEnded("hangup"))

    call = await caller.refreshed()
    assert call.finished and call.outcome == Call.Outcome.ABANDONED
    followups = await emergency_followups(call)
    assert [f.priority for f in followups] == [FollowUp.Priority.URGENT]
    assert "hung up" in followups[0].summary
    turns = [t async for t in call.turns.filter(speaker=Turn.Speaker.CALLER)]
    assert len(turns) == 6  # every caller turn is kept, the flagged one too


async def test_a_flag_at_the_first_question_resumes_the_menu(demo_clinic: None) -> None:
    caller = await new_call()

    asked = await caller.says("chest pain")
    actions = await caller.says("no")

    assert said(asked) == "Did you say you have chest pain?"
    assert (await caller.state())["question"] == "menu"
    assert "How can I help you today?" in said(actions)


# --- the setting ----------------------------------------------------------------------------


def test_the_confidence_threshold_defaults_to_0_8() -> None:
    assert load_config({}).red_flag_min_confidence == 0.8
    assert load_config({"RED_FLAG_MIN_CONFIDENCE": "0.55"}).red_flag_min_confidence == 0.55


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1.5", "must be between 0 and 1"),
        ("-0.1", "must be at least 0.0"),
        ("high", "expected a number"),
    ],
)
def test_a_wrong_threshold_stops_start_up_with_one_line(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config({"RED_FLAG_MIN_CONFIDENCE": value})

    message = str(error.value)
    assert message.startswith("RED_FLAG_MIN_CONFIDENCE: ") and problem in message
    assert "\n" not in message


def test_a_misspelled_setting_of_its_family_is_refused() -> None:
    with pytest.raises(ConfigError, match="^RED_FLAG_MIN_CONFIDENSE: unknown setting"):
        load_config({"RED_FLAG_MIN_CONFIDENSE": "0.5"})
