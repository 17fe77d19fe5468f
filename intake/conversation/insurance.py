"""The insurance questions: keeping the carrier on file, a new carrier, its member ID.

Step functions of :data:`intake.conversation.questions.QUESTIONS` for the insurance phase;
they lead on to the visit (:mod:`intake.conversation.scheduling`).
"""

from __future__ import annotations

from intake.conversation import prompts
from intake.conversation.desk import FOLLOWUP, OUTCOME, FrontDesk
from intake.conversation.replies import NO, YES
from intake.conversation.scheduling import choose_type
from intake.conversation.steps import Ask, End, Retry, Step
from intake.understanding.types import SELF_PAY, Intent, Understanding


def keep_carrier(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.carrier:
        return carrier(desk, u, said)
    if u.intent == YES:
        on_file = desk.coverage_on_file()
        desk.state.carrier = on_file.carrier if on_file else ""
        return after_insurance(desk)
    if u.intent == NO:
        return Ask("carrier")
    return Retry()


def carrier(desk: FrontDesk, u: Understanding, said: str) -> Step:
    state = desk.state
    if u.carrier == SELF_PAY:
        state.carrier = SELF_PAY
        return after_insurance(desk)
    if u.carrier:
        state.carrier = u.carrier
        return Ask("member_id")
    if u.carrier_heard:
        state.carrier_heard = u.carrier_heard
        return Ask("not_accepted")
    if u.intent == Intent.DONT_KNOW:
        desk.follow_up(FOLLOWUP.CALLBACK_REQUESTED, "Insurance details still to collect.", 4)
        return after_insurance(desk, preface=prompts.MEMBER_ID_LATER)
    return Retry()


def not_accepted(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.intent == YES:
        desk.state.carrier = SELF_PAY
        return after_insurance(desk)
    if u.intent == NO:
        return End(
            OUTCOME.CALLBACK,
            prompts.CALLBACK_GOODBYE,
            FOLLOWUP.INSURANCE_NOT_ACCEPTED,
            f"Caller's insurance ({desk.state.carrier_heard}) is not on the accepted list.",
        )
    return Retry()


def member_id(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.member_id:
        desk.state.member_id = u.member_id
        return Ask("confirm_member_id")
    if u.intent == Intent.DONT_KNOW:
        desk.follow_up(
            FOLLOWUP.CALLBACK_REQUESTED,
            f"Member ID for {desk.state.carrier} still to collect.",
            4,
        )
        return after_insurance(desk, preface=prompts.MEMBER_ID_LATER)
    return Retry()


def confirm_member_id(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.member_id and u.member_id != desk.state.member_id:
        desk.state.member_id = u.member_id
        return Ask("confirm_member_id")
    if u.intent == YES:
        desk.save_coverage()
        return after_insurance(desk)
    if u.intent in (NO, Intent.CORRECTION):
        return Ask("member_id")
    return Retry()


def after_insurance(desk: FrontDesk, preface: str = "") -> Step:
    if desk.state.reason:  # given at the start ("I need to book for a rash")
        return choose_type(desk, preface)
    return Ask("reason", preface=preface)
