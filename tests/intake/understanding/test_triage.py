"""Red-flag screening: emergencies flagged, denials not, doubt flags; and how sure we are."""

from __future__ import annotations

import pytest

from intake.understanding import RedFlagCategory, screen
from intake.understanding.triage import (
    CRISIS_GUIDANCE,
    EMERGENCY_GUIDANCE,
    RESTATEMENTS,
    Evidence,
    RedFlag,
    Reply,
    confirmation_question,
    confirmation_reply,
    graver,
    needs_confirmation,
    red_flag,
)

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


# --- how sure: the evidence a flag rests on -------------------------------------------------

E = Evidence

EVIDENCE = [
    # A phrase said in a sentence: clear.
    ("I can't breathe", E.PHRASE),
    ("my chest hurts", E.PHRASE),
    ("I've had crushing chest pain since this morning", E.PHRASE),
    ("she's bleeding a lot", E.PHRASE),
    ("I'm pregnant and I'm bleeding", E.PHRASE),
    # The whole utterance is the flag phrase: what a grammar-bound recogniser forces noise onto.
    ("can't breathe", E.BARE),
    ("Chest pain.", E.BARE),
    ("um, chest pain", E.BARE),
    ("heart attack", E.BARE),
    # One word is all the evidence, alone or in a sentence ("please" heard as "bleeding").
    ("fainted", E.KEYWORD),
    ("he fainted this morning", E.KEYWORD),
    ("I feel suicidal", E.KEYWORD),
    ("he's choking", E.KEYWORD),
    ("she's unresponsive", E.KEYWORD),
    # Two different rules on different words: independent evidence.
    ("he collapsed and he's unresponsive", E.CORROBORATED),
    ("she's short of breath and her lips are blue", E.CORROBORATED),
    ("chest pain, I can't breathe", E.CORROBORATED),
    # A denied symptom is no evidence; what is left is judged alone.
    ("no chest pain but I can't breathe", E.PHRASE),
    ("no chest pain, just fainted", E.KEYWORD),
]


@pytest.mark.parametrize(("text", "evidence"), EVIDENCE)
def test_a_flag_says_what_it_rests_on(text: str, evidence: Evidence) -> None:
    flag = screen(text)

    assert flag is not None
    assert flag.evidence is evidence
    assert flag.clear is (evidence in (E.PHRASE, E.CORROBORATED))


def test_the_same_words_twice_are_not_corroboration() -> None:
    flag = screen("can't breathe, can't breathe")

    assert flag is not None and flag.evidence is E.BARE


@pytest.mark.parametrize(
    ("confidence", "evidence", "asked"),
    [
        (0.95, E.PHRASE, False),  # clear and confident: intake ends at once
        (0.80, E.PHRASE, False),  # at the threshold counts as confident
        (0.79, E.PHRASE, True),
        (0.40, E.CORROBORATED, True),
        (1.00, E.BARE, True),  # whatever the recogniser's confidence
        (1.00, E.KEYWORD, True),
    ],
)
def test_a_flag_is_confirmed_when_heard_below_the_threshold_or_uncertain(
    confidence: float, evidence: Evidence, asked: bool
) -> None:
    flag = RedFlag(C.BREATHING, EMERGENCY_GUIDANCE, "cannot breathe", evidence)

    assert needs_confirmation(flag, confidence, threshold=0.8) is asked


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("can't breathe", "you're having trouble breathing"),
        ("chest pain", "you have chest pain"),
        ("my husband has chest pain", "someone has chest pain"),
        ("she fainted", "someone passed out or won't wake up"),
        ("I feel suicidal", "you're thinking about ending your life or hurting yourself"),
    ],
)
def test_the_question_restates_the_flag_in_plain_words(text: str, question: str) -> None:
    flag = screen(text)

    assert flag is not None
    assert confirmation_question(flag) == question


def test_every_category_has_a_restatement_for_the_caller_and_for_someone_else() -> None:
    for category in RedFlagCategory:
        mine = RedFlag(category, EMERGENCY_GUIDANCE, "rule")
        theirs = RedFlag(category, EMERGENCY_GUIDANCE, "rule", someone_else=True)
        assert confirmation_question(mine) in RESTATEMENTS
        assert confirmation_question(theirs) in RESTATEMENTS
        assert confirmation_question(theirs).startswith("someone")


def test_the_graver_flag_is_the_one_screened_first() -> None:
    breathing = screen("I can't breathe")
    chest = screen("my chest hurts")
    crisis = screen("I want to die")
    assert breathing is not None and chest is not None and crisis is not None

    assert graver(breathing, chest) is chest
    assert graver(chest, breathing) is chest
    assert graver(chest, crisis) is crisis


def test_a_stored_flag_is_rebuilt_with_its_guidance() -> None:
    flag = red_flag("suicidal", "suicide", "keyword", someone_else=False)

    assert flag.category is C.SUICIDAL
    assert flag.guidance == CRISIS_GUIDANCE
    assert flag.evidence is E.KEYWORD and not flag.clear


# --- the answer to "Did you say ...?" -------------------------------------------------------

R = Reply

REPLIES = [
    ("no", R.NO),
    ("No.", R.NO),
    ("nope", R.NO),
    ("no no", R.NO),
    ("no I said please", R.NO),
    ("No, I didn't say that.", R.NO),
    ("I didn't", R.NO),
    ("no, I'm fine, thank you", R.NO),
    ("that's not what I said, I said Thursday", R.NO),
    ("yes", R.YES),
    ("yeah I did", R.YES),
    ("no, yes, yes", R.YES),
    ("yes please", R.YES),
    ("sorry, what?", R.REPEAT),
    ("can you repeat that", R.REPEAT),
    # Not a clear no: unclear counts as yes.
    ("no, my husband does", R.UNCLEAR),
    ("not me", R.UNCLEAR),
    ("I'm fine", R.UNCLEAR),
    ("I don't know", R.UNCLEAR),
    ("maybe", R.UNCLEAR),
    ("uh", R.UNCLEAR),
    ("", R.UNCLEAR),
    ("no, but it hurts a lot", R.UNCLEAR),
]


@pytest.mark.parametrize(("text", "reply"), REPLIES)
def test_only_a_clear_no_is_a_no(text: str, reply: Reply) -> None:
    assert confirmation_reply(text) is reply
