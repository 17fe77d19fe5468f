"""Background jobs of the phone line. No arguments, no PHI, safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from voice.heartbeat import sweep_once
from voice.tokens import stream_grants_purge


@shared_task(
    name="voice.purge_stream_grants",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def purge_stream_grants() -> int:
    """Delete stream grants too old to be redeemed (they prove nothing after their minutes)."""
    return stream_grants_purge()


@shared_task(
    name="voice.sweep_stale_calls",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
)
def sweep_stale_calls() -> int:
    """Finish calls whose server process died (no heartbeat); every server sweeps too."""
    return len(sweep_once())
