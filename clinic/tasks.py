"""Periodic calendar jobs. Thin: each calls one service. Arguments are ids, never PHI."""

from __future__ import annotations

from celery import shared_task

from clinic import services


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
