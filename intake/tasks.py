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
def send_confirmation(call_id: int) -> str:
    """Confirm the appointment booked on a call. Idempotent: one message per appointment."""
    from intake.confirmations import confirmation_for_call

    confirmation = confirmation_for_call(call_id=call_id)
    return confirmation.status if confirmation else "no appointment"
