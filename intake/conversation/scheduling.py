"""The visit: its reason, provider and day, the open slots offered, and the booking itself.

Step functions of :data:`intake.conversation.questions.QUESTIONS` for the reason and
scheduling phases. Slots offered are real open slots found through the :class:`FrontDesk`.
"""

from __future__ import annotations

from clinic.services import SlotTaken
from intake.conversation import prompts
from intake.conversation.desk import FOLLOWUP, OUTCOME, FrontDesk
from intake.conversation.replies import NO, YES
from intake.conversation.speakable import spoken_list
from intake.conversation.steps import Ask, End, Retry, Step
from intake.understanding.types import ANY_PROVIDER, Intent, Understanding


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
