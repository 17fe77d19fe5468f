"""Every question the agent asks, what answer it expects, and where each answer leads.

The table :data:`QUESTIONS` is the conversation's state machine: a question has a phase (for
staff and metrics), an :class:`Expectation` (for understanding and speech hints), a prompt,
and an ``answer`` function that reads the :class:`Understanding` of the caller's reply,
updates the state through the :class:`FrontDesk`, and returns the next :class:`Step`.
Decisions are made here, never by a language model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.utils import timezone

from clinic.services import SlotTaken
from intake.conversation import prompts, red_flags
from intake.conversation.desk import FOLLOWUP, OUTCOME, FrontDesk
from intake.conversation.speakable import characters, spell, spoken_date, spoken_day, spoken_list
from intake.conversation.steps import Ask, End, Retry, Step
from intake.understanding.types import ANY_PROVIDER, SELF_PAY, Expectation, Intent, Understanding

Answer = Callable[[FrontDesk, Understanding, str], Step]
Prompt = Callable[[FrontDesk], str]

YES = Intent.AFFIRM
NO = Intent.DENY
SKIP_WORDS = ("skip", "no email", "don't have", "do not have", "none", "rather not", "prefer not")


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


# --- greeting and identity -----------------------------------------------------------------


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


# --- insurance -----------------------------------------------------------------------------


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


# --- the visit -----------------------------------------------------------------------------


def reason(desk: FrontDesk, u: Understanding, said: str) -> Step:
    text = (u.reason or said).strip()
    if not text:
        return Retry()
    desk.state.reason = text
    return choose_type(desk)


def choose_type(desk: FrontDesk, preface: str = "") -> Step:
    kind = desk.choose_appointment_type()
    if kind is None:
        return End(
            OUTCOME.CALLBACK,
            prompts.NO_SLOTS,
            FOLLOWUP.NO_SLOTS,
            "No appointment type is set up for this visit.",
        )
    desk.state.appointment_type_id = kind.pk
    if len(desk.provider_names()) > 1:
        return Ask("provider", preface=preface)
    desk.state.provider = ANY_PROVIDER
    return Ask("day", preface=preface)


def provider_prompt(desk: FrontDesk) -> str:
    return prompts.ASK_PROVIDER.format(names=spoken_list(desk.provider_names()))


def provider(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if u.provider:
        desk.state.provider = u.provider
    elif u.intent in (NO, Intent.DONT_KNOW, YES):  # "no preference", "anyone is fine"
        desk.state.provider = ANY_PROVIDER
    else:
        return Retry()
    if _has_day_preference(u):
        _take_day_preference(desk, u)
        return offer(desk)
    return Ask("day")


def _has_day_preference(u: Understanding) -> bool:
    return bool(u.weekdays or u.part_of_day or u.date or u.soonest or u.not_before)


def _take_day_preference(desk: FrontDesk, u: Understanding) -> None:
    state = desk.state
    state.weekdays = sorted(u.weekdays)
    state.part_of_day = str(u.part_of_day) if u.part_of_day else ""
    state.not_before = ""
    if u.date is not None:
        state.weekdays = [u.date.weekday()]
        state.not_before = u.date.isoformat()
    elif u.not_before is not None:
        state.not_before = u.not_before.isoformat()
    if u.soonest:
        state.weekdays, state.not_before = [], ""


def day(desk: FrontDesk, u: Understanding, said: str) -> Step:
    if _has_day_preference(u) or u.intent == Intent.DONT_KNOW:
        _take_day_preference(desk, u)
        return offer(desk)
    return Retry()


def offer(desk: FrontDesk, preface: str = "", exclude: set[int] | None = None) -> Step:
    """Read the earliest two or three real open slots that fit the caller's preferences."""
    state = desk.state
    found = desk.search_slots(exclude=exclude)
    if not found.slots:
        return End(
            OUTCOME.CALLBACK,
            prompts.NO_SLOTS,
            FOLLOWUP.NO_SLOTS,
            "No open slots for the requested visit within the booking horizon.",
        )
    state.offers = desk.offers_for(found.slots)
    state.offer_round += 1
    if found.relaxed:
        preface = f"{preface} {prompts.NOTHING_THEN}".strip()
    return Ask("slot_choice", preface=preface)


def offer_prompt(desk: FrontDesk) -> str:
    labels = [offer.label for offer in desk.state.offers]
    if len(labels) == 1:
        return prompts.OFFER_ONE.format(option=labels[0])
    return prompts.OFFER.format(options=spoken_list(labels))


def slot_choice(desk: FrontDesk, u: Understanding, said: str) -> Step:
    state = desk.state
    index = u.slot_index
    if index is None and u.intent == YES and len(state.offers) == 1:
        index = 0
    if index is not None and 0 <= index < len(state.offers):
        chosen = state.offers[index]
        if desk.hold(chosen.slot_id):
            return Ask("confirm_booking")
        offered = {offer.slot_id for offer in state.offers}
        return offer(desk, preface=prompts.SLOT_TAKEN, exclude=offered)
    if _has_day_preference(u):  # "actually, Thursday"
        _take_day_preference(desk, u)
        return offer(desk)
    if u.intent == NO:
        return Ask("day", preface="No problem.")
    return Retry()


def booking_read_back(desk: FrontDesk) -> str:
    chosen = desk.state.chosen_offer
    return chosen.label if chosen else ""


def confirm_booking_prompt(desk: FrontDesk) -> str:
    chosen = desk.state.chosen_offer
    kind = desk.appointment_type()
    assert chosen is not None and kind is not None
    article = "an" if kind.name[:1].lower() in "aeiou" else "a"
    return prompts.CONFIRM_BOOKING.format(
        type=f"{article} {kind.name.lower()}", provider=chosen.provider, when=chosen.when
    )


def confirm_booking(desk: FrontDesk, u: Understanding, said: str) -> Step:
    state = desk.state
    if u.intent == YES:
        chosen = state.chosen_offer
        assert chosen is not None
        rescheduling = state.existing_appointment_id is not None
        try:
            desk.book()
        except SlotTaken:
            state.chosen_slot_id, state.hold_token = None, ""
            offered = {offer.slot_id for offer in state.offers}
            return offer(desk, preface=prompts.SLOT_TAKEN, exclude=offered)
        kind = desk.appointment_type()
        state.goal = "rescheduled" if rescheduling else "booked"
        template = prompts.RESCHEDULED if rescheduling else prompts.BOOKED
        done = template.format(
            when=chosen.when,
            provider=chosen.provider,
            instructions=kind.instructions if kind else "",
        )
        return Ask("anything_else", preface=f"{done} {prompts.CONFIRMATION_SENT}")
    desk.release_hold()
    if _has_day_preference(u):
        _take_day_preference(desk, u)
        return offer(desk)
    if u.intent in (NO, Intent.CORRECTION):
        return Ask("day", preface="No problem.")
    return Retry()


# --- an existing appointment ---------------------------------------------------------------


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
