"""Calls whose process stops: heartbeats, the sweep of calls nobody serves, and hand-over.

A call's media stream lives on one server process. While it lives, that process writes a
heartbeat on the call (:func:`call_heartbeat`). A process that dies without warning (kill -9,
power loss) writes nothing more, and :func:`calls_sweep_stale`, run by every other process and
by Celery beat, finishes its calls: the caller was cut off, so staff get a "call dropped"
follow-up, and the call's duration runs to its last heartbeat (the last moment anyone knew the
caller was there), not to the sweep. A process told to stop hands its live calls to people
first (:func:`call_hand_over`).

Writes race with each other (two sweepers, the session's own finish, Twilio's status callback
arriving late): every finish here is a conditional UPDATE on a call still in progress, so
exactly one writer finishes a call and only that writer opens the follow-up.

These are services (writes) in the style of :mod:`intake.services`, kept in their own module
so that neither grows past a readable size.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clinic import services as scheduling
from clinic.logs import get_logger
from intake import services
from intake.conversation.state import ConversationState
from intake.models import Call, FollowUp, Turn

log = get_logger(__name__)

SWEEP_BATCH = 200
"""Calls finished per sweep at most; the next sweep takes the rest."""
UNATTACHED_BACKSTOP = datetime.timedelta(hours=1)
"""When a call that never had a stream is taken for lost.

Its stream never attached: the caller hung up during the answer, or the stream was refused
(a draining process, a database outage) and Twilio went on to the ``<Dial>``, so the caller
may be talking to the front desk right now. Twilio's own callbacks finish such calls (the
``<Dial>`` action, the final status); the sweep only stands in for a callback that was lost
(the database was down when it came), so it waits longer than any front-desk call."""


def call_heartbeat(*, call_id: int, served_by: str, now: datetime.datetime | None = None) -> bool:
    """Record that ``served_by`` still serves the call; False when the call is finished.

    A bare UPDATE (no read, no lock, no ``updated_at``): it runs every few seconds per call
    and must stay cheap. False tells the session that someone else (the sweep, a status
    callback) has already closed the call, so it must not go on as if it were live.
    """
    updated = Call.objects.filter(pk=call_id, outcome=Call.Outcome.IN_PROGRESS).update(
        heartbeat_at=now or timezone.now(), served_by=served_by[:200]
    )
    return updated == 1


@dataclass(frozen=True)
class SweptCall:
    call_id: int
    outcome: str
    served_by: str
    duration_seconds: int


def calls_sweep_stale(
    *,
    now: datetime.datetime | None = None,
    stale_after: datetime.timedelta,
    attach_within: datetime.timedelta = UNATTACHED_BACKSTOP,
    limit: int = SWEEP_BATCH,
) -> list[SweptCall]:
    """Finish the calls in progress that no process serves any more; return those finished.

    A call is stale when its heartbeat is older than ``stale_after``, or when it has no
    heartbeat at all and started more than ``attach_within`` ago (see
    :data:`UNATTACHED_BACKSTOP`). Each is finished as abandoned, or with the goal the caller had
    already reached ("booked" stays booked), and a "call dropped" follow-up when nothing was
    done for them. A held slot is given back.

    Idempotent and race-free: each row is finished by an UPDATE conditioned on the outcome
    still being in progress and on the heartbeat being the one read, so a call whose process
    beats again in the meantime is left alone and two sweepers never both finish a call.
    """
    now = now or timezone.now()
    beat_cutoff = now - stale_after
    attach_cutoff = now - attach_within
    stale = (
        Call.objects.filter(outcome=Call.Outcome.IN_PROGRESS)
        .filter(
            Q(heartbeat_at__lt=beat_cutoff)
            | Q(heartbeat_at__isnull=True, started_at__lt=attach_cutoff)
        )
        .order_by("pk")
        .only("pk", "started_at", "heartbeat_at", "served_by", "phase", "state", "patient")
    )
    swept: list[SweptCall] = []
    for call in stale[:limit]:
        result = call_sweep(call=call, now=now)
        if result is not None:
            swept.append(result)
    if swept:
        log.info("calls_swept", calls=len(swept), call_ids=[s.call_id for s in swept])
    return swept


def call_sweep(*, call: Call, now: datetime.datetime) -> SweptCall | None:
    """Finish ``call`` as dropped, as read by the sweep; None when someone got there first.

    ``call`` is the row as the sweep read it: the UPDATE only applies if the call is still in
    progress with that same heartbeat, so a beat or a finish in between wins over the sweep.
    """
    state = ConversationState.from_dict(call.state or {})
    goal = state.completed_goal
    outcome = goal or Call.Outcome.ABANDONED
    ended = call.heartbeat_at or call.started_at
    duration = max(0, round((ended - call.started_at).total_seconds()))
    with transaction.atomic():
        claimed = (
            Call.objects.filter(
                pk=call.pk, outcome=Call.Outcome.IN_PROGRESS, heartbeat_at=call.heartbeat_at
            )
            if call.heartbeat_at is not None
            else Call.objects.filter(
                pk=call.pk, outcome=Call.Outcome.IN_PROGRESS, heartbeat_at__isnull=True
            )
        ).update(outcome=outcome, ended_at=ended, duration_seconds=duration, updated_at=now)
        if claimed != 1:
            return None  # beat again, or finished by another writer: theirs stands
        _release_hold(state)
        if goal is None:
            where = call.phase or "greeting"
            summary = (
                f"The call was cut off during {where}: the phone agent's server stopped "
                "without handing it over."
                if call.heartbeat_at is not None
                else "The call ended before the phone agent's stream connected."
            )
            services.followup_open(reason=FollowUp.Reason.CALL_DROPPED, call=call, summary=summary)
    log.info(
        "call_swept",
        call_id=call.pk,
        outcome=outcome,
        served_by=call.served_by,
        duration_s=duration,
        attached=call.heartbeat_at is not None,
    )
    return SweptCall(call.pk, outcome, call.served_by, duration)


def _release_hold(state: ConversationState) -> None:
    if state.chosen_slot_id and state.hold_token:
        scheduling.slot_release(slot_id=state.chosen_slot_id, hold_token=state.hold_token)


@dataclass(frozen=True)
class HandOver:
    """What :func:`call_hand_over` did: the line's turn, the outcome, whether it finished it."""

    turn_id: int
    outcome: str
    finished_here: bool


def call_hand_over(*, call_id: int, line: str, transfer: bool, reason: str) -> HandOver:
    """The agent gives a live call to people before it is done (the process is stopping).

    Records the hand-over line as an agent turn and, unless someone else finished the call
    first, finishes it in one transaction: transferred (or callback, when the front desk is
    closed and ``transfer`` is False), or the goal already reached; a follow-up tells staff the
    intake was cut short; a held slot is given back; the conversation is marked finished, so
    the end of the stream that follows records nothing more. ``reason`` is a code ("drain"),
    never caller data.
    """
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        turn = services.turn_record(call=call, speaker=Turn.Speaker.AGENT, text=line)
        if call.finished:
            log.info("call_hand_over", call_id=call.pk, reason=reason, outcome=call.outcome)
            return HandOver(turn.pk, call.outcome, False)
        state = ConversationState.from_dict(call.state or {})
        _release_hold(state)
        state.chosen_slot_id, state.hold_token = None, ""
        state.finished = True
        goal = state.completed_goal
        outcome = goal or (Call.Outcome.TRANSFERRED if transfer else Call.Outcome.CALLBACK)
        if goal is None:
            where = call.phase or "greeting"
            if transfer:
                reason_code = FollowUp.Reason.HANDED_OVER
                summary = (
                    f"The phone agent was restarting and put this call through to the front "
                    f"desk during {where}. Check the intake was completed."
                )
            else:
                reason_code = FollowUp.Reason.CALLBACK_REQUESTED
                summary = (
                    f"The phone agent was restarting during {where} while the front desk was "
                    "closed; the caller was promised a call back."
                )
            services.followup_open(reason=reason_code, call=call, summary=summary)
        services.call_update(call=call, state=state.to_dict())
        finished = services.call_finish(call=call, outcome=outcome)
    log.info("call_hand_over", call_id=call.pk, reason=reason, outcome=finished.outcome)
    return HandOver(turn.pk, finished.outcome, True)
