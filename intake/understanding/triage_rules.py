"""The red-flag tables: the words that mean an emergency, the words that deny one, and what
the agent says. Data only; :mod:`intake.understanding.triage` applies them.

Kept apart from the matching so that a clinician reviewing what the agent treats as an emergency
reads these tables alone, and so that a change to a phrase cannot touch the logic that decides
negation and evidence. Patterns run on "plain" text: lower case, apostrophes removed ("can't" is
"cant"), "can not" joined, whitespace collapsed.
"""

from __future__ import annotations

import re
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


# What "Did you say ...?" restates, for the caller and for someone they speak of. Plain words a
# frightened caller understands at once; never the caller's own words.
RESTATED: dict[RedFlagCategory, tuple[str, str]] = {
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
RESTATEMENTS = tuple(wording for pair in RESTATED.values() for wording in pair)


# --- what counts as an emergency --------------------------------------------------------------


def _rules(*pairs: tuple[str, str]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((name, re.compile(pattern)) for name, pattern in pairs)


_BODY = r"(my|his|her|their|the|our|a)"
# Checked in this order; the first category that matches wins (crisis guidance first).
PATTERNS: tuple[tuple[RedFlagCategory, tuple[tuple[str, re.Pattern[str]], ...]], ...] = (
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

# --- clauses and negation (see the triage module's docstring) ---------------------------------

CLAUSE_BREAK = re.compile(
    r"[.,;:!?]+|\b(but|just|and|though|although|however|except|plus|also|because|then|yet|"
    r"while)\b"
)
NEGATOR = re.compile(
    r"\b(no|not|dont|doesnt|didnt|havent|hasnt|isnt|wasnt|arent|never|without|"
    r"denies|deny|denied|none|nor|neither|free of)\b"
)
# "not sure", "don't know", "don't think": doubt, not denial. In doubt, we flag.
HEDGE = re.compile(r"\b(sure|certain|know|think|remember|if|whether)\b")
NEGATION_REACH = 3  # words allowed between a negator and the symptom it negates
# "never had chest pain like this": a negator that introduces something new, not a denial.
NOT_A_DENIAL_AFTER = re.compile(r"^\s*(\w+ ){0,3}?(like this|this bad|so bad|this severe)\b")
BLEED = re.compile(r"\bbleed\w*")
# "no" opening a sentence is an answer, not a negation: "no, I have chest pain".
INTERJECTION = re.compile(r"\bno (i|he|she|we|they|my|its|it|there|this|the)\b")

# The caller speaks of another person: "Did you say someone ...?" rather than "you".
SOMEONE_ELSE = re.compile(
    r"\b(he|hes|she|shes|him|his|her|they|theyre|them|their|someone|somebody)\b"
    r"|\bmy (husband|wife|partner|son|daughter|child|kid|baby|mom|mother|dad|father|brother|"
    r"sister|friend|grand\w+|boyfriend|girlfriend|aunt|uncle|cousin|neighbou?r|roommate)\b"
)

# --- reading the answer to "Did you say ...?" -------------------------------------------------

# A clear no is made only of these pieces, and at least one of them denies. Anything else in
# the reply ("no, my husband does", "not me") makes it unclear, and unclear counts as yes.
DENIAL = re.compile(
    r"(no|nope|nah|negative|wrong|incorrect|not really|not at all|absolutely not|"
    r"definitely not|of course not|i (did not|didn't|didnt)( say (that|it|so|anything like that))?"
    r"|(that's|thats|that is) (not what i said|wrong|not right|not it)|you misheard( me)?)\b"
)
POLITE = re.compile(
    r"(sorry|thanks|thank you|no problem|(it's|its|i'm|im|i am|everything's|everything is) "
    r"(fine|ok|okay|all right|alright|good))\b"
)
# "no, I said please": the caller corrects what was misheard; the rest is theirs.
CORRECTED = re.compile(r"(i said|i meant|i was saying)\b.*")
YES = re.compile(r"\b(yes|yeah|yep|yup|yes i did|i did)\b(?! not)")
