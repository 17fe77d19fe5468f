"""Periodic jobs of intake, merged into CELERY_BEAT_SCHEDULE by settings."""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {}
