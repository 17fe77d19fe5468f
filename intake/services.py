"""Writes of intake: patients, coverage, calls, turns, follow-ups, PHI access, retention.

The conversation and voice layers call these functions; admin actions and tasks do too. Each
is keyword-only, owns its transaction, and logs ids and counts only: the values passed in are
PHI and never reach a log line or an exception message.

Idempotency matters here because a call's events can be delivered twice (a Twilio retry, a
process restarted mid-call, a Celery task re-queued after its worker died):
``call_start`` makes one Call per CallSid, ``turn_record`` with an explicit sequence records
one turn per position, ``call_finish`` keeps the first outcome, ``followup_open`` keeps one
open follow-up per call and reason (and one per schedule conflict).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from clinic.logs import get_logger
from intake.models import Call, Coverage, FollowUp, Patient, PhiAccess, Turn

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import Model

    from clinic.models import Appointment, ScheduleConflict

log = get_logger(__name__)

# How soon staff should act on a follow-up of each priority when the caller gave no deadline.
# A clinic may want to tune these; they are in one place for that reason.
FOLLOWUP_DUE_AFTER: dict[int, datetime.timedelta] = {
    FollowUp.Priority.URGENT: datetime.timedelta(minutes=30),
    FollowUp.Priority.HIGH: datetime.timedelta(hours=4),
    FollowUp.Priority.NORMAL: datetime.timedelta(days=1),
    FollowUp.Priority.LOW: datetime.timedelta(days=3),
}

# The priority a follow-up gets when the caller of followup_open does not choose one.
DEFAULT_PRIORITY: dict[str, int] = {
    FollowUp.Reason.EMERGENCY: FollowUp.Priority.URGENT,
    FollowUp.Reason.CALLBACK_REQUESTED: FollowUp.Priority.NORMAL,
    FollowUp.Reason.INSURANCE_NOT_ACCEPTED: FollowUp.Priority.NORMAL,
    FollowUp.Reason.NO_SLOTS: FollowUp.Priority.NORMAL,
    FollowUp.Reason.BOOKING_FAILED: FollowUp.Priority.HIGH,
    FollowUp.Reason.TRANSFER_FAILED: FollowUp.Priority.HIGH,
    FollowUp.Reason.CALL_DROPPED: FollowUp.Priority.NORMAL,
    FollowUp.Reason.HANDED_OVER: FollowUp.Priority.NORMAL,
    FollowUp.Reason.SCHEDULE_CONFLICT: FollowUp.Priority.HIGH,
}

PATIENT_EDITABLE_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "date_of_birth",
        "phone",
        "email",
        "address",
        "preferred_language",
    }
)


# --- Patients and coverage -------------------------------------------------------------------


def patient_create(
    *,
    first_name: str,
    last_name: str,
    date_of_birth: datetime.date | None = None,
    phone: str = "",
    email: str = "",
    address: str = "",
    preferred_language: str = Patient.Language.ENGLISH,
) -> Patient:
    """Create a patient from what the caller (or staff) gave.

    The phone number is stored in E.164 when it parses; blind indexes for phone, date of
    birth and last name + date of birth are computed by ``Patient.save``.
    """
    if date_of_birth is not None and date_of_birth > timezone.localdate():
        raise ValueError("date of birth is in the future")
    patient = Patient(
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        date_of_birth=date_of_birth,
        phone=phone,
        email=email.strip(),
        address=address.strip(),
        preferred_language=preferred_language,
    )
    patient.full_clean()
    patient.save()
    log.info("patient_created", patient_id=patient.pk)
    return patient


def patient_update(*, patient: Patient, changes: Mapping[str, Any]) -> Patient:
    """Apply corrections (a spelling read back, a new phone number) to a patient.

    Only the fields in :data:`PATIENT_EDITABLE_FIELDS` may change; the blind indexes follow.
    """
    unknown = set(changes) - PATIENT_EDITABLE_FIELDS
    if unknown:
        # Field names are not PHI; values are never echoed.
        raise ValueError(f"not editable on a patient: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(patient, name, value)
    patient.full_clean()
    patient.save()
    log.info("patient_updated", patient_id=patient.pk, fields=sorted(changes))
    return patient


def coverage_create(
    *,
    patient: Patient,
    carrier: str,
    member_id: str,
    group_number: str = "",
    subscriber_relation: str = Coverage.Relation.SELF,
) -> Coverage:
    """Record the insurance a caller gave; staff verify it later (``verified`` stays False)."""
    coverage = Coverage(
        patient=patient,
        carrier=carrier.strip(),
        member_id=member_id.strip(),
        group_number=group_number.strip(),
        subscriber_relation=subscriber_relation,
    )
    coverage.full_clean()
    coverage.save()
    log.info("coverage_created", coverage_id=coverage.pk, patient_id=patient.pk)
    return coverage


# --- Calls and turns -------------------------------------------------------------------------


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


def call_fail_over(*, call_id: int, caller_said: str | None, cause: str) -> Call | None:
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


def turn_record(
    *,
    call: Call,
    speaker: str,
    text: str,
    sequence: int | None = None,
    stt_final_ms: float | None = None,
    understanding_ms: float | None = None,
    tts_first_byte_ms: float | None = None,
    response_latency_ms: float | None = None,
    interrupted: bool = False,
) -> Turn:
    """Write one utterance of a call as it happens (encrypted), with its timings.

    Without ``sequence`` the turn goes after the call's last one (the call row is locked
    meanwhile so that two writers cannot take the same number). With ``sequence`` the write
    is idempotent: replaying an event after a restart returns the turn already stored.
    """
    if speaker not in Turn.Speaker.values:
        raise ValueError(f"unknown speaker: {speaker!r}")
    timings = {
        "stt_final_ms": stt_final_ms,
        "understanding_ms": understanding_ms,
        "tts_first_byte_ms": tts_first_byte_ms,
        "response_latency_ms": response_latency_ms,
    }
    with transaction.atomic():
        # Serialise writers of this call's turns (SQLite's IMMEDIATE transactions already do).
        Call.objects.select_for_update().only("pk").get(pk=call.pk)
        if sequence is None:
            last = call.turns.aggregate(last=Max("sequence"))["last"]
            sequence = 1 if last is None else last + 1
        else:
            existing = call.turns.filter(sequence=sequence).first()
            if existing is not None:
                return existing
        turn = Turn.objects.create(
            call=call,
            sequence=sequence,
            speaker=speaker,
            text=text,
            interrupted=interrupted,
            **{name: _ms(value) for name, value in timings.items()},
        )
    log.info(
        "turn_recorded",
        call_id=call.pk,
        sequence=sequence,
        speaker=speaker,
        text_length=len(text),
        **{name: _ms(value) for name, value in timings.items() if value is not None},
    )
    return turn


def turn_update_timings(
    *,
    turn: Turn,
    tts_first_byte_ms: float | None = None,
    response_latency_ms: float | None = None,
    interrupted: bool | None = None,
) -> Turn:
    """Add what is known only after an agent turn is written: playback timing, barge-in."""
    fields: list[str] = []
    if tts_first_byte_ms is not None:
        turn.tts_first_byte_ms = _ms(tts_first_byte_ms)
        fields.append("tts_first_byte_ms")
    if response_latency_ms is not None:
        turn.response_latency_ms = _ms(response_latency_ms)
        fields.append("response_latency_ms")
    if interrupted is not None:
        turn.interrupted = interrupted
        fields.append("interrupted")
    if fields:
        turn.save(update_fields=fields)
    return turn


def _ms(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))


# --- Follow-ups ------------------------------------------------------------------------------


def followup_open(
    *,
    reason: str,
    call: Call | None = None,
    patient: Patient | None = None,
    priority: int | None = None,
    summary: str = "",
    due: datetime.datetime | None = None,
    schedule_conflict: ScheduleConflict | None = None,
) -> FollowUp:
    """Open a follow-up for the front desk, or return the open one it would duplicate.

    One open follow-up per call and reason (a retried action must not double the queue); one
    follow-up per schedule conflict. Priority defaults by reason (emergencies are urgent),
    due by priority (:data:`FOLLOWUP_DUE_AFTER`).
    """
    if reason not in FollowUp.Reason.values:
        raise ValueError(f"unknown follow-up reason: {reason!r}")
    chosen_priority = priority if priority is not None else DEFAULT_PRIORITY[reason]
    if chosen_priority not in FollowUp.Priority.values:
        raise ValueError(f"unknown follow-up priority: {chosen_priority!r}")
    duplicate = _open_duplicate(reason=reason, call=call, schedule_conflict=schedule_conflict)
    if duplicate is not None:
        return duplicate
    now = timezone.now()
    try:
        with transaction.atomic():
            followup = FollowUp.objects.create(
                reason=reason,
                priority=chosen_priority,
                call=call,
                patient=patient or (call.patient if call is not None else None),
                schedule_conflict=schedule_conflict,
                summary=summary.strip(),
                due=due or followup_default_due(priority=chosen_priority, now=now),
            )
    except IntegrityError:
        # A concurrent writer opened the same follow-up first; theirs stands.
        duplicate = _open_duplicate(reason=reason, call=call, schedule_conflict=schedule_conflict)
        if duplicate is None:
            raise
        return duplicate
    log.info(
        "followup_opened",
        followup_id=followup.pk,
        reason=reason,
        priority=int(chosen_priority),
        call_id=call.pk if call is not None else None,
    )
    return followup


def followup_default_due(
    *, priority: int, now: datetime.datetime | None = None
) -> datetime.datetime:
    """When a follow-up of this priority should be done, if nobody said (see FOLLOWUP_DUE_AFTER)."""
    return (now or timezone.now()) + FOLLOWUP_DUE_AFTER[priority]


def _open_duplicate(
    *, reason: str, call: Call | None, schedule_conflict: ScheduleConflict | None
) -> FollowUp | None:
    if schedule_conflict is not None:
        return FollowUp.objects.filter(schedule_conflict=schedule_conflict).first()
    if call is not None:
        return FollowUp.objects.filter(
            call=call, reason=reason, status__in=FollowUp.OPEN_STATUSES
        ).first()
    return None


def followup_open_for_schedule_conflict(*, conflict: ScheduleConflict) -> FollowUp:
    """Ask staff to contact the patient whose booking the schedule no longer allows.

    Due before the appointment itself if that comes sooner than the usual deadline. The call
    that booked it (if any) is linked so that staff can see how to reach the caller.
    """
    appointment = conflict.appointment
    priority = DEFAULT_PRIORITY[FollowUp.Reason.SCHEDULE_CONFLICT]
    due = min(followup_default_due(priority=priority), appointment.slot.start)
    return followup_open(
        reason=FollowUp.Reason.SCHEDULE_CONFLICT,
        call=Call.objects.filter(appointment=appointment).order_by("-started_at").first(),
        patient=appointment.patient,
        priority=priority,
        due=due,
        schedule_conflict=conflict,
    )


def followup_assign(*, followup: FollowUp, assignee: User) -> FollowUp:
    """Give a follow-up to a staff member; an open one becomes "in progress"."""
    if not followup.is_open:
        raise ValueError("a finished follow-up cannot be assigned")
    followup.assignee = assignee
    followup.status = FollowUp.Status.IN_PROGRESS
    followup.save(update_fields=["assignee", "status", "updated_at"])
    log.info("followup_assigned", followup_id=followup.pk, assignee_id=assignee.pk)
    return followup


def followup_mark_done(*, followup: FollowUp, by: User) -> FollowUp:
    """Close a follow-up, recording who closed it and when. Closing twice changes nothing."""
    if followup.status == FollowUp.Status.DONE:
        return followup
    followup.status = FollowUp.Status.DONE
    followup.closed_at = timezone.now()
    followup.closed_by = by
    followup.save(update_fields=["status", "closed_at", "closed_by", "updated_at"])
    log.info("followup_done", followup_id=followup.pk, user_id=by.pk)
    return followup


# --- PHI access log --------------------------------------------------------------------------


def phi_access_record(
    *,
    user: User,
    record: Model,
    fields: Iterable[str],
    purpose: str,
    request_id: str = "",
) -> PhiAccess:
    """Account for a staff member seeing decrypted PHI of ``record``.

    ``fields`` are field names (``"turns.text"`` for a related model's field), never values.
    Called before the page is rendered, so that if the record cannot be written the PHI is
    not shown either.
    """
    if purpose not in PhiAccess.Purpose.values:
        raise ValueError(f"unknown PHI access purpose: {purpose!r}")
    access = PhiAccess.objects.create(
        user=user,
        content_type=ContentType.objects.get_for_model(record),
        object_id=record.pk,
        fields=list(fields),
        purpose=purpose,
        request_id=request_id[:64],
    )
    log.info(
        "phi_access_recorded",
        access_id=access.pk,
        user_id=user.pk,
        model=record._meta.label,
        object_id=record.pk,
        purpose=purpose,
    )
    return access


# --- Retention -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeResult:
    """How many turns lost their text and how many calls their conversation state."""

    turns: int
    calls: int


def transcripts_purge(*, older_than_days: int, now: datetime.datetime | None = None) -> PurgeResult:
    """Delete transcript text older than the retention period; keep everything else.

    A turn keeps its speaker, sequence and timings, and gets ``text_purged_at``; the call keeps
    its outcome, phase, duration and links, and its conversation state (which may repeat what
    was said) is emptied once the call has ended before the cutoff. Idempotent: purged rows
    are not touched again.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=older_than_days)
    ended_before_cutoff = Q(ended_at__lt=cutoff) | Q(ended_at__isnull=True, started_at__lt=cutoff)
    with transaction.atomic():
        # Bulk updates: no row is decrypted, so no plaintext passes through this process.
        turns = Turn.objects.filter(created_at__lt=cutoff, text_purged_at__isnull=True).update(
            text="", text_purged_at=now
        )
        calls = Call.objects.filter(ended_before_cutoff, state_purged_at__isnull=True).update(
            state={}, state_purged_at=now
        )
    log.info(
        "transcripts_purged",
        turns=turns,
        calls=calls,
        older_than_days=older_than_days,
    )
    return PurgeResult(turns=turns, calls=calls)


def blind_indexes_rebuild(*, batch_size: int = 500) -> int:
    """Recompute every blind index from the decrypted values (after ``BLIND_INDEX_KEY`` changed).

    Returns the number of rows rewritten. Until it has run, lookups under the new key find
    nothing, so run it right after deploying the new key.
    """
    count = _rebuild(Patient, batch_size) + _rebuild(Call, batch_size)
    log.info("blind_indexes_rebuilt", rows=count)
    return count


def _rebuild(model: type[Patient] | type[Call], batch_size: int) -> int:
    count = 0
    last_pk = 0
    while True:
        with transaction.atomic():
            rows = model.objects.select_for_update().filter(pk__gt=last_pk).order_by("pk")
            batch: list[Patient | Call] = list(rows[:batch_size])
            if not batch:
                return count
            for row in batch:
                # save() recomputes the indexes from the plaintext; only they are written.
                row.save(update_fields=row.BLIND_INDEX_FIELDS)
            count += len(batch)
            last_pk = batch[-1].pk
