"""An existing appointment (cancel, reschedule, none found) and the wrap-up question.

Step functions of :data:`intake.conversation.questions.QUESTIONS` for the manage and wrap_up
phases; they reuse the identity steps and the slot offers of the scheduling steps.
"""

from __future__ import annotations

from intake.conversation import prompts
from intake.conversation.desk import OUTCOME, FrontDesk
from intake.conversation.identity import _contact_question, after_identified, menu
from intake.conversation.replies import NO, YES
from intake.conversation.scheduling import _has_day_preference, _take_day_preference, offer
from intake.conversation.speakable import spoken_day
from intake.conversation.steps import Ask, End, Retry, Step
from intake.understanding.types import ANY_PROVIDER, Intent, Understanding


def confirm_cancel(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.intent == YES:
        cancelled = desk.cancel_existing()
        desk.state.goal = "cancelled"
        done = prompts.CANCELLED.format(when=spoken_day(cancelled.slot.start))
        return Ask("anything_else", preface=done)
    if u.intent == NO:
        desk.state.goal = ""
        return Ask("anything_else", preface=prompts.KEPT)
    return Retry()


def confirm_reschedule(desk: FrontDesk, u: Understanding, said: str) -> Step:
    state = desk.state
    if u.intent == YES or _has_day_preference(u):
        existing = desk.upcoming_appointment()
        assert existing is not None
        state.appointment_type_id = existing.appointment_type_id
        state.reason = existing.reason
        state.provider = ANY_PROVIDER
        if _has_day_preference(u):
            _take_day_preference(desk, u)
            return offer(desk)
        return Ask("day")
    if u.intent == NO:
        state.goal = ""
        return Ask("anything_else", preface=prompts.KEPT)
    return Retry()


def no_appointment(desk: FrontDesk, u: Understanding, said: str) -> Step:
    state = desk.state
    if u.intent in (YES, Intent.BOOK):
        state.goal = "book"
        state.existing_appointment_id = None
        if state.verified:
            return after_identified(desk)
        if state.patient_id is None and state.date_of_birth:
            desk.register_new_patient()
            return Ask(_contact_question(desk))
        return Ask("name")
    if u.intent in (NO, Intent.GOODBYE):
        return End(OUTCOME.ABANDONED, prompts.GOODBYE)
    return Retry()


def anything_else(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.intent in (Intent.BOOK, Intent.RESCHEDULE, Intent.CANCEL):
        return menu(desk, u, said)
    if u.intent == YES:
        return Ask("menu")
    if u.intent in (NO, Intent.GOODBYE, Intent.NONE):
        return End(desk.state.completed_goal or OUTCOME.ABANDONED, prompts.GOODBYE)
    return Retry()
