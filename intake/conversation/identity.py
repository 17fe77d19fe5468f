"""Greeting, identifying the caller and taking a new patient's details: the first questions.

Step functions of :data:`intake.conversation.questions.QUESTIONS` for the greeting, identity
and demographics phases; each reads the :class:`Understanding` of a reply, updates the state
through the :class:`FrontDesk` and returns the next :class:`Step`.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from intake.conversation import prompts
from intake.conversation.desk import FOLLOWUP, OUTCOME, FrontDesk
from intake.conversation.replies import NO, YES
from intake.conversation.speakable import spoken_date, spoken_day
from intake.conversation.steps import Ask, End, Retry, Step
from intake.understanding.types import Intent, Understanding

SKIP_WORDS = ("skip", "no email", "don't have", "do not have", "none", "rather not", "prefer not")


def menu(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.intent in (Intent.BOOK, Intent.RESCHEDULE, Intent.CANCEL):
        desk.state.goal = str(u.intent)
    elif u.reason:  # "I need to see someone about my back": they want to book
        desk.state.goal = "book"
        desk.state.reason = u.reason
    else:
        return Retry(prompts.MENU_REPROMPT)
    return identify(desk)


def identify(desk: FrontDesk) -> Step:
    if desk.state.verified:
        return after_identified(desk)
    if desk.patients_for_caller_number():
        return Ask("verify_dob")
    return Ask("patient_status")


def verify_dob(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.date is None:
        return Retry()
    patient = desk.verify_by_caller_number(u.date)
    if patient is not None:
        desk.state.verified, desk.state.new_patient = True, False
        desk.bind_patient(patient)
        return after_identified(desk, preface=f"Thank you, {patient.first_name}.")
    desk.state.dob_attempts += 1
    if desk.state.dob_attempts < 2:
        return Ask("verify_dob", preface=prompts.DOB_MISMATCH)
    # Nothing about the record has been said; stop before guessing further.
    return End(
        OUTCOME.CALLBACK,
        prompts.NOT_VERIFIED,
        FOLLOWUP.CALLBACK_REQUESTED,
        "Caller's identity could not be verified by date of birth.",
    )


def verify_prompt(desk: FrontDesk) -> str:
    return prompts.VERIFY_DOB if desk.state.dob_attempts == 0 else prompts.ASK_DOB


def patient_status(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.new_patient is not None:
        desk.state.new_patient = u.new_patient
    elif u.intent in (YES, NO):
        desk.state.new_patient = u.intent == NO
    else:
        return Retry()
    if desk.state.new_patient and desk.state.goal in ("reschedule", "cancel"):
        return Ask("no_appointment")
    return Ask("name")


def name(desk: FrontDesk, u: Understanding, said: str) -> Step:
    state = desk.state
    if u.first_name:
        state.first_name = u.first_name
    if u.last_name:
        state.last_name = u.last_name
    if not (state.first_name and state.last_name):
        return Retry("Please say both your first and your last name.")
    return Ask("confirm_name")


def name_read_back(desk: FrontDesk) -> str:
    return f"{desk.state.first_name} {desk.state.last_name}"


def confirm_name(desk: FrontDesk, u: Understanding, said: str) -> Step:
    state = desk.state
    corrected = False
    if u.spelled:
        state.last_name, corrected = _capitalise(u.spelled), True
    elif u.last_name and u.last_name != state.last_name:
        state.last_name, corrected = u.last_name, True
    if u.first_name and u.first_name != state.first_name and u.intent != YES:
        state.first_name, corrected = u.first_name, True
    if corrected:
        return Ask("confirm_name")
    if u.intent == YES:
        return Ask("dob")
    if u.intent in (NO, Intent.CORRECTION):
        return Ask("spell_name")
    return Retry()


def spell_name(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.spelled:
        desk.state.last_name = _capitalise(u.spelled)
    elif u.last_name:
        desk.state.last_name = u.last_name
    else:
        return Retry()
    return Ask("confirm_name")


def _capitalise(letters: str) -> str:
    """``"O'BRIEN"`` -> ``"O'Brien"``, ``"SMYTH"`` -> ``"Smyth"``."""
    return letters.lower().title()


def dob(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.date is None or u.date > timezone.localdate():
        return Retry()
    desk.state.date_of_birth = u.date.isoformat()
    return Ask("confirm_dob")


def dob_read_back(desk: FrontDesk) -> str:
    return spoken_date(dt.date.fromisoformat(desk.state.date_of_birth))


def confirm_dob(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.date is not None and u.date.isoformat() != desk.state.date_of_birth:
        desk.state.date_of_birth = u.date.isoformat()
        return Ask("confirm_dob")
    if u.intent == YES:
        return after_dob(desk)
    if u.intent in (NO, Intent.CORRECTION):
        return Ask("dob")
    return Retry()


def after_dob(desk: FrontDesk) -> Step:
    state = desk.state
    birth = dt.date.fromisoformat(state.date_of_birth)
    if state.new_patient is False:
        patient = desk.find_by_name_and_dob(state.last_name, birth)
        if patient is not None:
            state.verified = True
            desk.bind_patient(patient)
            return after_identified(desk, preface=f"Thank you, {patient.first_name}.")
        state.new_patient = True
        if state.goal in ("reschedule", "cancel"):
            return Ask("no_appointment", preface=prompts.NOT_FOUND)
        desk.register_new_patient()
        return Ask(_contact_question(desk), preface=prompts.NOT_FOUND)
    desk.register_new_patient()
    return Ask(_contact_question(desk))


def _contact_question(desk: FrontDesk) -> str:
    return "phone_same" if desk.call.caller_number else "phone"


def phone_same(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.phone_e164:
        desk.state.phone = u.phone_e164
        return Ask("email")
    if u.intent == YES:
        desk.state.phone = desk.call.caller_number
        return Ask("email")
    if u.intent == NO:
        return Ask("phone")
    return Retry()


def phone(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if not u.phone_e164:
        return Retry("Please say the number with its area code.")
    desk.state.phone = u.phone_e164
    return Ask("email")


def _skipped(u: Understanding, said: str) -> bool:
    """ "Skip", "no", "I don't have one": an optional answer the caller declines."""
    return u.intent in (NO, Intent.DONT_KNOW) or any(w in said.lower() for w in SKIP_WORDS)


def email(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.email:
        desk.state.email = u.email
    elif not _skipped(u, said):
        return Retry()
    return Ask("address")


def address(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.address is not None and u.address.street:
        desk.state.address = u.address.as_dict()
    elif not _skipped(u, said):
        return Retry()
    desk.save_contact_details()
    return Ask("carrier")


def after_identified(desk: FrontDesk, preface: str = "") -> Step:
    """A verified returning patient: straight to what they called for."""
    state = desk.state
    if state.goal in ("reschedule", "cancel"):
        existing = desk.upcoming_appointment()
        if existing is None:
            return Ask("no_appointment", preface=preface)
        state.existing_appointment_id = existing.pk
        found = prompts.FOUND_APPOINTMENT.format(
            when=spoken_day(existing.slot.start), provider=existing.slot.provider.name
        )
        question = "confirm_cancel" if state.goal == "cancel" else "confirm_reschedule"
        return Ask(question, preface=f"{preface} {found}".strip())
    if desk.coverage_on_file() is not None:
        return Ask("keep_carrier", preface=preface)
    return Ask("carrier", preface=preface)
