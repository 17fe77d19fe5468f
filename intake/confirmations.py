"""Booking confirmations, sent after commit by a Celery task that takes only an id.

E-mail through Django's mail framework (``EMAIL_URL``: SMTP in production, a file outbox in
development). One :class:`~intake.models.Confirmation` row per appointment makes the send
idempotent: a task delivered twice sends once.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from clinic.logs import get_logger
from clinic.models import Appointment
from intake.conversation.speakable import spoken_day
from intake.models import Call, Confirmation

log = get_logger(__name__)


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
        if email:
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


def confirmation_for_call(*, call_id: int) -> Confirmation | None:
    call = Call.objects.filter(pk=call_id).only("appointment_id").first()
    if call is None or call.appointment_id is None:
        return None
    return confirmation_send(appointment_id=call.appointment_id, call_id=call_id)
