"""Writes of intake: patients, coverage, calls, turns, follow-ups, PHI access, retention.

The conversation and voice layers call these functions; admin actions and tasks do too. Each
is keyword-only, owns its transaction, and logs ids and counts only: the values passed in are
PHI and never reach a log line or an exception message.

Idempotency matters here because a call's events can be delivered twice (a Twilio retry, a
process restarted mid-call, a Celery task re-queued after its worker died):
``call_start`` makes one Call per CallSid, ``turn_record`` with an explicit sequence records
one turn per position, ``call_finish`` keeps the first outcome, ``followup_open`` keeps one
open follow-up per call and reason (and one per schedule conflict).

The functions live in modules by entity (:mod:`.patients`, :mod:`.calls`, :mod:`.turns`,
:mod:`.followups`, :mod:`.access`, :mod:`.retention`); callers use them through this package,
``from intake import services`` then ``services.call_start(...)``.
"""

from __future__ import annotations

from intake.services.access import phi_access_record
from intake.services.calls import call_fail_over, call_finish, call_start, call_update
from intake.services.followups import (
    DEFAULT_PRIORITY,
    FOLLOWUP_DUE_AFTER,
    followup_assign,
    followup_default_due,
    followup_mark_done,
    followup_open,
    followup_open_for_schedule_conflict,
)
from intake.services.patients import (
    PATIENT_EDITABLE_FIELDS,
    coverage_create,
    patient_create,
    patient_update,
)
from intake.services.retention import PurgeResult, blind_indexes_rebuild, transcripts_purge
from intake.services.turns import turn_record, turn_update_timings

__all__ = [
    "DEFAULT_PRIORITY",
    "FOLLOWUP_DUE_AFTER",
    "PATIENT_EDITABLE_FIELDS",
    "PurgeResult",
    "blind_indexes_rebuild",
    "call_fail_over",
    "call_finish",
    "call_start",
    "call_update",
    "coverage_create",
    "followup_assign",
    "followup_default_due",
    "followup_mark_done",
    "followup_open",
    "followup_open_for_schedule_conflict",
    "patient_create",
    "patient_update",
    "phi_access_record",
    "transcripts_purge",
    "turn_record",
    "turn_update_timings",
]
