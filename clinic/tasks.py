"""Periodic calendar jobs. Thin: each calls one service. Arguments are ids, never PHI."""

from __future__ import annotations

from celery import shared_task

from clinic import outbox, services


@shared_task(name="clinic.generate_slots")
def generate_slots(provider_ids: list[int] | None = None) -> dict[str, int]:
    """Extend the rolling horizon and reconcile slots with rules and time off (idempotent)."""
    report = services.slots_generate(provider_ids=provider_ids)
    return {
        "created": report.created,
        "deleted": report.deleted,
        "conflicts": len(report.conflicts),
    }


@shared_task(name="clinic.release_expired_holds")
def release_expired_holds() -> int:
    """Free slots whose hold ran out (queries already treat them as free; this tidies up)."""
    return services.holds_release_expired()


@shared_task(name="clinic.outbox_relay")
def outbox_relay() -> dict[str, int]:
    """Publish outbox rows the on-commit publish could not (broker down, process died).

    Beat runs it; so does each web process (``clinic.outbox.outbox_relay_forever``), because
    beat's own runs need the broker too. Concurrent runs skip each other's rows.
    """
    report = outbox.outbox_relay()
    return {"dispatched": report.dispatched, "failed": report.failed, "pending": report.pending}


@shared_task(name="clinic.outbox_purge")
def outbox_purge() -> int:
    """Delete dispatched outbox rows older than a week (undispatched rows stay)."""
    return outbox.outbox_purge()
