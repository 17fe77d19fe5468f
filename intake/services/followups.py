"""Writes of follow-ups: the front desk's queue of what a person must still do after a call.

A retried action (a Twilio retry, a re-queued task) must not double the queue, so opening a
follow-up returns the open one it would duplicate.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from clinic.logs import get_logger
from intake.models import Call, FollowUp, Patient

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from clinic.models import ScheduleConflict

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
