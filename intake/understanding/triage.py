"""Red-flag screening: does anything the caller said need emergency care now?

This runs on every caller utterance, in every phase, whatever understanding engine is
selected: a language model never has the last word on safety. It is deliberately simple and
errs towards flagging: a false alarm costs a caller a minute and a staff call-back; a missed
emergency costs far more.

Negation is honoured only close by and within a clause: the utterance is split into clauses
(punctuation, "but", "just", "and", ...) and a negator ("no", "not", "don't have", "denies",
"without", "never") negates a symptom only when it comes before it in the same clause with
at most three words between them. "No chest pain, just a rash" is not flagged; "no chest
pain but I can't breathe" is (breathing); "I never had this before my chest hurts" is (chest
pain: the negator is too far away to be about it). Hedges ("not sure", "don't know", "don't
think") are not negations: "not sure if it's chest pain" is flagged.

How sure we are that the caller said it (:class:`Evidence`). Offline recognition invents words:
"please" was heard as "bleeding" mid-sentence, and a grammar-bound recogniser that may only
answer with phrases from its hint list turned a cough into "can't breathe". So each flag says
what it rests on, judged from the match alone, never from the category:

- ``PHRASE``: a pattern of two or more words matched, and the caller said other words around it
  ("I can't breathe", "my chest hurts", "she's bleeding a lot"). Clear.
- ``CORROBORATED``: two different rules matched on different words ("he collapsed and he's
  unresponsive"). Clear: two independent mishearings in one turn are unlikely.
- ``KEYWORD``: the only evidence is one word ("fainted", "choking", "suicidal", "seizing",
  "overdosed"). A single word is as easily misheard inside a sentence as alone. Uncertain.
- ``BARE``: the whole utterance is the flag phrase and nothing else ("can't breathe", "chest
  pain", fillers aside): exactly what a recogniser forcing noise onto its vocabulary returns.
  Uncertain.

An uncertain flag, or any flag heard below the configured recogniser confidence, is confirmed
with the caller before emergency guidance (:func:`needs_confirmation`); the conversation asks
:func:`confirmation_question` and reads the answer with :func:`confirmation_reply`, here with
the rules, never a language model. Only a clear "no" stops the emergency path.

The tables (categories, patterns, negators, what the agent says) are in
:mod:`intake.understanding.triage_rules`; this module is the matching that applies them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from intake.understanding import intents
from intake.understanding.spoken import FILLERS
from intake.understanding.triage_rules import (
    BLEED,
    CLAUSE_BREAK,
    CORRECTED,
    CRISIS_GUIDANCE,
    DENIAL,
    EMERGENCY_GUIDANCE,
    HEDGE,
    INTERJECTION,
    NEGATION_REACH,
    NEGATOR,
    NOT_A_DENIAL_AFTER,
    PATTERNS,
    POLITE,
    RESTATED,
    RESTATEMENTS,
    SOMEONE_ELSE,
    YES,
    RedFlagCategory,
)
from intake.understanding.types import Intent

__all__ = [
    "CLEAR_EVIDENCE",
    "CRISIS_GUIDANCE",
    "EMERGENCY_GUIDANCE",
    "RESTATEMENTS",
    "Evidence",
    "RedFlag",
    "RedFlagCategory",
    "Reply",
    "confirmation_question",
    "confirmation_reply",
    "graver",
    "needs_confirmation",
    "red_flag",
    "screen",
]


class Evidence(StrEnum):
    """What a flag rests on (see the module docstring): the first two are clear."""

    PHRASE = "phrase"
    CORROBORATED = "corroborated"
    KEYWORD = "keyword"
    BARE = "bare"


CLEAR_EVIDENCE = frozenset({Evidence.PHRASE, Evidence.CORROBORATED})


class Reply(StrEnum):
    """The caller's answer to "Did you say ...?". Only ``NO`` stops the emergency path."""

    YES = "yes"
    NO = "no"
    REPEAT = "repeat"  # "sorry, what?": the question is asked again, once
    UNCLEAR = "unclear"


@dataclass(frozen=True)
class RedFlag:
    """A red flag: its category, the guidance to read to the caller, and which rule fired.

    ``rule`` names our pattern (never the caller's words), so it is safe to log, as are
    ``evidence`` and ``someone_else`` (the caller spoke of another person: "my son", "she").
    """

    category: RedFlagCategory
    guidance: str
    rule: str
    evidence: Evidence = Evidence.PHRASE
    someone_else: bool = False

    @property
    def clear(self) -> bool:
        return self.evidence in CLEAR_EVIDENCE


def _plain(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("'", "")
    text = re.sub(r"\bcan not\b", "cannot", text)
    return " ".join(text.split())


def _clause_spans(text: str) -> list[tuple[int, int]]:
    """Where each clause of ``text`` starts and ends (break words and punctuation left out)."""
    spans: list[tuple[int, int]] = []
    position = 0
    for brk in (*CLAUSE_BREAK.finditer(text), None):
        end = brk.start() if brk else len(text)
        part = text[position:end]
        if part.strip():
            lead = len(part) - len(part.lstrip())
            spans.append((position + lead, position + len(part.rstrip())))
        if brk:
            position = brk.end()
    return spans


def _negated(clause: str, start: int) -> bool:
    before = INTERJECTION.sub(r"\1", clause[:start])
    words = before.split()
    for position in range(len(words) - 1, -1, -1):
        if len(words) - 1 - position > NEGATION_REACH:
            return False
        if NEGATOR.fullmatch(words[position]):
            following = " ".join(words[position + 1 : position + 3])
            return not HEDGE.search(following)
    return False


def _affirmed(pattern: re.Pattern[str], clause: str) -> list[re.Match[str]]:
    """The matches of ``pattern`` in ``clause`` that are not denied."""
    return [
        m
        for m in pattern.finditer(clause)
        if not _negated(clause, m.start()) or NOT_A_DENIAL_AFTER.search(clause[m.end() :])
    ]


@dataclass(frozen=True)
class _Hit:
    category: RedFlagCategory
    rule: str
    start: int  # offsets in the plain text
    end: int


def _hits(plain: str) -> list[_Hit]:
    """Every rule that fires, in screening order (crisis first, then by category)."""
    spans = _clause_spans(plain)
    hits: list[_Hit] = []
    for category, rules in PATTERNS:
        for rule, pattern in rules:
            # Pregnancy with bleeding spans clauses ("I'm pregnant and bleeding"); a negated
            # "no bleeding" in its own clause still clears it.
            if category is RedFlagCategory.PREGNANCY_BLEEDING:
                found = pattern.search(plain)
                if found and any(_affirmed(BLEED, plain[a:b]) for a, b in spans):
                    hits.append(_Hit(category, rule, found.start(), found.end()))
                continue
            for a, b in spans:
                for m in _affirmed(pattern, plain[a:b]):
                    hits.append(_Hit(category, rule, a + m.start(), a + m.end()))
    return hits


_WORD = re.compile(r"[a-z0-9]+")


def _evidence(plain: str, hits: list[_Hit]) -> Evidence:
    def apart(one: _Hit, other: _Hit) -> bool:
        return one.rule != other.rule and (one.end <= other.start or other.end <= one.start)

    if any(apart(one, other) for one in hits for other in hits):
        return Evidence.CORROBORATED
    if all(len(_WORD.findall(plain[h.start : h.end])) < 2 for h in hits):
        return Evidence.KEYWORD
    rest = list(plain)
    for hit in hits:
        rest[hit.start : hit.end] = " " * (hit.end - hit.start)
    around = [
        word for word in _WORD.findall(CLAUSE_BREAK.sub(" ", "".join(rest))) if word not in FILLERS
    ]
    return Evidence.PHRASE if around else Evidence.BARE


def screen(text: str) -> RedFlag | None:
    """The first red flag in ``text`` (crisis first, then by category), or None.

    The flag carries the :class:`Evidence` of the whole utterance, so that "he collapsed and
    he's unresponsive" is clear although each word alone would not be.
    """
    plain = _plain(text)
    if not plain:
        return None
    hits = _hits(plain)
    if not hits:
        return None
    first = hits[0]
    return _flag(
        first.category,
        first.rule,
        _evidence(plain, hits),
        someone_else=bool(SOMEONE_ELSE.search(plain)),
    )


def _flag(
    category: RedFlagCategory,
    rule: str,
    evidence: Evidence = Evidence.PHRASE,
    someone_else: bool = False,
) -> RedFlag:
    guidance = CRISIS_GUIDANCE if category is RedFlagCategory.SUICIDAL else EMERGENCY_GUIDANCE
    return RedFlag(category, guidance, rule, evidence, someone_else)


def red_flag(category: str, rule: str, evidence: str, someone_else: bool) -> RedFlag:
    """A flag rebuilt from what the conversation stored while confirming it."""
    return _flag(RedFlagCategory(category), rule, Evidence(evidence), someone_else)


# --- confirming a flag with the caller --------------------------------------------------------


def needs_confirmation(flag: RedFlag, confidence: float, threshold: float) -> bool:
    """Ask "Did you say ...?" first, unless the flag is clear and heard with ``threshold``.

    ``confidence`` is the recogniser's own 0..1 figure for the turn (keypad input is 1.0).
    Confirming costs a caller one short question and can only end in guidance or a resumed
    intake, so the bar for skipping it is high (``RED_FLAG_MIN_CONFIDENCE``).
    """
    return not flag.clear or confidence < threshold


def graver(first: RedFlag, second: RedFlag) -> RedFlag:
    """Of two flags, the one screened first (crisis guidance before 911, as in :func:`screen`)."""
    order = [category for category, _ in PATTERNS]
    return first if order.index(first.category) <= order.index(second.category) else second


def confirmation_question(flag: RedFlag) -> str:
    """The restatement of ``flag`` that "Did you say ...?" asks about (no caller words)."""
    yours, theirs = RESTATED[flag.category]
    return theirs if flag.someone_else else yours


def _only_denial(said: str) -> bool:
    rest, denied = said, False
    while rest:
        for piece, denies in ((DENIAL, True), (POLITE, False), (CORRECTED, False)):
            found = piece.match(rest)
            if found:
                denied = denied or denies
                rest = rest[found.end() :].strip()
                break
        else:
            return False
    return denied


def confirmation_reply(text: str) -> Reply:
    """Read the answer to "Did you say ...?" with the rules alone.

    A language model never reads this answer: only a reply made of denials ("no", "nope, I
    said please", "no I didn't, sorry") is ``NO``; "sorry, what?" is ``REPEAT``; a yes is
    ``YES``; everything else, including "no, my husband does", is ``UNCLEAR``.
    """
    said = intents.plain(text)
    if not said:
        return Reply.UNCLEAR
    if intents.request_intent(text) is Intent.REPEAT:
        return Reply.REPEAT
    if YES.search(said):
        return Reply.YES
    if _only_denial(said):
        return Reply.NO
    if intents.yes_no(text) is Intent.AFFIRM:
        return Reply.YES
    return Reply.UNCLEAR
