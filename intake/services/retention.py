"""Retention and key upkeep: transcripts purged after the retention period, indexes rebuilt.

Both work in bulk or in batches so that no more plaintext than needed passes through the
process, and both are idempotent so that an interrupted run can simply be run again.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clinic.logs import get_logger
from intake.models import Call, Patient, Turn

log = get_logger(__name__)


@dataclass(frozen=True)
class PurgeResult:
    """How many turns lost their text and how many calls their conversation state."""

    turns: int
    calls: int


def transcripts_purge(*, older_than_days: int, now: datetime.datetime | None = None) -> PurgeResult:
    """Delete transcript text older than the retention period; keep everything else.

    A turn keeps its speaker, sequence and timings, and gets ``text_purged_at``; the call keeps
    its outcome, phase, duration and links, and its conversation state (which may repeat what
    was said) is emptied once the call has ended before the cutoff. Idempotent: purged rows
    are not touched again.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=older_than_days)
    ended_before_cutoff = Q(ended_at__lt=cutoff) | Q(ended_at__isnull=True, started_at__lt=cutoff)
    with transaction.atomic():
        # Bulk updates: no row is decrypted, so no plaintext passes through this process.
        turns = Turn.objects.filter(created_at__lt=cutoff, text_purged_at__isnull=True).update(
            text="", text_purged_at=now
        )
        calls = Call.objects.filter(ended_before_cutoff, state_purged_at__isnull=True).update(
            state={}, state_purged_at=now
        )
    log.info(
        "transcripts_purged",
        turns=turns,
        calls=calls,
        older_than_days=older_than_days,
    )
    return PurgeResult(turns=turns, calls=calls)


def blind_indexes_rebuild(*, batch_size: int = 500) -> int:
    """Recompute every blind index from the decrypted values (after ``BLIND_INDEX_KEY`` changed).

    Returns the number of rows rewritten. Until it has run, lookups under the new key find
    nothing, so run it right after deploying the new key.
    """
    count = _rebuild(Patient, batch_size) + _rebuild(Call, batch_size)
    log.info("blind_indexes_rebuilt", rows=count)
    return count


def _rebuild(model: type[Patient] | type[Call], batch_size: int) -> int:
    count = 0
    last_pk = 0
    while True:
        with transaction.atomic():
            rows = model.objects.select_for_update().filter(pk__gt=last_pk).order_by("pk")
            batch: list[Patient | Call] = list(rows[:batch_size])
            if not batch:
                return count
            for row in batch:
                # save() recomputes the indexes from the plaintext; only they are written.
                row.save(update_fields=row.BLIND_INDEX_FIELDS)
            count += len(batch)
            last_pk = batch[-1].pk
