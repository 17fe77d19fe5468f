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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from intake.understanding import intents
from intake.understanding.spoken import FILLERS
from intake.understanding.types import Intent


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


# What "Did you say ...?" restates, for the caller and for someone they speak of. Plain words a
# frightened caller understands at once; never the caller's own words.
_RESTATED: dict[RedFlagCategory, tuple[str, str]] = {
    RedFlagCategory.SUICIDAL: (
        "you're thinking about ending your life or hurting yourself",
        "someone is thinking about ending their life or hurting themselves",
    ),
    RedFlagCategory.PREGNANCY_BLEEDING: (
        "you're pregnant and bleeding",
        "someone is pregnant and bleeding",
    ),
    RedFlagCategory.CHEST_PAIN: ("you have chest pain", "someone has chest pain"),
    RedFlagCategory.BREATHING: (
        "you're having trouble breathing",
        "someone is having trouble breathing",
    ),
    RedFlagCategory.ANAPHYLAXIS: (
        "you're having a severe allergic reaction",
        "someone is having a severe allergic reaction",
    ),
    RedFlagCategory.STROKE: ("you may be having a stroke", "someone may be having a stroke"),
    RedFlagCategory.BLEEDING: ("you're bleeding heavily", "someone is bleeding heavily"),
    RedFlagCategory.OVERDOSE: (
        "you took too much medicine or something harmful",
        "someone took too much medicine or something harmful",
    ),
    RedFlagCategory.SEIZURE: ("you're having a seizure", "someone is having a seizure"),
    RedFlagCategory.UNCONSCIOUS: ("you passed out", "someone passed out or won't wake up"),
}
# Every restatement, so that the voice layer can synthesise the questions ahead of time.
RESTATEMENTS = tuple(wording for pair in _RESTATED.values() for wording in pair)


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


def _clause_spans(text: str) -> list[tuple[int, int]]:
    """Where each clause of ``text`` starts and ends (break words and punctuation left out)."""
    spans: list[tuple[int, int]] = []
    position = 0
    for brk in (*_CLAUSE_BREAK.finditer(text), None):
        end = brk.start() if brk else len(text)
        part = text[position:end]
        if part.strip():
            lead = len(part) - len(part.lstrip())
            spans.append((position + lead, position + len(part.rstrip())))
        if brk:
            position = brk.end()
    return spans


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


def _affirmed(pattern: re.Pattern[str], clause: str) -> list[re.Match[str]]:
    """The matches of ``pattern`` in ``clause`` that are not denied."""
    return [
        m
        for m in pattern.finditer(clause)
        if not _negated(clause, m.start()) or _NOT_A_DENIAL_AFTER.search(clause[m.end() :])
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
    for category, rules in _PATTERNS:
        for rule, pattern in rules:
            # Pregnancy with bleeding spans clauses ("I'm pregnant and bleeding"); a negated
            # "no bleeding" in its own clause still clears it.
            if category is RedFlagCategory.PREGNANCY_BLEEDING:
                found = pattern.search(plain)
                if found and any(_affirmed(_BLEED, plain[a:b]) for a, b in spans):
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
        word for word in _WORD.findall(_CLAUSE_BREAK.sub(" ", "".join(rest))) if word not in FILLERS
    ]
    return Evidence.PHRASE if around else Evidence.BARE


_SOMEONE_ELSE = re.compile(
    r"\b(he|hes|she|shes|him|his|her|they|theyre|them|their|someone|somebody)\b"
    r"|\bmy (husband|wife|partner|son|daughter|child|kid|baby|mom|mother|dad|father|brother|"
    r"sister|friend|grand\w+|boyfriend|girlfriend|aunt|uncle|cousin|neighbou?r|roommate)\b"
)


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
        someone_else=bool(_SOMEONE_ELSE.search(plain)),
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
    order = [category for category, _ in _PATTERNS]
    return first if order.index(first.category) <= order.index(second.category) else second


def confirmation_question(flag: RedFlag) -> str:
    """The restatement of ``flag`` that "Did you say ...?" asks about (no caller words)."""
    yours, theirs = _RESTATED[flag.category]
    return theirs if flag.someone_else else yours


# A clear no is made only of these pieces, and at least one of them denies. Anything else in
# the reply ("no, my husband does", "not me") makes it unclear, and unclear counts as yes.
_DENIAL = re.compile(
    r"(no|nope|nah|negative|wrong|incorrect|not really|not at all|absolutely not|"
    r"definitely not|of course not|i (did not|didn't|didnt)( say (that|it|so|anything like that))?"
    r"|(that's|thats|that is) (not what i said|wrong|not right|not it)|you misheard( me)?)\b"
)
_POLITE = re.compile(
    r"(sorry|thanks|thank you|no problem|(it's|its|i'm|im|i am|everything's|everything is) "
    r"(fine|ok|okay|all right|alright|good))\b"
)
# "no, I said please": the caller corrects what was misheard; the rest is theirs.
_CORRECTED = re.compile(r"(i said|i meant|i was saying)\b.*")
_YES = re.compile(r"\b(yes|yeah|yep|yup|yes i did|i did)\b(?! not)")


def _only_denial(said: str) -> bool:
    rest, denied = said, False
    while rest:
        for piece, denies in ((_DENIAL, True), (_POLITE, False), (_CORRECTED, False)):
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
    if _YES.search(said):
        return Reply.YES
    if _only_denial(said):
        return Reply.NO
    if intents.yes_no(text) is Intent.AFFIRM:
        return Reply.YES
    return Reply.UNCLEAR
