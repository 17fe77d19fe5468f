"""Booking confirmations: queued in the booking's transaction, sent once, whatever the broker does.

The last test is the outage as deployed: a throwaway redis-server as the broker and a real
``celery worker`` process; Redis is stopped while a caller books, started again, and the relay
hands the confirmation to the worker, which sends exactly one e-mail. It runs in both CI
passes (it brings its own broker and worker).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core import mail
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone

from clinic import outbox
from clinic.demo import load_demo_calendar
from clinic.models import Appointment, AppointmentType, OutboxMessage
from clinic.outbox import OutboxError, outbox_relay
from clinic.selectors import open_slots
from clinic.services import appointment_book, appointment_cancel, slots_generate
from intake import scenario as scenarios
from intake import services
from intake.confirmations import confirmation_queue, confirmation_send
from intake.models import Call, Confirmation
from intake.tasks import send_confirmation
from intake.understanding.rules import RulesEngine
from tests.celery_broker import (
    celery_mode,
    celery_worker_process,
    queued,
    restart_redis,
    wait_for,
)
from tests.conftest import ThrowawayRedis
from tests.intake.conversation.runner import play


@pytest.fixture(autouse=True)
def broker_state_reset() -> Iterator[None]:
    outbox.broker_state.succeeded()
    yield
    outbox.broker_state.succeeded()


@pytest.fixture
def eager() -> Iterator[None]:
    with celery_mode(eager=True):
        yield


def book(email: str) -> Appointment:
    """A booking made the way the phone agent makes one: appointment and confirmation queued
    in one transaction."""
    load_demo_calendar()
    slots_generate(horizon_days=10)
    patient = services.patient_create(first_name="Jane", last_name="Smith", email=email)
    kind = AppointmentType.objects.get(name="Sick visit")
    slot = open_slots(appointment_type=kind, limit=1)[0]
    call = services.call_start(call_sid="CA" + "c" * 32, caller_number="+16175550142")
    with transaction.atomic():
        appointment = appointment_book(
            slot_id=slot.pk, appointment_type=kind, patient_id=patient.pk
        )
        services.call_update(call=call, patient=patient, appointment=appointment)
        confirmation_queue(appointment_id=appointment.pk, call_id=call.pk)
    return appointment


@pytest.mark.django_db(transaction=True)
def test_a_booking_is_confirmed_once_after_commit(eager: None) -> None:
    appointment = book("jane@example.com")

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["jane@example.com"]
    assert "Dr." in message.body and "booked" in message.body
    confirmation = Confirmation.objects.get()
    assert (confirmation.appointment_id, confirmation.status) == (appointment.pk, "sent")
    assert (confirmation.channel, confirmation.attempts) == ("email", 1)
    assert OutboxMessage.objects.get().args == [appointment.pk]  # an id, never the address


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_booking_leaves_no_confirmation_and_sends_nothing(eager: None) -> None:
    load_demo_calendar()
    slots_generate(horizon_days=10)
    kind = AppointmentType.objects.get(name="Sick visit")
    slot = open_slots(appointment_type=kind, limit=1)[0]

    with pytest.raises(RuntimeError), transaction.atomic():
        appointment = appointment_book(slot_id=slot.pk, appointment_type=kind)
        confirmation_queue(appointment_id=appointment.pk)
        raise RuntimeError("the turn failed after booking")

    assert not Appointment.objects.exists()
    assert not Confirmation.objects.exists()
    assert not OutboxMessage.objects.exists()
    assert mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_queuing_outside_the_booking_transaction_is_refused() -> None:
    load_demo_calendar()
    slots_generate(horizon_days=10)
    kind = AppointmentType.objects.get(name="Sick visit")
    slot = open_slots(appointment_type=kind, limit=1)[0]
    appointment = appointment_book(slot_id=slot.pk, appointment_type=kind)

    with pytest.raises(OutboxError):
        confirmation_queue(appointment_id=appointment.pk)
    assert not Confirmation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_message_dispatched_twice_sends_one_email(eager: None) -> None:
    appointment = book("jane@example.com")
    # The relay published it again: say the process died after publishing, before marking.
    OutboxMessage.objects.update(dispatched_at=None, available_at=timezone.now())

    assert outbox_relay().dispatched == 1
    send_confirmation.delay(appointment.pk)  # and once more, straight from the queue

    assert len(mail.outbox) == 1
    assert Confirmation.objects.get().attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_send_stays_pending_for_the_relay(eager: None) -> None:
    # SMTP refused (nothing listens on port 9): the booking stands, the confirmation waits.
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=9,
        EMAIL_TIMEOUT=1,
    ):
        appointment = book("jane@example.com")

    row = OutboxMessage.objects.get()
    assert (row.dispatched_at, row.last_error) == (None, "builtins.ConnectionRefusedError")
    assert Confirmation.objects.get().status == Confirmation.Status.PENDING

    OutboxMessage.objects.update(available_at=timezone.now())  # the back-off is over
    assert outbox_relay().dispatched == 1
    assert [message.to for message in mail.outbox] == [["jane@example.com"]]
    assert Confirmation.objects.get(appointment=appointment).status == Confirmation.Status.SENT


@pytest.mark.django_db(transaction=True)
def test_without_an_email_address_the_confirmation_is_skipped(eager: None) -> None:
    book("")
    confirmation = Confirmation.objects.get()
    assert confirmation.status == Confirmation.Status.SKIPPED
    assert mail.outbox == []


@pytest.mark.django_db
def test_a_cancelled_appointment_is_not_confirmed() -> None:
    load_demo_calendar()
    slots_generate(horizon_days=10)
    patient = services.patient_create(first_name="Jane", last_name="Smith", email="j@example.com")
    kind = AppointmentType.objects.get(name="Sick visit")
    slot = open_slots(appointment_type=kind, limit=1)[0]
    appointment = appointment_book(slot_id=slot.pk, appointment_type=kind, patient_id=patient.pk)
    appointment_cancel(appointment=appointment)

    assert confirmation_send(appointment_id=appointment.pk).status == Confirmation.Status.SKIPPED
    assert mail.outbox == []


@pytest.mark.needs_broker
@pytest.mark.django_db(transaction=True)
def test_the_task_emails_the_confirmation_once(celery_worker_if_broker: None) -> None:
    """The task on its own (a worker thread when REDIS_URL is set): a re-delivery sends none."""
    with celery_mode(eager=True):
        appointment = book("jane@example.com")
    Confirmation.objects.update(status=Confirmation.Status.PENDING, attempts=0)
    mail.outbox.clear()

    send_confirmation.delay(appointment.pk)
    wait_for(
        lambda: Confirmation.objects.filter(status=Confirmation.Status.SENT).exists(),
        30,
        "the confirmation task did not run",
    )
    send_confirmation.delay(appointment.pk)  # a re-delivery
    time.sleep(0.5)

    assert len(mail.outbox) == 1
    assert Confirmation.objects.get().attempts == 1


# --- the outage, as deployed ------------------------------------------------------------------


@pytest.fixture
def demo_clinic(transactional_db: None) -> Iterator[None]:
    load_demo_calendar()
    slots_generate(horizon_days=30)
    yield
    connections.close_all()


@pytest.mark.django_db(transaction=True)
async def test_broker_down_while_booking_then_back_one_confirmation_is_sent(
    demo_clinic: None, throwaway_redis: ThrowawayRedis, tmp_path: Path
) -> None:
    mail_dir, worker_log = tmp_path / "mail", tmp_path / "worker.log"
    mail_dir.mkdir()
    scenario = scenarios.load("new_patient_booked")
    try:
        with (
            celery_mode(eager=False, broker_url=throwaway_redis.url),
            celery_worker_process(throwaway_redis.url, mail_dir, worker_log),
        ):
            # Given the broker is down while a new patient books over the phone,
            throwaway_redis.stop()
            played = await asyncio.wait_for(play(scenario, RulesEngine()), timeout=120)

            # the call goes on and ends booked; the confirmation waits in the outbox.
            assert played.problems == [], "\n".join(played.agent_lines)
            call = await Call.objects.select_related("appointment").aget(pk=played.call.pk)
            assert call.appointment is not None
            confirmation = await Confirmation.objects.aget(appointment=call.appointment)
            assert confirmation.status == Confirmation.Status.PENDING
            row = await OutboxMessage.objects.aget()
            assert row.dispatched_at is None and row.attempts == 1

            # When Redis is back and the relay runs,
            await sync_to_async(restart_redis)(throwaway_redis)
            await OutboxMessage.objects.aupdate(available_at=timezone.now())
            report = await sync_to_async(outbox_relay)()
            assert report.dispatched == 1

            # then the worker sends exactly one e-mail,
            await asyncio.to_thread(
                wait_for,
                lambda: len(list(mail_dir.iterdir())) == 1,
                90,
                "the worker sent no confirmation",
            )
            # and a second publish of the same message (a relay that died before marking it)
            # is consumed without sending another.
            await OutboxMessage.objects.aupdate(dispatched_at=None, available_at=timezone.now())
            assert (await sync_to_async(outbox_relay)()).dispatched == 1
            await asyncio.to_thread(
                wait_for,
                lambda: queued(throwaway_redis.url) == 0,
                60,
                "the worker did not consume the second message",
            )
        sent = list(mail_dir.iterdir())
        assert len(sent) == 1
        assert "jane.smith@example.com" in sent[0].read_text()
        confirmation = await Confirmation.objects.aget()
        assert (confirmation.status, confirmation.attempts) == ("sent", 1)
    except AssertionError:
        print(worker_log.read_text(errors="replace")[-4000:])  # noqa: T201 - shown on failure
        raise
    finally:
        await sync_to_async(connections.close_all)()
