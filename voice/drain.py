"""Stopping a server without dropping a caller: live sessions, the drain, the stream guard.

When the process is told to stop (``manage.py serve`` gets SIGTERM), :mod:`clinic.lifecycle`
marks it draining and :func:`drain_live_calls` walks the registry of live sessions kept here:

- new callers are not given to the agent: ``/voice/answer`` sends them to the front desk, or
  says the clinic is closed (:func:`call_answered_while_draining` records them), and
  :class:`RefuseStreamsWhileDraining` refuses media streams that still arrive (Twilio then
  runs the ``<Dial>`` that follows the stream in the answer TwiML);
- each live call gets up to ``DRAIN_GRACE_SECONDS`` to reach a safe point (the agent is not
  mid-sentence and no turn is in hand), then :meth:`CallSession.hand_over` says a short line,
  finishes the call (transferred, or callback when the front desk is closed) with a
  follow-up, and closes the stream so that Twilio puts the caller through;
- the drain returns once every session has finished and written what it had to write.

How long a stop can take, for the process manager's stop timeout: the grace period, plus
:data:`HANDOVER_PLAY_TIMEOUT_SECONDS` for the hand-over line, plus the session's own
clean-up (a few seconds). See :func:`stop_timeout_seconds`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from django.db import DatabaseError

from clinic import lifecycle
from clinic.hours import front_desk_open
from clinic.logs import get_logger
from intake import liveness
from intake import services as intake_services
from intake.models import Call, FollowUp
from voice.deferred import deferred_writes

if TYPE_CHECKING:
    from voice.session import CallSession

log = get_logger(__name__)

HANDOVER_TRANSFER_LINE = (
    "I'm sorry, I have to pass you to our front desk now. Please hold the line."
)
HANDOVER_CALLBACK_LINE = (
    "I'm sorry, I have to end our call now. Our front desk is closed; they will call you back "
    "when they open. If this is an emergency, please hang up and dial 9 1 1. Goodbye."
)
HANDOVER_LINES = (HANDOVER_TRANSFER_LINE, HANDOVER_CALLBACK_LINE)
"""Warmed into the prompt cache at start-up, so a drain needs no live speech synthesis."""

HANDOVER_PLAY_TIMEOUT_SECONDS = 15.0
"""The longest hand-over line takes about 10 s to play; Twilio echoes its mark when played.
Without the echo (the caller hung up, the mark was lost) the stream is closed after this."""
SESSION_CLEANUP_SECONDS = 15.0
"""What a session's own finish may take (its turn and timing writes; see CallSession.finish)."""
SAFE_POINT_POLL_SECONDS = 0.1

# --- the live sessions of this process ------------------------------------------------------

_LIVE: set[CallSession] = set()


def register(session: CallSession) -> None:
    """A session started: the drain will hand it over. Called by CallSession.start."""
    _LIVE.add(session)


def unregister(session: CallSession) -> None:
    """A session finished. Called by CallSession.finish; safe to call twice."""
    _LIVE.discard(session)


def live_sessions() -> list[CallSession]:
    return list(_LIVE)


# --- what the caller hears and what is recorded ----------------------------------------------


def handover_plan() -> tuple[str, bool]:
    """The line to say and whether to transfer (True) or hang up with a callback (False)."""
    if front_desk_open():
        return HANDOVER_TRANSFER_LINE, True
    return HANDOVER_CALLBACK_LINE, False


async def record_hand_over(*, call_id: int, line: str, transfer: bool, reason: str) -> int | None:
    """Write the hand-over; return the agent turn's id for the line.

    Without a database the write is not lost: it waits in :mod:`voice.deferred` (which the
    server flushes before it exits) and None is returned, so the caller is handed over all
    the same.
    """

    def write() -> int:
        return liveness.call_hand_over(
            call_id=call_id, line=line, transfer=transfer, reason=reason
        ).turn_id

    try:
        turn_id: int = await database_sync_to_async(write)()
    except DatabaseError as exc:
        log.error("call_hand_over_deferred", call_id=call_id, error=type(exc).__name__)
        deferred_writes().submit("call_hand_over", call_id, write)
        return None
    return turn_id


def call_answered_while_draining(*, call_sid: str, caller_number: str) -> None:
    """Record a caller answered while this process drains (they go to people, not the agent).

    Front desk open: the call is finished as transferred (the ``<Dial>`` callback reports a
    failed transfer as usual). Closed: finished as callback with a follow-up, since the
    caller is told to call back and staff can beat them to it. Best effort: without a
    database the caller still gets the TwiML, and the sweep finishes nothing (no row exists).
    """
    try:
        call = intake_services.call_start(call_sid=call_sid, caller_number=caller_number)
        if call.finished:
            return
        if front_desk_open():
            intake_services.call_finish(call=call, outcome=Call.Outcome.TRANSFERRED)
        else:
            intake_services.followup_open(
                reason=FollowUp.Reason.CALLBACK_REQUESTED,
                call=call,
                summary=(
                    "Called while the phone agent was restarting, outside opening hours; the "
                    "caller was asked to call back."
                ),
            )
            intake_services.call_finish(call=call, outcome=Call.Outcome.CALLBACK)
        log.info("call_answered_while_draining", call_id=call.pk, outcome=call.outcome)
    except DatabaseError as exc:
        log.error("call_answered_while_draining_not_recorded", error=type(exc).__name__)


# --- the drain --------------------------------------------------------------------------------


@dataclass
class DrainReport:
    """What the drain did, for the log line the process prints before it exits."""

    calls: int = 0
    at_safe_point: int = 0
    forced: int = 0
    ended_on_their_own: int = 0
    unfinished: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.unfinished


def stop_timeout_seconds(grace_seconds: float) -> float:
    """The longest a drain can take: what the process manager's stop timeout must allow."""
    return grace_seconds + HANDOVER_PLAY_TIMEOUT_SECONDS + SESSION_CLEANUP_SECONDS


async def drain_live_calls(*, grace_seconds: float) -> DrainReport:
    """Hand every live call of this process to people; return when all have finished.

    Sessions that start while the drain runs (a stream accepted just before the flag was set)
    are drained too. Bounded by :func:`stop_timeout_seconds`; a session still open after that
    is listed in the report (the sweep of another process finishes its call).
    """
    lifecycle.begin_draining()
    report = DrainReport()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_seconds
    hard_deadline = loop.time() + stop_timeout_seconds(grace_seconds)
    tasks: dict[CallSession, asyncio.Task[str]] = {}
    log.info("drain_started", calls=len(_LIVE), grace_s=grace_seconds)
    while True:
        for session in live_sessions():
            if session not in tasks:
                tasks[session] = asyncio.create_task(
                    _drain_one(session, deadline=max(deadline, loop.time() + 1.0)),
                    name=f"drain-{session.call_id}",
                )
        pending = [task for task in tasks.values() if not task.done()]
        if not pending and not _LIVE:
            break
        remaining = hard_deadline - loop.time()
        if remaining <= 0:
            break
        if pending:
            await asyncio.wait(pending, timeout=min(remaining, 0.5))
        else:
            await asyncio.sleep(min(remaining, SAFE_POINT_POLL_SECONDS))
    report.calls = len(tasks)
    for session, task in tasks.items():
        if not task.done():
            task.cancel()
            report.unfinished.append(session.call_id)
            continue
        outcome = "unfinished" if task.cancelled() or task.exception() else task.result()
        if outcome == "safe":
            report.at_safe_point += 1
        elif outcome == "forced":
            report.forced += 1
        elif outcome == "ended":
            report.ended_on_their_own += 1
        else:
            report.unfinished.append(session.call_id)
    log.info(
        "drain_finished",
        calls=report.calls,
        at_safe_point=report.at_safe_point,
        forced=report.forced,
        ended_on_their_own=report.ended_on_their_own,
        unfinished=report.unfinished,
    )
    return report


async def _drain_one(session: CallSession, *, deadline: float) -> str:
    """Wait for a safe point (until ``deadline``), hand the call over, wait for its end."""
    loop = asyncio.get_running_loop()
    # Polled: a safe point is several session states at once, with no single event to await;
    # ten checks a second per call, and only while draining.
    while not session.at_safe_point and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(SAFE_POINT_POLL_SECONDS)
    if session.ending:
        kind = "ended"
    else:
        kind = "safe" if session.at_safe_point else "forced"
    try:
        await session.hand_over("drain")
    except Exception:  # e.g. the socket went at that moment: its own finish takes over
        log.exception("drain_hand_over_failed", call_id=session.call_id)
    try:
        await asyncio.wait_for(
            session.wait_finished(), HANDOVER_PLAY_TIMEOUT_SECONDS + SESSION_CLEANUP_SECONDS
        )
    except TimeoutError:
        log.error("drain_session_stuck", call_id=session.call_id)
        return "unfinished"
    return kind


# --- refusing new media streams ---------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLOSE_DRAINING = 1013
"""WebSocket "try again later". Closing before accepting rejects the handshake (HTTP 403)."""


class RefuseStreamsWhileDraining:
    """ASGI wrapper: while the process drains, a new WebSocket is refused before it starts.

    Twilio treats a refused stream like one that ended: it goes on to the ``<Dial>`` after
    ``<Connect>``, so the caller reaches the front desk. HTTP passes through untouched (the
    answer webhook and readiness answer for themselves).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and lifecycle.draining():
            message = await receive()
            if message.get("type") == "websocket.connect":
                log.warning("stream_rejected", reason="draining")
                await send({"type": "websocket.close", "code": CLOSE_DRAINING})
            return
        await self.app(scope, receive, send)
