"""Every question the agent asks, what answer it expects, and where each answer leads.

The table :data:`QUESTIONS` is the conversation's state machine: a question has a phase (for
staff and metrics), an :class:`Expectation` (for understanding and speech hints), a prompt,
and an ``answer`` function that reads the :class:`Understanding` of the caller's reply,
updates the state through the :class:`FrontDesk`, and returns the next :class:`Step`.
Decisions are made here, never by a language model.

The step functions live by what they do: :mod:`identity` (greeting, identity, a new
patient's details), :mod:`insurance`, :mod:`scheduling` (the visit and its booking) and
:mod:`manage` (an existing appointment, the wrap-up). They are re-exported here so that
``intake.conversation.questions`` stays the one place to import a question's parts from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from intake.conversation import prompts, red_flags
from intake.conversation.desk import FrontDesk
from intake.conversation.existing_appointment import (
    anything_else,
    confirm_cancel,
    confirm_reschedule,
    no_appointment,
)
from intake.conversation.identity import (
    SKIP_WORDS,
    address,
    after_dob,
    after_identified,
    confirm_dob,
    confirm_name,
    dob,
    dob_read_back,
    email,
    identify,
    menu,
    name,
    name_read_back,
    patient_status,
    phone,
    phone_same,
    spell_name,
    verify_dob,
    verify_prompt,
)
from intake.conversation.insurance import (
    after_insurance,
    carrier,
    confirm_member_id,
    keep_carrier,
    member_id,
    not_accepted,
)
from intake.conversation.replies import NO, YES
from intake.conversation.scheduling import (
    booking_read_back,
    choose_type,
    confirm_booking,
    confirm_booking_prompt,
    day,
    offer,
    offer_prompt,
    provider,
    provider_prompt,
    reason,
    slot_choice,
)
from intake.conversation.speakable import characters, spell
from intake.conversation.steps import Step
from intake.understanding.types import Expectation, Understanding

__all__ = [
    "NO",
    "QUESTIONS",
    "SKIP_WORDS",
    "YES",
    "Answer",
    "Prompt",
    "Question",
    "address",
    "after_dob",
    "after_identified",
    "after_insurance",
    "anything_else",
    "booking_read_back",
    "carrier",
    "choose_type",
    "confirm_booking",
    "confirm_booking_prompt",
    "confirm_cancel",
    "confirm_dob",
    "confirm_member_id",
    "confirm_name",
    "confirm_reschedule",
    "day",
    "dob",
    "dob_read_back",
    "email",
    "fixed",
    "identify",
    "keep_carrier",
    "member_id",
    "menu",
    "name",
    "name_read_back",
    "no_appointment",
    "not_accepted",
    "offer",
    "offer_prompt",
    "patient_status",
    "phone",
    "phone_same",
    "provider",
    "provider_prompt",
    "reason",
    "slot_choice",
    "spell_name",
    "verify_dob",
    "verify_prompt",
]

Answer = Callable[[FrontDesk, Understanding, str], Step]
Prompt = Callable[[FrontDesk], str]


@dataclass(frozen=True)
class Question:
    phase: str
    expect: Expectation
    prompt: Prompt
    answer: Answer
    confirming: Expectation | None = None
    read_back: Prompt | None = None


def fixed(text: str) -> Prompt:
    return lambda desk: text


QUESTIONS: dict[str, Question] = {
    "menu": Question("greeting", Expectation.MENU, fixed(prompts.MENU), menu),
    "verify_dob": Question("identify", Expectation.DATE_OF_BIRTH, verify_prompt, verify_dob),
    "patient_status": Question(
        "identify", Expectation.PATIENT_STATUS, fixed(prompts.PATIENT_STATUS), patient_status
    ),
    "name": Question("demographics", Expectation.NAME, fixed(prompts.ASK_NAME), name),
    "confirm_name": Question(
        "demographics",
        Expectation.YES_NO,
        lambda desk: prompts.CONFIRM_NAME.format(
            first=desk.state.first_name,
            last=desk.state.last_name,
            spelled=spell(desk.state.last_name),
        ),
        confirm_name,
        confirming=Expectation.NAME,
        read_back=name_read_back,
    ),
    "spell_name": Question(
        "demographics", Expectation.SPELLING, fixed(prompts.ASK_SPELLING), spell_name
    ),
    "dob": Question("demographics", Expectation.DATE_OF_BIRTH, fixed(prompts.ASK_DOB), dob),
    "confirm_dob": Question(
        "demographics",
        Expectation.YES_NO,
        lambda desk: prompts.CONFIRM_DOB.format(date=dob_read_back(desk)),
        confirm_dob,
        confirming=Expectation.DATE_OF_BIRTH,
        read_back=dob_read_back,
    ),
    "phone_same": Question(
        "demographics", Expectation.YES_NO, fixed(prompts.PHONE_SAME), phone_same
    ),
    "phone": Question("demographics", Expectation.PHONE, fixed(prompts.ASK_PHONE), phone),
    "email": Question("demographics", Expectation.EMAIL, fixed(prompts.ASK_EMAIL), email),
    "address": Question("demographics", Expectation.ADDRESS, fixed(prompts.ASK_ADDRESS), address),
    "keep_carrier": Question(
        "insurance",
        Expectation.YES_NO,
        lambda desk: prompts.KEEP_CARRIER.format(
            carrier=getattr(desk.coverage_on_file(), "carrier", "the same")
        ),
        keep_carrier,
    ),
    "carrier": Question("insurance", Expectation.CARRIER, fixed(prompts.ASK_CARRIER), carrier),
    "not_accepted": Question(
        "insurance",
        Expectation.YES_NO,
        lambda desk: prompts.NOT_ACCEPTED.format(carrier=desk.state.carrier_heard),
        not_accepted,
    ),
    "member_id": Question(
        "insurance", Expectation.MEMBER_ID, fixed(prompts.ASK_MEMBER_ID), member_id
    ),
    "confirm_member_id": Question(
        "insurance",
        Expectation.YES_NO,
        lambda desk: prompts.CONFIRM_MEMBER_ID.format(member_id=characters(desk.state.member_id)),
        confirm_member_id,
        confirming=Expectation.MEMBER_ID,
        read_back=lambda desk: desk.state.member_id,
    ),
    "reason": Question("reason", Expectation.REASON, fixed(prompts.ASK_REASON), reason),
    "provider": Question("scheduling", Expectation.PROVIDER, provider_prompt, provider),
    "day": Question("scheduling", Expectation.DAY, fixed(prompts.ASK_DAY), day),
    "slot_choice": Question("scheduling", Expectation.SLOT_CHOICE, offer_prompt, slot_choice),
    "confirm_booking": Question(
        "scheduling",
        Expectation.YES_NO,
        confirm_booking_prompt,
        confirm_booking,
        read_back=booking_read_back,
    ),
    "confirm_cancel": Question(
        "manage", Expectation.YES_NO, fixed(prompts.CONFIRM_CANCEL), confirm_cancel
    ),
    "confirm_reschedule": Question(
        "manage", Expectation.YES_NO, fixed(prompts.CONFIRM_RESCHEDULE), confirm_reschedule
    ),
    "no_appointment": Question(
        "manage", Expectation.YES_NO, fixed(prompts.NO_APPOINTMENT), no_appointment
    ),
    "anything_else": Question(
        "wrap_up", Expectation.YES_NO, fixed(prompts.ANYTHING_ELSE), anything_else
    ),
    # Asked in any phase when a red flag may have been misheard (see red_flags.py).
    red_flags.QUESTION: Question("triage", Expectation.YES_NO, red_flags.prompt, red_flags.answer),
}
