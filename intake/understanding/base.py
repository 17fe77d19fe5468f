"""The interface every understanding engine offers, and the recogniser hints per question.

The conversation calls :meth:`UnderstandingEngine.understand` once per caller turn with what
it expects; it passes :func:`hints_for` of the same expectation to the speech recogniser
before the caller answers. PocketSphinx turns hints into a grammar (its accuracy on phone
audio depends on it); Deepgram uses them as keywords.
"""

from __future__ import annotations

import re
from typing import Protocol

from intake.understanding.spoken import DIGIT_WORDS, MONTH_NAMES, TEENS, TENS
from intake.understanding.types import WEEKDAY_NAMES, Context, Expectation, Understanding

MAX_HINTS = 100


class UnderstandingEngine(Protocol):
    """Turns one caller turn into an :class:`Understanding`. It never decides anything."""

    name: str

    async def understand(
        self, text: str, expect: Expectation, context: Context
    ) -> Understanding: ...


# Said at any point of a call, so always recognisable, whatever the question. The red-flag
# words are here because a grammar-bound recogniser cannot report what it cannot hear, and
# screening for emergencies runs on every turn.
_ALWAYS = (
    "operator",
    "representative",
    "person",
    "repeat",
    "I don't know",
    "emergency",
    "chest pain",
    "can't breathe",
    "bleeding",
)
_YES_NO = ("yes", "yeah", "correct", "that's right", "no", "nope", "actually", "it's")
_LETTERS = tuple(chr(code) for code in range(ord("a"), ord("z") + 1))
_ORDINAL_DAYS = (
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "thirtieth",
)
_NUMBERS = (*DIGIT_WORDS, *TEENS, *TENS, "hundred", "thousand")
_PARTS_OF_DAY = ("morning", "afternoon", "evening")


def _words_of(labels: list[str]) -> list[str]:
    words: list[str] = []
    for label in labels:
        words += [w for w in re.findall(r"[A-Za-z]+", label) if len(w) > 2]
    return words


def _specific(expect: Expectation, context: Context) -> list[str]:
    if expect is Expectation.YES_NO:
        return list(_YES_NO)
    if expect in (Expectation.NAME, Expectation.SPELLING):
        return [*_LETTERS, "as in", "with a", "double", "dash", "apostrophe"]
    if expect is Expectation.DATE_OF_BIRTH:
        return [*MONTH_NAMES, *_NUMBERS, *_ORDINAL_DAYS]
    if expect is Expectation.PHONE:
        return [*DIGIT_WORDS, "double", "area code", "this number"]
    if expect is Expectation.MEMBER_ID:
        return [*DIGIT_WORDS, "double", "dash", *_LETTERS]
    if expect is Expectation.EMAIL:
        return [
            "at",
            "dot",
            "com",
            "net",
            "org",
            "gmail",
            "yahoo",
            "outlook",
            "hotmail",
            "underscore",
            "dash",
            *_LETTERS,
            *DIGIT_WORDS,
        ]
    if expect is Expectation.ADDRESS:
        return [
            *DIGIT_WORDS,
            "street",
            "avenue",
            "road",
            "drive",
            "lane",
            "boulevard",
            "court",
            "apartment",
            "suite",
            "unit",
        ]
    if expect is Expectation.CARRIER:
        return [*context.accepted_carriers, "self pay", "no insurance", "medicare", "medicaid"]
    if expect is Expectation.PROVIDER:
        return [
            *context.provider_names,
            *_words_of(list(context.provider_names)),
            "anyone",
            "no preference",
            "doctor",
        ]
    if expect is Expectation.DAY:
        return [
            *WEEKDAY_NAMES,
            *_PARTS_OF_DAY,
            "tomorrow",
            "next week",
            "as soon as possible",
            "any day",
        ]
    if expect is Expectation.SLOT_CHOICE:
        return [
            "the first one",
            "the second one",
            "the third one",
            "the last one",
            "first",
            "second",
            "third",
            "last",
            "neither",
            "the one",
            *_words_of(context.offered_labels),
            *_PARTS_OF_DAY,
        ]
    if expect is Expectation.MENU:
        return ["appointment", "book", "schedule", "reschedule", "cancel", "question"]
    if expect is Expectation.PATIENT_STATUS:
        return ["new", "new patient", "returning", "existing", "first time", "yes", "no"]
    return []  # REASON, FREE: open vocabulary


def hints_for(expect: Expectation, context: Context) -> list[str]:
    """The words likely next, for the recogniser: at most :data:`MAX_HINTS`, no duplicates.

    An empty list (a reason, free talk) means open vocabulary. Otherwise the few words that
    must always be recognisable (a person, a repeat, emergencies) are included.
    """
    specific = _specific(expect, context)
    if not specific:
        return []
    seen: set[str] = set()
    hints: list[str] = []
    for hint in (*specific, *_ALWAYS):
        key = hint.lower()
        if key not in seen:
            seen.add(key)
            hints.append(hint)
    # The always-words come last; trim the specific ones, never them, to stay within budget.
    if len(hints) > MAX_HINTS:
        always = [h for h in hints if h in _ALWAYS]
        hints = [h for h in hints if h not in _ALWAYS][: MAX_HINTS - len(always)] + always
    return hints
