"""Booking confirmations: queued after commit, sent once, by a real worker when Redis is set."""

from __future__ import annotations

import time

import pytest
from django.core import mail

from clinic.demo import load_demo_calendar
from clinic.models import AppointmentType
from clinic.selectors import open_slots
from clinic.services import appointment_book, slots_generate
from intake import services
from intake.confirmations import confirmation_for_call
from intake.models import Call, Confirmation
from intake.tasks import send_confirmation


def booked_call(email: str) -> Call:
    load_demo_calendar()
    slots_generate(horizon_days=10)
    patient = services.patient_create(first_name="Jane", last_name="Smith", email=email)
    kind = AppointmentType.objects.get(name="Sick visit")
    slot = open_slots(appointment_type=kind, limit=1)[0]
    appointment = appointment_book(slot_id=slot.pk, appointment_type=kind, patient_id=patient.pk)
    call = services.call_start(call_sid="CA" + "c" * 32, caller_number="+16175550142")
    return services.call_update(call=call, patient=patient, appointment=appointment)


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the confirmation task did not run"
        time.sleep(0.1)


@pytest.mark.needs_broker
@pytest.mark.django_db(transaction=True)
def test_the_task_emails_the_confirmation_once(celery_worker_if_broker: None) -> None:
    call = booked_call("jane@example.com")

    send_confirmation.delay(call.pk)
    wait_for(lambda: Confirmation.objects.filter(status=Confirmation.Status.SENT).exists())
    send_confirmation.delay(call.pk)  # a re-delivery
    time.sleep(0.5)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["jane@example.com"]
    assert "Dr." in message.body and "booked" in message.body
    confirmation = Confirmation.objects.get()
    assert (confirmation.channel, confirmation.attempts) == ("email", 1)


@pytest.mark.django_db
def test_without_an_email_address_the_confirmation_is_skipped() -> None:
    call = booked_call("")
    confirmation = confirmation_for_call(call_id=call.pk)
    assert confirmation is not None
    assert confirmation.status == Confirmation.Status.SKIPPED
    assert mail.outbox == []


@pytest.mark.django_db
def test_a_call_without_an_appointment_sends_nothing() -> None:
    call = services.call_start(call_sid="CA" + "d" * 32)
    assert confirmation_for_call(call_id=call.pk) is None
