"""Holds, booking, cancelling and rescheduling; the database decides a race."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, connections
from django.utils import timezone

from clinic.models import Appointment, Slot
from clinic.selectors import open_slots
from clinic.services import (
    InvalidTransition,
    SlotTaken,
    SlotUnavailable,
    TypeNotOffered,
    appointment_book,
    appointment_cancel,
    appointment_reschedule,
    appointment_set_outcome,
    holds_release_expired,
    slot_hold,
    slot_release,
)
from tests.clinic.conftest import SmallClinic
from tests.clinic.factories import AppointmentTypeFactory, ProviderFactory


def first_free(clinic: SmallClinic) -> Slot:
    return open_slots(appointment_type=clinic.visit, limit=1)[0]


@pytest.mark.django_db
class TestHolds:
    def test_a_held_slot_is_not_offered_or_bookable_by_others(self, small_clinic) -> None:
        slot = first_free(small_clinic)
        token = slot_hold(slot_id=slot.pk, ttl_seconds=60)
        assert slot.pk not in [s.pk for s in open_slots(limit=5)]
        with pytest.raises(SlotUnavailable):
            slot_hold(slot_id=slot.pk)
        with pytest.raises(SlotTaken):
            appointment_book(slot_id=slot.pk, appointment_type=small_clinic.visit)
        booked = appointment_book(
            slot_id=slot.pk, appointment_type=small_clinic.visit, hold_token=token
        )
        assert booked.slot_id == slot.pk

    def test_an_expired_hold_frees_itself(self, small_clinic) -> None:
        slot = first_free(small_clinic)
        slot_hold(slot_id=slot.pk, ttl_seconds=60)
        Slot.objects.filter(pk=slot.pk).update(held_until=timezone.now() - timedelta(seconds=1))
        assert open_slots(limit=1)[0].pk == slot.pk  # offered again at once
        appointment_book(slot_id=slot.pk, appointment_type=small_clinic.visit)

    def test_expired_holds_are_tidied_up_but_live_ones_stay(self, small_clinic) -> None:
        expired, live = open_slots(limit=2)
        slot_hold(slot_id=expired.pk, ttl_seconds=60)
        slot_hold(slot_id=live.pk, ttl_seconds=600)
        assert holds_release_expired(now=timezone.now() + timedelta(seconds=120)) == 1
        assert Slot.objects.get(pk=expired.pk).status == Slot.Status.FREE
        assert Slot.objects.get(pk=live.pk).status == Slot.Status.HELD

    def test_release_gives_back_only_our_own_hold(self, small_clinic) -> None:
        slot = first_free(small_clinic)
        token = slot_hold(slot_id=slot.pk)
        assert slot_release(slot_id=slot.pk, hold_token="someone-else") is False
        assert slot_release(slot_id=slot.pk, hold_token=token) is True
        assert Slot.objects.get(pk=slot.pk).status == Slot.Status.FREE


@pytest.mark.django_db
class TestAppointments:
    def test_booking_marks_the_slot_and_encrypts_the_reason(self, small_clinic) -> None:
        slot = first_free(small_clinic)
        appointment = appointment_book(
            slot_id=slot.pk, appointment_type=small_clinic.visit, reason="sore throat for 3 days"
        )
        assert Slot.objects.get(pk=slot.pk).status == Slot.Status.BOOKED
        with connection.cursor() as cursor:
            cursor.execute("SELECT reason FROM clinic_appointment WHERE id = %s", [appointment.pk])
            stored = cursor.fetchone()[0]
        assert "throat" not in stored
        assert Appointment.objects.get(pk=appointment.pk).reason == "sore throat for 3 days"

    def test_a_booked_slot_cannot_be_booked_again(self, small_clinic) -> None:
        slot = first_free(small_clinic)
        appointment_book(slot_id=slot.pk, appointment_type=small_clinic.visit)
        with pytest.raises(SlotTaken, match=f"slot {slot.pk} is no longer available"):
            appointment_book(slot_id=slot.pk, appointment_type=small_clinic.visit)

    def test_a_type_the_provider_does_not_offer_is_refused(self, small_clinic) -> None:
        other = AppointmentTypeFactory.create(providers=[ProviderFactory.create()])
        with pytest.raises(TypeNotOffered):
            appointment_book(slot_id=first_free(small_clinic).pk, appointment_type=other)

    def test_cancel_frees_the_slot_and_is_idempotent(self, small_clinic) -> None:
        slot = first_free(small_clinic)
        appointment = appointment_book(slot_id=slot.pk, appointment_type=small_clinic.visit)
        appointment_cancel(appointment=appointment)
        again = appointment_cancel(appointment=appointment)
        assert again.status == Appointment.Status.CANCELLED and again.cancelled_at
        assert Slot.objects.get(pk=slot.pk).status == Slot.Status.FREE
        rebooked = appointment_book(slot_id=slot.pk, appointment_type=small_clinic.visit)
        assert rebooked.pk != appointment.pk

    def test_reschedule_moves_the_booking_in_one_step(self, small_clinic) -> None:
        first, second = open_slots(appointment_type=small_clinic.visit, limit=2)
        original = appointment_book(
            slot_id=first.pk, appointment_type=small_clinic.visit, reason="follow up"
        )
        moved = appointment_reschedule(appointment=original, new_slot_id=second.pk)
        original.refresh_from_db()
        assert original.status == Appointment.Status.CANCELLED
        assert original.rescheduled_to == moved
        assert (moved.slot_id, moved.reason, moved.status) == (second.pk, "follow up", "booked")
        assert Slot.objects.get(pk=first.pk).status == Slot.Status.FREE

    def test_reschedule_to_a_taken_slot_leaves_the_original_untouched(self, small_clinic) -> None:
        first, second = open_slots(appointment_type=small_clinic.visit, limit=2)
        original = appointment_book(slot_id=first.pk, appointment_type=small_clinic.visit)
        appointment_book(slot_id=second.pk, appointment_type=small_clinic.visit)
        with pytest.raises(SlotTaken):
            appointment_reschedule(appointment=original, new_slot_id=second.pk)
        original.refresh_from_db()
        assert original.status == Appointment.Status.BOOKED

    def test_outcomes_only_follow_a_booking(self, small_clinic) -> None:
        appointment = appointment_book(
            slot_id=first_free(small_clinic).pk, appointment_type=small_clinic.visit
        )
        appointment_set_outcome(appointment=appointment, status=Appointment.Status.NOSHOW)
        with pytest.raises(InvalidTransition):
            appointment_set_outcome(appointment=appointment, status=Appointment.Status.FULFILLED)
        with pytest.raises(InvalidTransition):
            appointment_cancel(appointment=appointment)


def _book_in_thread(slot_id: int, type_id: int, barrier: threading.Barrier, results: list[str]):
    from clinic.models import AppointmentType

    try:
        visit = AppointmentType.objects.get(pk=type_id)
        barrier.wait(timeout=10)
        appointment_book(slot_id=slot_id, appointment_type=visit)
        results.append("booked")
    except SlotTaken:
        results.append("taken")
    finally:
        connections.close_all()


def _book_in_process(slot_id: int, type_id: int, start, queue) -> None:
    # A forked child must not reuse the parent's database connection.
    for conn in connections.all(initialized_only=True):
        conn.inc_thread_sharing()
        conn.connection = None
    close_old_connections()
    results: list[str] = []
    barrier = threading.Barrier(1)
    start.wait(timeout=10)
    _book_in_thread(slot_id, type_id, barrier, results)
    queue.put(results[0])


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_in_threads_have_exactly_one_winner(small_clinic) -> None:
    slot = first_free(small_clinic)
    contenders = 8
    barrier = threading.Barrier(contenders)
    results: list[str] = []
    threads = [
        threading.Thread(
            target=_book_in_thread, args=(slot.pk, small_clinic.visit.pk, barrier, results)
        )
        for _ in range(contenders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == ["booked"] + ["taken"] * (contenders - 1)
    assert Appointment.objects.filter(slot=slot).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_in_processes_have_exactly_one_winner(small_clinic) -> None:
    slot = first_free(small_clinic)
    context = multiprocessing.get_context("fork")
    start = context.Event()
    queue = context.Queue()
    connections.close_all()
    workers = [
        context.Process(
            target=_book_in_process, args=(slot.pk, small_clinic.visit.pk, start, queue)
        )
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    results = sorted(queue.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    assert results == ["booked", "taken", "taken", "taken"]
    assert Appointment.objects.filter(slot=slot).count() == 1
