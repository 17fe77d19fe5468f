"""Periodic jobs of the calendar and the outbox, merged into CELERY_BEAT_SCHEDULE by settings.

Plain data (no imports of models) so that settings can import it.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

OUTBOX_RELAY = "clinic-outbox-relay"


def outbox_relay_entry(seconds: float) -> dict[str, Any]:
    """The relay every ``OUTBOX_RELAY_SECONDS``. A run that waited in the queue longer than
    that is dropped (``expires``): the next one does the same work, so runs never pile up
    behind a worker that was away."""
    return {
        "task": "clinic.outbox_relay",
        "schedule": seconds,
        "options": {"expires": seconds},
    }


BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Each night adds the day that entered the horizon; hourly keeps edits and time off in step
    # even if an admin save's regeneration failed.
    "clinic-generate-slots": {"task": "clinic.generate_slots", "schedule": 3600.0},
    "clinic-release-expired-holds": {"task": "clinic.release_expired_holds", "schedule": 60.0},
    # Settings replace this entry with one at OUTBOX_RELAY_SECONDS.
    OUTBOX_RELAY: outbox_relay_entry(15.0),
    # Dispatched outbox rows are kept a week for staff, then deleted (never undispatched ones).
    "clinic-outbox-purge": {"task": "clinic.outbox_purge", "schedule": crontab(hour=7, minute=45)},
}
