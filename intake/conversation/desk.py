"""The clinic as the conversation sees it: patients, the calendar and follow-ups.

A thin, synchronous facade over :mod:`intake.services`, :mod:`intake.selectors` and the
calendar's services, so that the questions read as the front desk would work: "find the
patient", "offer times", "book it", "leave a note for staff". Every slot offered comes from
``clinic.selectors.open_slots``; nothing here invents one.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from clinic import selectors as calendar
from clinic import services as scheduling
from clinic.hours import front_desk_open
from clinic.models import Appointment, AppointmentType, Provider, Slot
from intake import confirmations, selectors, services
from intake.conversation.speakable import spoken_day
from intake.conversation.state import ConversationState, Offer
from intake.models import Call, Coverage, FollowUp, Patient
from intake.understanding.types import ANY_PROVIDER, SELF_PAY, Address


@dataclass(frozen=True)
class SlotSearch:
    """What a search for times found, and whether the caller's preferences had to go."""

    slots: list[Slot]
    relaxed: bool


# How many of the earliest open slots are considered when choosing the few to offer.
SEARCH_DEPTH = 40
# Offered times are at least this far apart, so that "the first or the second" is a choice.
MIN_GAP = dt.timedelta(hours=2)


def spread(slots: list[Slot], count: int) -> list[Slot]:
    """The earliest slot, then the next ones at least MIN_GAP after the previous pick."""
    chosen: list[Slot] = []
    for slot in slots:
        if not chosen or slot.start - chosen[-1].start >= MIN_GAP:
            chosen.append(slot)
        if len(chosen) == count:
            break
    return chosen


class FrontDesk:
    """Database work for one call. Methods are short and named for what staff would do."""

    def __init__(self, call: Call, state: ConversationState) -> None:
        self.call = call
        self.state = state

    # --- who is calling -------------------------------------------------------------------

    def patients_for_caller_number(self) -> list[Patient]:
        if not self.call.caller_number:
            return []
        return list(selectors.patient_find_by_phone(self.call.caller_number)[:5])

    def verify_by_caller_number(self, date_of_birth: dt.date) -> Patient | None:
        """The patient on this number born on that date (several may share a number)."""
        for patient in self.patients_for_caller_number():
            if patient.date_of_birth == date_of_birth:
                return patient
        return None

    def find_by_name_and_dob(self, last_name: str, date_of_birth: dt.date) -> Patient | None:
        return selectors.patient_find_by_name_and_dob(last_name, date_of_birth).first()

    def patient(self) -> Patient | None:
        if self.state.patient_id is None:
            return None
        return Patient.objects.filter(pk=self.state.patient_id).first()

    def bind_patient(self, patient: Patient) -> None:
        self.state.patient_id = patient.pk
        services.call_update(call=self.call, patient=patient)

    def register_new_patient(self) -> Patient:
        """Create the patient from what the caller gave (once name and birth date are known)."""
        state = self.state
        address = Address(**state.address).one_line() if state.address else ""
        patient = services.patient_create(
            first_name=state.first_name,
            last_name=state.last_name,
            date_of_birth=dt.date.fromisoformat(state.date_of_birth)
            if state.date_of_birth
            else None,
            phone=state.phone or self.call.caller_number,
            email=state.email,
            address=address,
        )
        self.bind_patient(patient)
        return patient

    def save_contact_details(self) -> None:
        """Write phone, e-mail and address gathered after the patient was created."""
        patient = self.patient()
        if patient is None:
            return
        changes: dict[str, object] = {}
        if self.state.phone:
            changes["phone"] = self.state.phone
        if self.state.email:
            changes["email"] = self.state.email
        if self.state.address:
            changes["address"] = Address(**self.state.address).one_line()
        if changes:
            services.patient_update(patient=patient, changes=changes)

    def coverage_on_file(self) -> Coverage | None:
        patient = self.patient()
        return patient.coverages.order_by("-created_at").first() if patient else None

    def save_coverage(self) -> None:
        patient = self.patient()
        state = self.state
        if patient is None or not state.carrier or state.carrier == SELF_PAY:
            return
        services.coverage_create(patient=patient, carrier=state.carrier, member_id=state.member_id)

    # --- the calendar ---------------------------------------------------------------------

    @functools.cached_property
    def _provider_names(self) -> list[str]:
        # A FrontDesk lives for one turn; the context, the prompt and the hints all ask.
        return list(Provider.objects.filter(active=True).values_list("name", flat=True))

    def provider_names(self) -> list[str]:
        return self._provider_names

    def choose_appointment_type(self) -> AppointmentType | None:
        """New patients get a new-patient visit; others the type whose keywords fit best."""
        types = calendar.appointment_types_for(new_patient=bool(self.state.new_patient))
        if not types:
            return None
        if self.state.new_patient:
            for kind in types:
                if kind.kind == AppointmentType.Kind.NEW_PATIENT:
                    return kind
        reason = self.state.reason.lower()

        def score(kind: AppointmentType) -> int:
            words = [word.strip() for word in kind.keywords.split(",") if word.strip()]
            return sum(1 for word in words if word.lower() in reason)

        best = max(types, key=score)
        if score(best) > 0:
            return best
        general = [kind for kind in types if kind.kind == AppointmentType.Kind.ANY]
        return (general or types)[0]

    def appointment_type(self) -> AppointmentType | None:
        if self.state.appointment_type_id is None:
            return None
        return AppointmentType.objects.filter(pk=self.state.appointment_type_id).first()

    def _preferred_provider(self) -> Provider | None:
        if not self.state.provider or self.state.provider == ANY_PROVIDER:
            return None
        return Provider.objects.filter(name=self.state.provider, active=True).first()

    def search_slots(self, *, exclude: set[int] | None = None, count: int = 3) -> SlotSearch:
        """Earliest open times that fit the caller's preferences, relaxing them if none do."""
        state = self.state
        exclude = exclude or set()
        kind = self.appointment_type()
        not_before = (
            dt.datetime.combine(
                dt.date.fromisoformat(state.not_before),
                dt.time.min,
                timezone.get_current_timezone(),
            )
            if state.not_before
            else None
        )
        new_patient = bool(state.new_patient)
        wanted = calendar.open_slots(
            appointment_type=kind,
            provider=self._preferred_provider(),
            weekdays=state.weekdays or None,
            part_of_day=state.part_of_day or None,
            start=not_before,
            new_patient=new_patient,
            limit=SEARCH_DEPTH + len(exclude),
        )
        slots = spread([slot for slot in wanted if slot.pk not in exclude], count)
        if slots:
            return SlotSearch(slots, relaxed=False)
        fallback = calendar.open_slots(
            appointment_type=kind, new_patient=new_patient, limit=SEARCH_DEPTH + len(exclude)
        )
        return SlotSearch(spread([s for s in fallback if s.pk not in exclude], count), True)

    def offers_for(self, slots: list[Slot]) -> list[Offer]:
        offers = []
        for slot in slots:
            local = timezone.localtime(slot.start)
            offers.append(
                Offer(
                    slot_id=slot.pk,
                    label=f"{spoken_day(slot.start)} with {slot.provider.name}",
                    weekday=local.weekday(),
                    hour=local.hour,
                    minute=local.minute,
                    provider=slot.provider.name,
                    date=local.date().isoformat(),
                )
            )
        return offers

    def hold(self, slot_id: int) -> bool:
        try:
            self.state.hold_token = scheduling.slot_hold(slot_id=slot_id)
        except scheduling.SlotUnavailable:
            return False
        self.state.chosen_slot_id = slot_id
        return True

    def release_hold(self) -> None:
        state = self.state
        if state.chosen_slot_id and state.hold_token:
            scheduling.slot_release(slot_id=state.chosen_slot_id, hold_token=state.hold_token)
        state.chosen_slot_id, state.hold_token = None, ""

    def book(self) -> Appointment:
        """Book the held slot (raises ``SlotTaken`` if the hold was lost to someone else).

        The appointment, the call's link to it and its queued confirmation (a pending row and
        an outbox message) commit together or not at all, so a booking is never without its
        confirmation, whether or not the broker is up.
        """
        state = self.state
        kind = self.appointment_type()
        assert kind is not None and state.chosen_slot_id is not None
        with transaction.atomic():
            appointment = self._book(kind)
            services.call_update(call=self.call, appointment=appointment)
            confirmations.confirmation_queue(appointment_id=appointment.pk, call_id=self.call.pk)
        state.appointment_id = appointment.pk
        state.hold_token = ""
        return appointment

    def _book(self, kind: AppointmentType) -> Appointment:
        state = self.state
        assert state.chosen_slot_id is not None
        if state.existing_appointment_id:
            existing = Appointment.objects.get(pk=state.existing_appointment_id)
            appointment = scheduling.appointment_reschedule(
                appointment=existing, new_slot_id=state.chosen_slot_id, hold_token=state.hold_token
            )
        else:
            appointment = scheduling.appointment_book(
                slot_id=state.chosen_slot_id,
                appointment_type=kind,
                patient_id=state.patient_id,
                reason=state.reason,
                source=Appointment.Source.PHONE,
                hold_token=state.hold_token,
            )
        return appointment

    def upcoming_appointment(self) -> Appointment | None:
        if self.state.patient_id is None:
            return None
        return (
            Appointment.objects.filter(
                patient_id=self.state.patient_id,
                status=Appointment.Status.BOOKED,
                slot__start__gt=timezone.now(),
            )
            .select_related("slot__provider", "appointment_type")
            .order_by("slot__start")
            .first()
        )

    def cancel_existing(self) -> Appointment:
        assert self.state.existing_appointment_id is not None
        existing = Appointment.objects.get(pk=self.state.existing_appointment_id)
        cancelled = scheduling.appointment_cancel(appointment=existing)
        services.call_update(call=self.call, appointment=cancelled)
        return cancelled

    # --- staff and the line ---------------------------------------------------------------

    def front_desk_open(self) -> bool:
        return front_desk_open()

    def follow_up(self, reason: str, summary: str, priority: int | None = None) -> FollowUp:
        return services.followup_open(
            reason=reason,
            call=self.call,
            patient=self.patient(),
            priority=priority,
            summary=summary,
        )

    def finish(self, outcome: str) -> None:
        self.state.finished = True
        services.call_finish(call=self.call, outcome=outcome, phase=self.call.phase)


FOLLOWUP = FollowUp.Reason
OUTCOME = Call.Outcome
