"""What the caller is doing with a turn: agreeing, correcting, asking for a person, ...

Requests that can come at any point of the call (a person, a repeat, "I don't know",
goodbye) are recognised in every phase. Short answers ("yes", "no") are recognised only as
answers: "no" inside "I have no insurance" is not a denial.
"""

from __future__ import annotations

import re

from intake.understanding.spoken import FILLERS, tokens
from intake.understanding.types import Intent

_AGENT = re.compile(
    r"\b(operator|representative|receptionist|front desk|real person|(a|real|actual) human|"
    r"live person|"
    r"(speak|talk) (to|with) (a |an |the |your )?(person|someone|somebody|agent|staff|"
    r"office|nurse|doctor|people)( (please|now|instead|there))?$|"
    r"(speak|talk) (to|with) (a |an )?(person|human|agent|staff member)\b|"
    r"(transfer|connect|put) me (through|to)|agent please|press(ed)? zero)\b"
)
_REPEAT = re.compile(
    r"^((i'?m )?sorry |excuse me |pardon )?"
    r"(what|huh|pardon|sorry|excuse me|come again|say (that|it) again|say again|"
    r"(can|could|would) you (please )?(repeat|say) (that|it)( again)?|repeat( that| it)?( please)?|"
    r"i didn'?t (catch|hear|get) (that|it|you)|one more time|what did you say|"
    r"what was that|what'?s that|pardon me)( please)?$"
)
_DONT_KNOW = re.compile(
    r"\b(i (don'?t|do not) know|(i'?m )?not sure|no idea|(don'?t|do not|can'?t|cannot) "
    r"remember|i forgot|(i )?(don'?t|do not) have (it|that|them|one|it with me|it on me|"
    r"(a |an |my )?(insurance )?(card|cell( phone)?|mobile|phone|e-?mail( address)?))|dunno|"
    r"i'?m unsure|can'?t find it|i have no clue)\b"
)
_GOODBYE = re.compile(
    r"^(ok(ay)? )?(bye|goodbye|good bye|bye bye|that'?s all|that'?s it|have a (good|nice) "
    r"(day|one)|hang up|thanks bye|thank you bye|i'?m done|nothing else|no that'?s all|"
    r"no thanks that'?s all)( bye| thanks| thank you)*$"
)
_AFFIRM = re.compile(
    r"^(yes|yeah|yep|yup|ya|yah|yea|sure|correct|right|exactly|absolutely|definitely|ok|okay|"
    r"uh huh|mhm|mm hmm|affirmative|perfect|great|good|fine|please|of course|certainly|"
    r"that'?s (right|correct|it|fine|good|perfect|great)|that works|sounds good|you got it|"
    r"that is (right|correct)|it'?s right|all good|go ahead|do it|let'?s do (it|that)|"
    r"book it|yes please|works for me|that one|that'?ll work|that will work)\b"
)
_DENY = re.compile(
    r"^(no|nope|nah|negative|not really|wrong|incorrect|that'?s (wrong|not right|incorrect|not it)|"
    r"that is (wrong|not right|incorrect)|not (right|correct|quite)|no thanks?|no thank you|"
    r"neither|none of (those|them|these)|i (don'?t|do not) think so)\b"
)
_CORRECTION = re.compile(
    r"^((no|nope|nah|not quite|wrong)\b,? ?(it'?s|it is|that'?s|its|i said|i meant|my \w+ is)?|"
    r"actually|sorry,? (i meant|it'?s)|i meant|i mean|let me correct|correction|"
    r"make (that|it)|change (that|it) to|it should be|should be)\b"
)
_BOOK = re.compile(
    r"\b(book|make (an |a )?(appointment|appt)|schedul(e|ing)|set up (an )?appointment|"
    r"new appointment|need (an|to see|to be seen|to come in|a visit)|see (the|a|dr|doctor)|"
    r"come in|get in|an appointment|check ?up|physical|be seen)\b"
)
_RESCHEDULE = re.compile(
    r"\b(reschedul\w*|re schedule|move (my|the|an|our) (appointment|appt|visit)|change (my|the) "
    r"(appointment|appt|time|day|visit)|different (time|day)|push (it |my appointment )?back|"
    r"move it)\b"
)
_CANCEL = re.compile(
    r"\b(cancel\w*|can'?t make (it|my appointment)|won'?t be able to (make|come)|call off|"
    r"not going to make it|remove my appointment)\b"
)
_QUESTION = re.compile(
    r"\b(question|ask|wondering|hours|open|closed|where are you|address of the|directions|"
    r"do you (take|accept)|how much|cost|price|bill(ing)?|refill|prescription|results|"
    r"insurance question|speak about a bill)\b"
)
_NEW_PATIENT = re.compile(
    r"\b(new( patient)?|first (time|visit)|never (been|seen|visited)|haven'?t (been|seen|visited)"
    r"|not (a|an) (patient|existing)|not yet|i'?m new)\b"
)
_RETURNING = re.compile(
    r"\b(returning|existing|established|current patient|(been|seen|visited) (there|here|you|"
    r"before|with)|i'?m a patient|i am a patient|regular|already a patient|i have been|"
    r"i'?ve been)\b"
)
_ASKS_IF_NEW = re.compile(r"\bnew patient\b|\bfirst (time|visit)\b")


# Said as one word, though written as two that look like fillers.
_UH_HUH = re.compile(r"\b(uh[- ]huh|mm[- ]hmm|mhm+|mm hm|uh huh)\b")
_UH_UH = re.compile(r"\b(uh[- ]uh|nuh[- ]uh)\b")


def plain(text: str) -> str:
    """Lower-case words without fillers: the form the intent patterns expect."""
    text = _UH_UH.sub("no", _UH_HUH.sub("yes", text.lower()))
    return " ".join(word for word in tokens(text) if word not in FILLERS)


def request_intent(text: str) -> Intent | None:
    """A request that can come at any point: a person, a repeat, goodbye, "I don't know"."""
    said = plain(text)
    if not said:
        return None
    if _AGENT.search(said):
        return Intent.AGENT
    if _REPEAT.search(said):
        return Intent.REPEAT
    if _GOODBYE.search(said):
        return Intent.GOODBYE
    if _DONT_KNOW.search(said):
        return Intent.DONT_KNOW
    return None


def without_dont_know(text: str) -> str:
    """``text`` without its "I don't know" part: "not sure, maybe Aetna" -> "maybe aetna"."""
    return " ".join(_DONT_KNOW.sub(" ", plain(text)).split())


def yes_no(text: str) -> Intent | None:
    """AFFIRM or DENY when the turn opens with one; None otherwise."""
    said = plain(text)
    if _DENY.search(said):
        return Intent.DENY
    if _AFFIRM.search(said):
        return Intent.AFFIRM
    return None


def correction_rest(text: str) -> str | None:
    """The new value of a correction ("no, it's Smyth" -> "smyth"); None if not one."""
    said = plain(text)
    match = _CORRECTION.search(said)
    if not match:
        return None
    rest = said[match.end() :].strip(" ,")
    rest = re.sub(r"^(no|it'?s|it is|that'?s|its)\b\s*", "", rest)
    return rest or None


def menu_intent(text: str) -> Intent | None:
    """Book, reschedule, cancel, or a question for the clinic."""
    said = plain(text)
    cancel = bool(_CANCEL.search(said))
    book = bool(_BOOK.search(said))
    if _RESCHEDULE.search(said) or (cancel and re.search(r"\b(re-?book|book (a )?new)\b", said)):
        return Intent.RESCHEDULE
    if cancel:
        return Intent.CANCEL
    if book:
        return Intent.BOOK
    if _QUESTION.search(said):
        return Intent.QUESTION
    return None


def patient_status(text: str, last_question: str) -> bool | None:
    """Whether the caller is new to the clinic; a bare yes/no is read against the question."""
    said = plain(text)
    if _RETURNING.search(said) and not re.search(r"\b(haven'?t|never|not)\b", said):
        return False
    if _NEW_PATIENT.search(said):
        return True
    answer = yes_no(said)
    if answer is None or not last_question:
        return None
    asks_if_new = bool(_ASKS_IF_NEW.search(last_question.lower()))
    return (answer is Intent.AFFIRM) == asks_if_new
