"""Writes of calls: started once per CallSid, progress saved each turn, finished once.

A call's events can arrive twice (a Twilio retry, the stream on another process, a restart),
so starting is idempotent and the first outcome wins.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from clinic.logs import get_logger
from intake.models import Call, FollowUp, Patient, Turn
from intake.services.followups import followup_open
from intake.services.turns import turn_record

if TYPE_CHECKING:
    from clinic.models import Appointment

log = get_logger(__name__)


def call_start(
    *, call_sid: str, caller_number: str = "", started_at: datetime.datetime | None = None
) -> Call:
    """The Call row for Twilio's CallSid, created on first sight.

    Idempotent: a webhook retried by Twilio, or the media stream arriving on another process,
    gets the same row back and changes nothing.
    """
    if not call_sid:
        raise ValueError("call_sid is required")
    existing = Call.objects.filter(call_sid=call_sid).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            call = Call.objects.create(
                call_sid=call_sid,
                caller_number=caller_number.strip(),
                started_at=started_at or timezone.now(),
            )
    except IntegrityError:
        # Another process created it between our read and our insert.
        return Call.objects.get(call_sid=call_sid)
    log.info("call_started", call_id=call.pk, call_sid=call_sid)
    return call


def call_update(
    *,
    call: Call,
    phase: str | None = None,
    state: dict[str, Any] | None = None,
    patient: Patient | None = None,
    appointment: Appointment | None = None,
) -> Call:
    """Persist the conversation's progress: the phase reached, its state, who and what.

    Only the arguments given are written, so two writers of different fields do not undo
    each other. Called after every turn, so that another process can resume the call.
    """
    update_fields: list[str] = []
    if phase is not None:
        call.phase = phase
        update_fields.append("phase")
    if state is not None:
        call.state = state
        update_fields.append("state")
    if patient is not None:
        call.patient = patient
        update_fields.append("patient")
    if appointment is not None:
        call.appointment = appointment
        update_fields.append("appointment")
    if update_fields:
        call.save(update_fields=[*update_fields, "updated_at"])
    return call


def call_finish(
    *,
    call: Call,
    outcome: str,
    ended_at: datetime.datetime | None = None,
    phase: str | None = None,
) -> Call:
    """Close a call with its outcome and duration.

    The first outcome wins: Twilio's status callback may report a hang-up after the agent has
    already recorded "booked", and that must not turn a booking into "abandoned".
    """
    if outcome not in Call.Outcome.values or outcome == Call.Outcome.IN_PROGRESS:
        raise ValueError(f"not a final call outcome: {outcome!r}")
    with transaction.atomic():
        locked = Call.objects.select_for_update().get(pk=call.pk)
        if locked.finished:
            return locked
        ended = ended_at or timezone.now()
        locked.outcome = outcome
        locked.ended_at = ended
        locked.duration_seconds = max(0, round((ended - locked.started_at).total_seconds()))
        fields = ["outcome", "ended_at", "duration_seconds", "updated_at"]
        if phase is not None:
            locked.phase = phase
            fields.append("phase")
        locked.save(update_fields=fields)
    log.info(
        "call_finished",
        call_id=locked.pk,
        outcome=outcome,
        phase=locked.phase,
        duration_s=locked.duration_seconds,
    )
    return locked


def call_fail_over(
    *, call_id: int, caller_said: str | None, cause: str, agent_said: str | None = None
) -> Call | None:
    """Record a call the agent could not go on with: it was handed to the front desk.

    Called after the fact, possibly minutes later when the database is back (voice keeps the
    write until then), so that nothing the caller said is lost: their last words become a
    turn, staff get a callback follow-up, and the call is finished as failed. All or nothing,
    so a retry after a half-done attempt cannot duplicate. A call that had already finished
    (a status callback or the sweep got there first) keeps its outcome and gets no second
    follow-up; the caller's words are still kept. ``cause`` is a code, never PHI.
    """
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).first()
        if call is None:
            return None
        if caller_said:
            turn_record(call=call, speaker=Turn.Speaker.CALLER, text=caller_said)
        if agent_said:  # the apology and hand-over the caller heard, for the transcript
            turn_record(call=call, speaker=Turn.Speaker.AGENT, text=agent_said)
        if not call.finished:
            followup_open(
                reason=FollowUp.Reason.CALLBACK_REQUESTED,
                call=call,
                priority=FollowUp.Priority.HIGH,
                summary=(
                    "The phone agent failed during this call and handed the caller to the "
                    f"front desk ({cause.replace('_', ' ')}). Check that they were helped."
                ),
            )
            call = call_finish(call=call, outcome=Call.Outcome.FAILED)
    log.warning("call_failed_over", call_id=call_id, cause=cause, kept_words=bool(caller_said))
    return call
