"""A red flag that may have been misheard is confirmed with the caller before guidance.

Offline recognition invents emergencies ("please" heard as "bleeding", a cough decoded as
"can't breathe"), and ending a call with 911 guidance on words the caller never said is a
failure too. So the flow (:meth:`Flow.red_flag`) decides, with rules only:

- a flag that is clear (:attr:`RedFlag.clear`) and heard at or above
  ``RED_FLAG_MIN_CONFIDENCE`` ends intake at once, as before;
- any other flag asks "Did you say you <restatement>?" (:data:`QUESTION`, a yes/no question
  whose answers go to the recogniser as hints like any other);
- only a clear no (:func:`~intake.understanding.triage.confirmation_reply`, heard above the
  noise floor) resumes the intake: the interrupted question is asked again, with its reprompt
  and silence counts as they were, and everything already said is kept;
- "sorry, what?" asks once more; a yes, silence, an unclear answer, a request for a person,
  or a second red flag all end in emergency guidance with an urgent follow-up, because a
  false alarm costs a caller a minute and a missed emergency costs far more;
- a caller who hangs up while asked leaves staff an urgent follow-up.

A language model never reads the answer: the engine passes the words straight to the rules.
"""

from __future__ import annotations

from clinic.logs import get_logger
from intake.conversation import prompts
from intake.conversation.desk import FOLLOWUP, OUTCOME, FrontDesk
from intake.conversation.state import ConversationState
from intake.conversation.steps import Ask, End, Step
from intake.models import FollowUp
from intake.understanding.triage import (
    RedFlag,
    Reply,
    confirmation_question,
    confirmation_reply,
    red_flag,
)
from intake.understanding.types import Understanding

log = get_logger(__name__)

QUESTION = "confirm_red_flag"
# "Sorry, what?" gets the question once more; after that, not answering counts as yes.
REPEATS = 1


def confirming(state: ConversationState) -> bool:
    return state.question == QUESTION


def pending(state: ConversationState) -> RedFlag:
    """The flag the caller is being asked about."""
    return red_flag(
        state.flag_category, state.flag_rule, state.flag_evidence, state.flag_someone_else
    )


def ask(desk: FrontDesk, flag: RedFlag) -> Ask:
    """Keep the interrupted question and its counts, remember the flag, and ask about it."""
    state = desk.state
    state.resume_question = state.question or "menu"
    state.resume_misunderstood, state.resume_silences = state.misunderstood, state.silences
    state.flag_category, state.flag_rule = flag.category.value, flag.rule
    state.flag_evidence, state.flag_someone_else = flag.evidence.value, flag.someone_else
    state.flag_repeats = 0
    return Ask(QUESTION)


def prompt(desk: FrontDesk) -> str:
    return prompts.CONFIRM_RED_FLAG.format(what=confirmation_question(pending(desk.state)))


def answer(desk: FrontDesk, u: Understanding, said: str) -> Step:
    """The question table's answer: the words are read by the rules, ``u`` is not used."""
    return reply(desk, confirmation_reply(said))


def reply(desk: FrontDesk, heard: Reply) -> Step:
    state = desk.state
    log.info(
        "red_flag_reply", call_id=desk.call.pk, category=state.flag_category, reply=heard.value
    )
    if heard is Reply.NO:
        return resume(desk)
    if heard is Reply.REPEAT and state.flag_repeats < REPEATS:
        state.flag_repeats += 1
        return Ask(QUESTION)
    why = "confirmed by the caller" if heard is Reply.YES else "the answer was not a clear no"
    return emergency(pending(state), why)


def resume(desk: FrontDesk) -> Ask:
    """Back to the interrupted question, exactly as it was: its counts are not reset."""
    state = desk.state
    question = state.resume_question or "menu"
    # The flow resets the counts only when the question changes; it does not change here.
    state.question = question
    state.misunderstood, state.silences = state.resume_misunderstood, state.resume_silences
    _forget(state)
    return Ask(question, preface=prompts.MISHEARD)


def emergency(flag: RedFlag, why: str = "") -> End:
    """Guidance, an urgent follow-up for staff, nothing booked (the flow releases any hold)."""
    return End(
        OUTCOME.EMERGENCY,
        f"{flag.guidance} {prompts.STAFF_ALERTED}",
        FOLLOWUP.EMERGENCY,
        summary(flag, why),
        priority=FollowUp.Priority.URGENT,
    )


def summary(flag: RedFlag, why: str = "") -> str:
    """For staff: the category and how it was judged (our words, never the caller's)."""
    text = f"Red flag during intake: {flag.category.value.replace('_', ' ')}"
    return f"{text} ({why})." if why else f"{text}."


def _forget(state: ConversationState) -> None:
    state.flag_category = state.flag_rule = state.flag_evidence = ""
    state.flag_someone_else, state.flag_repeats = False, 0
    state.resume_question = ""
    state.resume_misunderstood = state.resume_silences = 0
