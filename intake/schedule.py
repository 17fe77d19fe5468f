"""Periodic jobs of intake, merged into CELERY_BEAT_SCHEDULE by settings."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Daily, at an hour (UTC, like CELERY_TIMEZONE) when US clinics are closed. The task is
    # idempotent, so a missed or doubled run is harmless.
    "intake-purge-old-transcripts": {
        "task": "intake.purge_old_transcripts",
        "schedule": crontab(hour=7, minute=30),
    },
}
