"""Background jobs of intake. Tasks take no PHI and are safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from intake import services


@shared_task(
    name="intake.purge_old_transcripts",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def purge_old_transcripts() -> dict[str, int]:
    """Retention: empty transcript text older than ``TRANSCRIPT_RETENTION_DAYS``.

    Call metadata and outcomes stay. Idempotent (purged rows are skipped), so a re-delivery
    after a worker died mid-way only finishes the job. Returns counts, never text.
    """
    result = services.transcripts_purge(older_than_days=settings.TRANSCRIPT_RETENTION_DAYS)
    return {"turns": result.turns, "calls": result.calls}


@shared_task(
    name="intake.send_confirmation",
    autoretry_for=(OperationalError, OSError),
    retry_backoff=True,
    max_retries=5,
)
def send_confirmation(appointment_id: int) -> str:
    """Confirm one booking. Queued through the outbox (``intake.confirmations``), which may
    deliver it twice; the task locks the Confirmation row and sends only while it is pending,
    so the patient gets one message. Returns the confirmation's status, never its content."""
    from intake.confirmations import confirmation_send

    return str(confirmation_send(appointment_id=appointment_id).status)
