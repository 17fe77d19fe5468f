"""Reactions of intake to signals from the calendar (which never imports intake)."""

from __future__ import annotations

from typing import Any

from clinic.logs import get_logger
from clinic.models import ScheduleConflict
from intake import services

log = get_logger(__name__)


def open_followup_for_schedule_conflict(
    sender: type[ScheduleConflict], *, conflict: ScheduleConflict, **_: Any
) -> None:
    """A booking no longer fits the schedule: put "call the patient" in the front-desk queue.

    Idempotent (one follow-up per conflict), so a signal sent twice opens one follow-up.
    """
    followup = services.followup_open_for_schedule_conflict(conflict=conflict)
    log.info("schedule_conflict_followup", conflict_id=conflict.pk, followup_id=followup.pk)
