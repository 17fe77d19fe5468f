"""Red-flag screening: emergencies are flagged, denials are not, and doubt flags."""

from __future__ import annotations

import pytest

from intake.understanding import RedFlagCategory, screen
from intake.understanding.triage import CRISIS_GUIDANCE, EMERGENCY_GUIDANCE

C = RedFlagCategory

POSITIVES = [
    ("my chest hurts", C.CHEST_PAIN),
    ("I have chest pain", C.CHEST_PAIN),
    ("there's a lot of pressure in my chest", C.CHEST_PAIN),
    ("my chest really hurts when i breathe", C.CHEST_PAIN),
    ("i think i'm having a heart attack", C.CHEST_PAIN),
    ("I can't breathe", C.BREATHING),
    ("i cant breathe", C.BREATHING),
    ("my husband is having trouble breathing", C.BREATHING),
    ("she's short of breath and her lips are blue", C.BREATHING),
    ("he's not breathing", C.BREATHING),
    ("i don't think i can breathe", C.BREATHING),
    ("her face is drooping", C.STROKE),
    ("he has slurred speech", C.STROKE),
    ("one side of my body is numb", C.STROKE),
    ("my mom is numb on one side and can't get her words out", C.STROKE),
    ("worst headache of my life", C.STROKE),
    ("I'm bleeding a lot", C.BLEEDING),
    ("it won't stop bleeding", C.BLEEDING),
    ("there's so much blood", C.BLEEDING),
    ("he's coughing up blood", C.BLEEDING),
    ("I want to kill myself", C.SUICIDAL),
    ("I've been thinking about ending my life", C.SUICIDAL),
    ("I feel suicidal", C.SUICIDAL),
    ("honestly i don't want to live anymore", C.SUICIDAL),
    ("sometimes i want to hurt myself", C.SUICIDAL),
    ("my son took a whole bottle of my pills", C.OVERDOSE),
    ("i think she overdosed", C.OVERDOSE),
    ("my throat is closing up", C.ANAPHYLAXIS),
    ("his tongue is swelling after the bee sting", C.ANAPHYLAXIS),
    ("my daughter is having a seizure", C.SEIZURE),
    ("he's convulsing", C.SEIZURE),
    ("he passed out and won't wake up", C.UNCONSCIOUS),
    ("she's unresponsive", C.UNCONSCIOUS),
    ("I'm pregnant and I'm bleeding", C.PREGNANCY_BLEEDING),
    ("i'm twelve weeks along and started bleeding", C.PREGNANCY_BLEEDING),
]

NEGATIVES = [
    "no chest pain, just a rash",
    "I don't have trouble breathing",
    "no fever or chest pain",
    "denies chest pain",
    "I'm pregnant, no bleeding, just nausea",
    "I need a refill for my seizure medication",
    "I hurt myself playing basketball",
    "I need a physical",
    "I have a sore throat and a cough",
    "I'm not suicidal, I just need a refill",
    "I took too many days off work",
    "without any shortness of breath",
    "never had chest pain",
    "",
]

MIXED = [
    # Each clause keeps its own negation: the second clause is not denied.
    ("no chest pain but I can't breathe", C.BREATHING),
    ("no chest pain but i cant breathe", C.BREATHING),
    ("i don't have a fever, but my chest hurts", C.CHEST_PAIN),
    # "no" answering a question is not a negation of what follows.
    ("no, my chest hurts", C.CHEST_PAIN),
    ("no i have chest pain", C.CHEST_PAIN),
    # Doubt flags.
    ("not sure if it's chest pain", C.CHEST_PAIN),
    ("i don't know if i'm having a heart attack", C.CHEST_PAIN),
    # A negator too far away, or introducing something new, is not a denial.
    ("I never had this before my chest hurts", C.CHEST_PAIN),
    ("I've never had chest pain like this", C.CHEST_PAIN),
    # Crisis guidance comes first when an utterance has two red flags.
    ("i can't breathe and i want to die", C.SUICIDAL),
]


@pytest.mark.parametrize(("text", "category"), POSITIVES + MIXED)
def test_a_red_flag_is_recognised(text: str, category: RedFlagCategory) -> None:
    flag = screen(text)

    assert flag is not None
    assert flag.category is category


@pytest.mark.parametrize("text", NEGATIVES)
def test_a_denied_or_harmless_symptom_is_not_a_red_flag(text: str) -> None:
    assert screen(text) is None


def test_suicidal_thoughts_get_the_crisis_line_and_the_rest_get_911() -> None:
    crisis = screen("I want to kill myself")
    emergency = screen("my chest hurts")

    assert crisis is not None and crisis.guidance == CRISIS_GUIDANCE
    assert "9 8 8" in crisis.guidance
    assert emergency is not None and emergency.guidance == EMERGENCY_GUIDANCE
    assert "9 1 1" in emergency.guidance


def test_the_rule_name_is_ours_never_the_callers_words() -> None:
    text = "my grandmother Edna Baker is having chest pain"

    flag = screen(text)

    assert flag is not None
    assert flag.rule == "chest pain"
    assert "edna" not in flag.rule.lower()


@pytest.mark.parametrize("text", ["MY CHEST HURTS!!", "My chest hurts.", "my chest hurts"])
def test_recogniser_casing_and_punctuation_do_not_matter(text: str) -> None:
    flag = screen(text)

    assert flag is not None and flag.category is C.CHEST_PAIN


@pytest.mark.parametrize("text", ["I can\u2019t breathe", "I cant breathe", "I can not breathe"])
def test_contractions_are_read_however_the_recogniser_writes_them(text: str) -> None:
    flag = screen(text)

    assert flag is not None and flag.category is C.BREATHING
