"""Heartbeats of live calls, and the sweep that finishes calls whose process died.

Each live session writes a heartbeat on its call every ``CALL_HEARTBEAT_SECONDS``
(:func:`keep_beating`), naming this process. A process killed without warning stops
beating; :func:`sweep_periodically`, run inside every server process, and the Celery beat job
``voice.sweep_stale_calls`` (the same :func:`sweep_once`) finish such calls once their
heartbeat is ``CALL_STALE_SECONDS`` old. With the defaults (10 s beats, stale at 30 s, a sweep
every 10 s) a call is finished 20 to 40 s after its process died.

A session whose heartbeat finds its call already finished (the sweep decided it was dead
while the database was unreachable, or Twilio reported the caller gone) does not go on as if
it were live: it hands the caller over at its next safe point.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from clinic import lifecycle
from clinic.logs import get_logger
from intake import liveness

if TYPE_CHECKING:
    from voice.session import CallSession

log = get_logger(__name__)

RETRY_SECONDS = 1.0
"""After a failed heartbeat (database unreachable), the next try comes this soon."""
SAFE_POINT_WAIT_SECONDS = 30.0
"""How long a session whose call was finished elsewhere waits for a safe point to hand over."""

_HANDOVERS: set[asyncio.Task[None]] = set()


async def keep_beating(session: CallSession) -> None:
    """Write the call's heartbeat now and every ``CALL_HEARTBEAT_SECONDS`` until cancelled.

    A failed write (database down) is logged and retried every second: the call goes on, and
    a sweep that finished it meanwhile is noticed at the first beat that gets through.
    """
    interval = float(settings.CALL_HEARTBEAT_SECONDS)
    served_by = lifecycle.process_identity()
    failing = False
    while True:
        try:
            alive = await database_sync_to_async(liveness.call_heartbeat)(
                call_id=session.call_id, served_by=served_by
            )
        except DatabaseError as exc:
            if not failing:  # once per outage, not once a second
                log.warning(
                    "call_heartbeat_failed", call_id=session.call_id, error=type(exc).__name__
                )
            failing = True
            # Beat again as soon as the database is back, before a sweeper (which waited for
            # it too) takes the quiet for a death.
            await asyncio.sleep(min(interval, RETRY_SECONDS))
            continue
        if failing:
            log.info("call_heartbeat_restored", call_id=session.call_id)
            failing = False
        if not alive:
            task = asyncio.create_task(_hand_over_when_safe(session))
            _HANDOVERS.add(task)
            task.add_done_callback(_HANDOVERS.discard)
            return
        await asyncio.sleep(interval)


async def _hand_over_when_safe(session: CallSession) -> None:
    """The call was finished by someone else; unless the session is ending anyway (its own
    goodbye, which finished the call, is playing), hand the caller over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SAFE_POINT_WAIT_SECONDS
    # Polled like the drain: the safe point has no single event to await.
    while not session.at_safe_point and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    if session.ending:
        return
    log.warning("call_finished_elsewhere", call_id=session.call_id)
    await session.hand_over("finished_elsewhere")


def sweep_once(*, now: datetime.datetime | None = None) -> list[liveness.SweptCall]:
    """Finish the calls no process serves any more (synchronous: the database thread)."""
    return liveness.calls_sweep_stale(
        now=now, stale_after=datetime.timedelta(seconds=float(settings.CALL_STALE_SECONDS))
    )


async def sweep_periodically(interval_s: float | None = None) -> None:
    """Run :func:`sweep_once` now and every ``CALL_SWEEP_SECONDS`` until cancelled.

    Every server process runs this, so the embedded default (no Celery beat) cleans up after
    a crash too; concurrent sweeps are safe (see :func:`intake.liveness.calls_sweep_stale`).
    """
    interval = float(interval_s if interval_s is not None else settings.CALL_SWEEP_SECONDS)
    while True:
        try:
            await database_sync_to_async(sweep_once)()
        except DatabaseError as exc:
            log.warning("call_sweep_failed", error=type(exc).__name__)
        except Exception:
            log.exception("call_sweep_failed")
        await asyncio.sleep(interval)
