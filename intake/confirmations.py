"""Booking confirmations: queued in the booking's transaction, sent once by a Celery task.

The booking writes a pending :class:`~intake.models.Confirmation` and an outbox message
(:mod:`clinic.outbox`) in its own transaction, so a confirmation exists exactly when the
booking does, whether or not the broker is up at that moment. The task takes only the
appointment's id, locks the Confirmation row and sends only while it is pending: the outbox
may publish a message twice (a crash between publish and marking it sent), the customer gets
one e-mail. E-mail goes through Django's mail framework (``EMAIL_URL``: SMTP in production,
a file outbox in development).

Not covered, by nature: a crash after the mail server accepted the message and before the
``sent`` mark commits sends again on the retry; SMTP offers no way to ask "did you get it?".
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from clinic.logs import get_logger
from clinic.models import Appointment
from clinic.outbox import outbox_enqueue
from intake.conversation.speakable import spoken_day
from intake.models import Confirmation

log = get_logger(__name__)

# The Celery task (intake.tasks.send_confirmation), by name: the outbox stores names.
SEND_CONFIRMATION = "intake.send_confirmation"


def confirmation_text(appointment: Appointment) -> str:
    slot = appointment.slot
    lines = [
        f"Your appointment at {settings.CLINIC_NAME} is booked:",
        f"{spoken_day(slot.start)} with {slot.provider.name} ({appointment.appointment_type}).",
    ]
    if appointment.appointment_type.instructions:
        lines.append(appointment.appointment_type.instructions)
    lines.append("To change or cancel it, call us back.")
    return "\n".join(lines)


def confirmation_queue(*, appointment_id: int, call_id: int | None = None) -> Confirmation:
    """Queue the confirmation of a booking, inside the booking's transaction.

    Writes the pending Confirmation and the outbox message for the task together with the
    appointment: all three commit or none do. Raises
    :class:`~clinic.outbox.OutboxError` when called outside a transaction. Queuing the same
    appointment twice keeps one of each.
    """
    outbox_enqueue(
        task=SEND_CONFIRMATION,
        args=[appointment_id],
        dedupe_key=f"confirmation:{appointment_id}",
    )
    confirmation, _ = Confirmation.objects.get_or_create(
        appointment_id=appointment_id, defaults={"call_id": call_id}
    )
    return confirmation


def confirmation_send(*, appointment_id: int, call_id: int | None = None) -> Confirmation:
    """Send the confirmation for one appointment unless it has been sent already."""
    with transaction.atomic():
        confirmation, _ = Confirmation.objects.select_for_update().get_or_create(
            appointment_id=appointment_id, defaults={"call_id": call_id}
        )
        if confirmation.status != Confirmation.Status.PENDING:
            return confirmation
        appointment = Appointment.objects.select_related(
            "slot__provider", "appointment_type", "patient"
        ).get(pk=appointment_id)
        confirmation.attempts += 1
        patient = appointment.patient
        email = getattr(patient, "email", "") if patient is not None else ""
        if appointment.status not in Appointment.ACTIVE_STATUSES:
            # Cancelled or moved before the task ran (a reschedule later in the same call):
            # confirming it would send the patient to the wrong time.
            confirmation.status = Confirmation.Status.SKIPPED
        elif email:
            send_mail(
                subject=f"Your appointment at {settings.CLINIC_NAME}",
                message=confirmation_text(appointment),
                from_email=None,
                recipient_list=[email],
            )
            confirmation.channel = Confirmation.Channel.EMAIL
            confirmation.status = Confirmation.Status.SENT
            confirmation.sent_at = timezone.now()
        else:
            confirmation.status = Confirmation.Status.SKIPPED
        confirmation.save()
    log.info(
        "confirmation_processed",
        appointment_id=appointment_id,
        channel=confirmation.channel,
        status=confirmation.status,
    )
    return confirmation
