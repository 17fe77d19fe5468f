"""Periodic jobs of the calendar, merged into CELERY_BEAT_SCHEDULE by settings.

Plain data (no imports of models) so that settings can import it.
"""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Each night adds the day that entered the horizon; hourly keeps edits and time off in step
    # even if an admin save's regeneration failed.
    "clinic-generate-slots": {"task": "clinic.generate_slots", "schedule": 3600.0},
    "clinic-release-expired-holds": {"task": "clinic.release_expired_holds", "schedule": 60.0},
}
