"""Recogniser hints: the words the next answer is likely to use, short and always safe."""

from __future__ import annotations

from dataclasses import replace

import pytest

from intake.understanding import MAX_HINTS, Context, Expectation, hints_for

ALWAYS = {"operator", "representative", "chest pain", "can't breathe"}


@pytest.mark.parametrize(
    "expect", [e for e in Expectation if e not in (Expectation.REASON, Expectation.FREE)], ids=str
)
def test_hints_are_short_unique_and_keep_the_words_a_caller_may_always_need(
    expect: Expectation, context: Context
) -> None:
    hints = hints_for(expect, context)

    assert 0 < len(hints) <= MAX_HINTS
    assert len({h.lower() for h in hints}) == len(hints)
    assert ALWAYS <= set(hints), "a person and emergencies must stay recognisable"


@pytest.mark.parametrize("expect", [Expectation.REASON, Expectation.FREE], ids=str)
def test_open_questions_leave_the_vocabulary_open(expect: Expectation, context: Context) -> None:
    assert hints_for(expect, context) == []


def test_each_question_hints_its_own_vocabulary(context: Context) -> None:
    assert {"yes", "no"} <= set(hints_for(Expectation.YES_NO, context))
    assert {"zero", "oh", "nine"} <= set(hints_for(Expectation.PHONE, context))
    assert {"a", "m", "z"} <= set(hints_for(Expectation.SPELLING, context))
    assert {"march", "nineteen", "twelfth"} <= set(hints_for(Expectation.DATE_OF_BIRTH, context))
    assert {"x", "double", "seven"} <= set(hints_for(Expectation.MEMBER_ID, context))
    assert {"tuesday", "morning", "afternoon"} <= set(hints_for(Expectation.DAY, context))
    assert {"cancel", "reschedule"} <= set(hints_for(Expectation.MENU, context))


def test_the_clinics_own_names_are_hinted(context: Context) -> None:
    carriers = hints_for(Expectation.CARRIER, context)
    providers = hints_for(Expectation.PROVIDER, context)
    slots = hints_for(Expectation.SLOT_CHOICE, context)

    assert {"Aetna", "Blue Cross Blue Shield", "self pay"} <= set(carriers)
    assert {"Dr. Priya Patel", "Patel", "anyone"} <= set(providers)
    assert {"first", "Tuesday", "Thursday", "Nguyen", "neither"} <= set(slots)


def test_a_long_list_is_trimmed_but_never_loses_the_safety_words(context: Context) -> None:
    crowded = replace(context, accepted_carriers=[f"Carrier {n}" for n in range(300)])

    hints = hints_for(Expectation.CARRIER, crowded)

    assert len(hints) == MAX_HINTS
    assert ALWAYS <= set(hints)
