"""Periodic jobs of the phone line, merged into CELERY_BEAT_SCHEDULE by settings."""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "voice-purge-stream-grants": {"task": "voice.purge_stream_grants", "schedule": 3600.0},
    # Calls whose server died: each server sweeps too (voice.heartbeat); beat is the backstop
    # when every server is gone. Short tasks; a missed or doubled run is harmless.
    "voice-sweep-stale-calls": {
        "task": "voice.sweep_stale_calls",
        "schedule": 15.0,
        "options": {"expires": 15.0},
    },
}
