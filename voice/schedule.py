"""Periodic jobs of the phone line, merged into CELERY_BEAT_SCHEDULE by settings."""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "voice-purge-stream-grants": {"task": "voice.purge_stream_grants", "schedule": 3600.0},
}
