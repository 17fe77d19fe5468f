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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class RedFlagCategory(StrEnum):
    CHEST_PAIN = "chest_pain"
    BREATHING = "breathing"
    STROKE = "stroke"
    BLEEDING = "bleeding"
    SUICIDAL = "suicidal"
    OVERDOSE = "overdose"
    ANAPHYLAXIS = "anaphylaxis"
    SEIZURE = "seizure"
    UNCONSCIOUS = "unconscious"
    PREGNANCY_BLEEDING = "pregnancy_bleeding"


# Written for text-to-speech: "9 1 1" is read "nine one one", "911" would be "nine hundred...".
EMERGENCY_GUIDANCE = (
    "This could be a medical emergency. Please hang up and call 9 1 1 now, "
    "or go to the nearest emergency room."
)
CRISIS_GUIDANCE = (
    "I'm really sorry you're going through this, and you deserve support right now. "
    "Please call or text 9 8 8, the Suicide and Crisis Lifeline, any time, day or night. "
    "If you are in immediate danger, call 9 1 1."
)


@dataclass(frozen=True)
class RedFlag:
    """A red flag: its category, the guidance to read to the caller, and which rule fired.

    ``rule`` names our pattern (never the caller's words), so it is safe to log.
    """

    category: RedFlagCategory
    guidance: str
    rule: str


def _rules(*pairs: tuple[str, str]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((name, re.compile(pattern)) for name, pattern in pairs)


_BODY = r"(my|his|her|their|the|our|a)"
# Checked in this order; the first category that matches wins (crisis guidance first).
_PATTERNS: tuple[tuple[RedFlagCategory, tuple[tuple[str, re.Pattern[str]], ...]], ...] = (
    (
        RedFlagCategory.SUICIDAL,
        _rules(
            ("suicide", r"\bsuicid\w*"),
            ("kill self", r"\bkill(ing)? (my|him|her|them)sel(f|ves)\b"),
            ("end life", r"\b(end|ending|take|taking) (my|his|her) (own )?life\b"),
            ("want to die", r"\b(want|wanna|going|planning) (to )?die\b"),
            ("not want to live", r"\b(dont|do not) want to (live|be alive|be here|wake up)\b"),
            ("better off dead", r"\bbetter off dead\b"),
            (
                "self harm",
                r"\b(want|wanna|going|planning|thinking (about|of)|thoughts of|urge to) (to )?"
                r"(hurt|harm|cut)(ing)? (my|him|her)self\b|\bharm(ing)? (my|him|her)self\b"
                r"|\bself harm\w*|\bcutting (my|him|her)self\b",
            ),
            ("no reason to live", r"\bno (reason|point) (to|in) (live|living)\b"),
        ),
    ),
    (
        RedFlagCategory.PREGNANCY_BLEEDING,
        _rules(
            (
                "pregnant and bleeding",
                r"\b(pregnant|pregnancy|weeks along|expecting a baby)\b.*\bbleed\w*"
                r"|\bbleed\w*.*\b(pregnant|pregnancy|weeks along)\b",
            ),
        ),
    ),
    (
        RedFlagCategory.CHEST_PAIN,
        _rules(
            ("chest pain", r"\bchest (pain|pains|pressure|tightness|is tight|feels tight)\b"),
            ("chest hurts", r"\bchest (\w+ ){0,2}(hurts?|hurting|aches?|aching|burning|squeez\w*)"),
            ("pain in chest", rf"\b(pain|pressure|tightness|squeezing) in {_BODY} chest\b"),
            ("tight chest", r"\btight (chest|feeling in (my|the) chest)\b"),
            ("heart attack", r"\bheart attack\b"),
        ),
    ),
    (
        RedFlagCategory.BREATHING,
        _rules(
            ("cannot breathe", r"\b(cant|cannot|can not|couldnt|unable to) (\w+ )?breathe?\b"),
            ("not breathing", r"\b(not|isnt|stopped|stop) breathing\b"),
            ("doubts breathing", r"\b(dont|do not) think (i|he|she|they) can breathe\b"),
            (
                "trouble breathing",
                r"\b(trouble|difficulty|hard time|problems?|struggling|hard) (to )?breath(e|ing)\b"
                r"|\bhard to breathe\b",
            ),
            ("short of breath", r"\bshort(ness)? of breath\b|\bout of breath\b"),
            ("gasping", r"\bgasping\b|\bchoking\b|\bcant catch (my|his|her) breath\b"),
            ("turning blue", r"\b(turning|lips are|going) blue\b"),
        ),
    ),
    (
        RedFlagCategory.ANAPHYLAXIS,
        _rules(
            ("throat closing", r"\bthroat (is )?(closing|swelling|swollen|tight)\b"),
            ("tongue swelling", r"\b(tongue|lips?|face) (is |are )?(swelling|swollen)( up)?\b"),
            ("anaphylaxis", r"\banaphyla\w*|\bepi ?pen\b"),
            ("severe allergic reaction", r"\b(severe|bad) allergic reaction\b"),
        ),
    ),
    (
        RedFlagCategory.STROKE,
        _rules(
            ("stroke", r"\b(having|had|think its|might be) a stroke\b|\bstroke symptoms\b"),
            ("face drooping", r"\b(face|mouth|smile) (is )?(droop\w*|drooping|lopsided)\b"),
            ("drooping face", r"\bdroop\w* (face|mouth|smile)\b"),
            ("slurred speech", r"\bslurr\w*\b"),
            (
                "one side numb",
                r"\bone side (of (my|his|her|the) (body|face) )?(is |feels )?(numb|weak|paralyzed)"
                r"|\b(numb|numbness|weak|weakness|paralyzed) (on|in) one side\b"
                r"|\b(left|right) side (of (my|his|her|the) (body|face) )?(is |feels |went )?"
                r"(numb|weak|paralyzed|dead)\b",
            ),
            (
                "cannot speak",
                r"\b(cant|cannot) (get (my|the) words out|speak properly|form words)\b",
            ),
            ("worst headache", r"\bworst headache\b"),
        ),
    ),
    (
        RedFlagCategory.BLEEDING,
        _rules(
            ("bleeding a lot", r"\bbleeding (a lot|so much|heavily|badly|everywhere|really bad)\b"),
            (
                "will not stop",
                r"\b(wont|will not|doesnt|does not|cant|cannot) stop (the )?bleed\w*",
            ),
            ("bleeding will not stop", r"\bbleeding (wont|will not|doesnt|isnt) stop"),
            ("heavy bleeding", r"\b(heavy|severe|uncontrolled|profuse) bleeding\b"),
            ("lots of blood", r"\b(lots of|so much|a lot of) blood\b|\bblood everywhere\b"),
            ("blood from inside", r"\b(vomiting|throwing up|coughing up|puking) blood\b"),
        ),
    ),
    (
        RedFlagCategory.OVERDOSE,
        _rules(
            ("overdose", r"\boverdos\w*|\bod'?d\b"),
            (
                "too many pills",
                r"\btook (too many|a bunch of|a whole bottle of|all (of )?(my|the|his|her)) "
                r"(\w+ )?(pills|tablets|meds|medications?|medicine|capsules)\b",
            ),
            ("too much medicine", r"\btook too much (of )?(\w+ )?(medicine|medication|pills?)\b"),
            ("poisoned", r"\bpoison(ed|ing)?\b|\bswallowed (bleach|poison|chemicals)\b"),
        ),
    ),
    (
        RedFlagCategory.SEIZURE,
        _rules(
            (
                "seizure now",
                r"\b(having|had|just had) (a )?seizure\b|\bseizing\b|\bseizure (right )?now\b",
            ),
            ("convulsing", r"\bconvuls\w*"),
        ),
    ),
    (
        RedFlagCategory.UNCONSCIOUS,
        _rules(
            ("unconscious", r"\bunconscious\b|\bunresponsive\b"),
            ("passed out", r"\b(passed|passing) out\b|\bfainted\b|\bblacked out\b|\bcollapsed\b"),
            ("will not wake", r"\b(wont|will not|cant|isnt|not) (wake|waking) up\b"),
            ("not responding", r"\bnot responding\b"),
        ),
    ),
)

_CLAUSE_BREAK = re.compile(
    r"[.,;:!?]+|\b(but|just|and|though|although|however|except|plus|also|because|then|yet|"
    r"while)\b"
)
_NEGATOR = re.compile(
    r"\b(no|not|dont|doesnt|didnt|havent|hasnt|isnt|wasnt|arent|never|without|"
    r"denies|deny|denied|none|nor|neither|free of)\b"
)
# "not sure", "don't know", "don't think": doubt, not denial. In doubt, we flag.
_HEDGE = re.compile(r"\b(sure|certain|know|think|remember|if|whether)\b")
_NEGATION_REACH = 3  # words allowed between a negator and the symptom it negates
# "never had chest pain like this": a negator that introduces something new, not a denial.
_NOT_A_DENIAL_AFTER = re.compile(r"^\s*(\w+ ){0,3}?(like this|this bad|so bad|this severe)\b")
_BLEED = re.compile(r"\bbleed\w*")
# "no" opening a sentence is an answer, not a negation: "no, I have chest pain".
_INTERJECTION = re.compile(r"\bno (i|he|she|we|they|my|its|it|there|this|the)\b")


def _plain(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("'", "")
    text = re.sub(r"\bcan not\b", "cannot", text)
    return " ".join(text.split())


def _clauses(text: str) -> list[str]:
    return [part.strip() for part in _CLAUSE_BREAK.split(text) if part and part.strip()]


def _negated(clause: str, start: int) -> bool:
    before = _INTERJECTION.sub(r"\1", clause[:start])
    words = before.split()
    for position in range(len(words) - 1, -1, -1):
        if len(words) - 1 - position > _NEGATION_REACH:
            return False
        if _NEGATOR.fullmatch(words[position]):
            following = " ".join(words[position + 1 : position + 3])
            return not _HEDGE.search(following)
    return False


def _matches(pattern: re.Pattern[str], clause: str) -> bool:
    return any(
        not _negated(clause, m.start()) or _NOT_A_DENIAL_AFTER.search(clause[m.end() :])
        for m in pattern.finditer(clause)
    )


def screen(text: str) -> RedFlag | None:
    """The first red flag in ``text`` (crisis first, then by category), or None."""
    plain = _plain(text)
    if not plain:
        return None
    clauses = _clauses(plain)
    for category, rules in _PATTERNS:
        for rule, pattern in rules:
            # Pregnancy with bleeding spans clauses ("I'm pregnant and bleeding"); a negated
            # "no bleeding" in its own clause still clears it.
            if category is RedFlagCategory.PREGNANCY_BLEEDING:
                if pattern.search(plain) and any(_matches(_BLEED, c) for c in clauses):
                    return _flag(category, rule)
                continue
            if any(_matches(pattern, clause) for clause in clauses):
                return _flag(category, rule)
    return None


def _flag(category: RedFlagCategory, rule: str) -> RedFlag:
    guidance = CRISIS_GUIDANCE if category is RedFlagCategory.SUICIDAL else EMERGENCY_GUIDANCE
    return RedFlag(category, guidance, rule)
