"""The writes the conversation and voice layers rely on: idempotent, ordered, PHI-safe."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinic.models import ScheduleConflict, Slot
from clinic.services import appointment_book, slots_generate
from clinic.signals import schedule_conflict_opened
from intake import selectors, services
from intake.models import Call, FollowUp, ImmutableRecordError, PhiAccess, Turn
from tests.clinic.factories import (
    AppointmentTypeFactory,
    ProviderFactory,
    RuleFactory,
    TimeOffFactory,
)
from tests.factories import CallFactory, FollowUpFactory, PatientFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


# --- Calls -----------------------------------------------------------------------------------


def test_call_start_makes_one_call_per_call_sid() -> None:
    first = services.call_start(call_sid="CA" + "1" * 32, caller_number="+16175550167")
    again = services.call_start(call_sid="CA" + "1" * 32, caller_number="+19995550000")

    assert again.pk == first.pk
    assert Call.objects.count() == 1
    assert Call.objects.get().caller_number == "+16175550167"
    assert Call.objects.get().outcome == Call.Outcome.IN_PROGRESS


def test_call_finish_records_duration_and_keeps_the_first_outcome() -> None:
    started = timezone.now() - datetime.timedelta(minutes=3, seconds=5)
    call = services.call_start(call_sid="CA" + "2" * 32, started_at=started)

    finished = services.call_finish(
        call=call, outcome=Call.Outcome.BOOKED, ended_at=started + datetime.timedelta(seconds=185)
    )
    # Twilio's status callback reports the hang-up afterwards.
    services.call_finish(call=call, outcome=Call.Outcome.ABANDONED)

    call.refresh_from_db()
    assert finished.duration_seconds == 185
    assert call.outcome == Call.Outcome.BOOKED
    assert call.duration_seconds == 185


def test_call_finish_refuses_in_progress_and_unknown_outcomes() -> None:
    call = CallFactory.create()
    for outcome in ("in_progress", "exploded"):
        with pytest.raises(ValueError):
            services.call_finish(call=call, outcome=outcome)


def test_call_update_persists_state_and_phase_for_another_process() -> None:
    call = CallFactory.create()
    patient = PatientFactory.create()

    services.call_update(call=call, phase="insurance", state={"reprompts": 1}, patient=patient)

    fresh = Call.objects.get(pk=call.pk)
    assert (fresh.phase, fresh.state, fresh.patient) == ("insurance", {"reprompts": 1}, patient)


# --- Turns -----------------------------------------------------------------------------------


def test_turns_are_numbered_in_order_with_their_timings() -> None:
    call = CallFactory.create()
    services.turn_record(call=call, speaker="agent", text="Hello.", tts_first_byte_ms=120.4)
    services.turn_record(
        call=call,
        speaker="caller",
        text="I need an appointment.",
        stt_final_ms=230,
        understanding_ms=12,
    )

    turns = list(selectors.call_transcript(call))
    assert [(t.sequence, t.speaker, t.text) for t in turns] == [
        (1, "agent", "Hello."),
        (2, "caller", "I need an appointment."),
    ]
    assert turns[0].tts_first_byte_ms == 120
    assert (turns[1].stt_final_ms, turns[1].understanding_ms) == (230, 12)


def test_replaying_a_turn_with_its_sequence_does_not_duplicate_it() -> None:
    call = CallFactory.create()
    first = services.turn_record(call=call, speaker="caller", text="Yes.", sequence=4)
    again = services.turn_record(call=call, speaker="caller", text="Yes.", sequence=4)

    assert again.pk == first.pk
    assert call.turns.count() == 1


def test_the_database_refuses_two_turns_at_one_position() -> None:
    call = CallFactory.create()
    services.turn_record(call=call, speaker="caller", text="Yes.", sequence=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Turn.objects.create(call=call, speaker="agent", text="No.", sequence=1)


def test_turn_timings_known_later_are_added() -> None:
    call = CallFactory.create()
    turn = services.turn_record(call=call, speaker="agent", text="Which day suits you?")

    services.turn_update_timings(turn=turn, response_latency_ms=640, interrupted=True)

    turn.refresh_from_db()
    assert (turn.response_latency_ms, turn.interrupted) == (640, True)


# --- Follow-ups ------------------------------------------------------------------------------


def test_followup_priority_and_due_default_by_reason() -> None:
    call = CallFactory.create(patient=PatientFactory.create())
    before = timezone.now()

    urgent = services.followup_open(reason="emergency", call=call, summary="chest pain")

    assert urgent.priority == FollowUp.Priority.URGENT
    assert urgent.patient == call.patient
    assert urgent.due is not None
    assert before + services.FOLLOWUP_DUE_AFTER[FollowUp.Priority.URGENT] <= urgent.due
    assert urgent.due <= timezone.now() + services.FOLLOWUP_DUE_AFTER[FollowUp.Priority.URGENT]


def test_one_open_followup_per_call_and_reason() -> None:
    call = CallFactory.create()
    user = StaffUserFactory.create()

    first = services.followup_open(reason="callback_requested", call=call)
    retried = services.followup_open(reason="callback_requested", call=call)
    other_reason = services.followup_open(reason="no_slots", call=call)
    services.followup_mark_done(followup=first, by=user)
    after_done = services.followup_open(reason="callback_requested", call=call)

    assert retried.pk == first.pk
    assert other_reason.pk != first.pk
    assert after_done.pk not in {first.pk, other_reason.pk}


def test_assign_and_mark_done_record_who_and_when() -> None:
    followup = FollowUpFactory.create()
    user = StaffUserFactory.create()

    services.followup_assign(followup=followup, assignee=user)
    assert (followup.assignee, followup.status) == (user, FollowUp.Status.IN_PROGRESS)

    services.followup_mark_done(followup=followup, by=user)
    followup.refresh_from_db()
    assert followup.status == FollowUp.Status.DONE
    assert followup.closed_by == user and followup.closed_at is not None
    with pytest.raises(ValueError):
        services.followup_assign(followup=followup, assignee=user)


def test_queue_puts_overdue_first_then_priority() -> None:
    now = timezone.now()
    hour = datetime.timedelta(hours=1)
    low_overdue = FollowUpFactory.create(priority=FollowUp.Priority.LOW, due=now - hour)
    urgent = FollowUpFactory.create(priority=FollowUp.Priority.URGENT, due=now + hour)
    normal = FollowUpFactory.create(priority=FollowUp.Priority.NORMAL, due=now + hour)
    normal_no_due = FollowUpFactory.create(priority=FollowUp.Priority.NORMAL, due=None)
    high_overdue = FollowUpFactory.create(priority=FollowUp.Priority.HIGH, due=now - 2 * hour)
    done_overdue = FollowUpFactory.create(
        priority=FollowUp.Priority.URGENT,
        due=now - hour,
        status=FollowUp.Status.DONE,
        closed_at=now,
    )

    assert list(selectors.followups_queue(now=now)) == [
        high_overdue,
        low_overdue,
        urgent,
        normal,
        normal_no_due,
        done_overdue,
    ]


# --- Schedule conflicts from the calendar ----------------------------------------------------


def _booked_appointment_with_call() -> tuple[Call, Slot]:
    provider = ProviderFactory.create()
    visit = AppointmentTypeFactory.create(providers=[provider])
    RuleFactory.create(provider=provider, weekdays=[0, 1, 2, 3, 4, 5, 6])
    slots_generate(horizon_days=7)
    slot = Slot.objects.filter(provider=provider, status=Slot.Status.FREE).order_by("start")[3]
    patient = PatientFactory.create()
    appointment = appointment_book(
        slot_id=slot.pk, appointment_type=visit, patient_id=patient.pk, reason="flu symptoms"
    )
    call = CallFactory.create(patient=patient, appointment=appointment)
    return call, slot


def test_time_off_over_a_booking_opens_one_schedule_conflict_followup(
    django_capture_on_commit_callbacks: pytest.FixtureRequest,
) -> None:
    call, slot = _booked_appointment_with_call()
    TimeOffFactory.create(
        provider=slot.provider,
        start=slot.start - datetime.timedelta(hours=1),
        end=slot.end + datetime.timedelta(hours=1),
    )

    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        slots_generate(horizon_days=7)
    conflict = ScheduleConflict.objects.get()
    # A second delivery of the signal changes nothing.
    schedule_conflict_opened.send(sender=ScheduleConflict, conflict=conflict)

    followup = FollowUp.objects.get()
    assert followup.reason == FollowUp.Reason.SCHEDULE_CONFLICT
    assert followup.schedule_conflict == conflict
    assert followup.patient == call.patient
    assert followup.call == call
    assert followup.priority == FollowUp.Priority.HIGH
    assert followup.due is not None and followup.due <= slot.start


# --- PHI access records ----------------------------------------------------------------------


def test_phi_access_records_names_of_fields_and_refuses_changes() -> None:
    user = StaffUserFactory.create()
    patient = PatientFactory.create()

    access = services.phi_access_record(
        user=user, record=patient, fields=("first_name", "phone"), purpose="view_patient"
    )

    assert access.content_type == ContentType.objects.get_for_model(patient)
    assert (access.object_id, access.fields) == (patient.pk, ["first_name", "phone"])
    access.purpose = PhiAccess.Purpose.VIEW_CALL
    with pytest.raises(ImmutableRecordError):
        access.save()
    with pytest.raises(ImmutableRecordError):
        access.delete()
    with pytest.raises(ImmutableRecordError):
        PhiAccess.objects.filter(pk=access.pk).update(purpose="view_call")
    with pytest.raises(ImmutableRecordError):
        PhiAccess.objects.all().delete()
    assert PhiAccess.objects.get().purpose == PhiAccess.Purpose.VIEW_PATIENT


def test_staff_who_accessed_phi_cannot_be_deleted() -> None:
    from django.db.models import ProtectedError

    user = StaffUserFactory.create()
    services.phi_access_record(
        user=user, record=PatientFactory.create(), fields=("phone",), purpose="view_patient"
    )
    with pytest.raises(ProtectedError):
        user.delete()


def test_access_log_has_only_a_view_permission() -> None:
    from django.contrib.auth.models import Permission

    codenames = set(
        Permission.objects.filter(content_type__model="phiaccess").values_list(
            "codename", flat=True
        )
    )
    assert codenames == {"view_phiaccess"}


def test_patient_with_a_future_birth_date_is_refused() -> None:
    with pytest.raises(ValueError):
        services.patient_create(
            first_name="Ada",
            last_name="Lovelace",
            date_of_birth=timezone.localdate() + datetime.timedelta(days=1),
        )


def test_patient_update_refuses_fields_that_are_not_editable() -> None:
    patient = PatientFactory.create()
    with pytest.raises(ValueError, match="phone_index"):
        services.patient_update(patient=patient, changes={"phone_index": "x"})
