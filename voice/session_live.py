"""Work that runs beside a call, never in its way: live events for staff pages, timing writes.

The caller must not wait for a staff page or for bookkeeping, so these run as tasks of their
own; the session waits for them (bounded) only once the call is over, so that nothing it
started outlives it unnoticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from channels.layers import get_channel_layer

from clinic.logs import get_logger
from voice import metrics

log = get_logger(__name__)


class SideTasks:
    """Tasks started beside the call and not awaited by it (kept referenced until done)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, seconds: float) -> None:
        """Let what is still running finish, for at most ``seconds``; the rest is left running."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)


def publish_turn(side: SideTasks, *, call_id: int, speaker: str, text: str, timeout: float) -> None:
    """Tell staff pages about the turn: best effort, beside the call, never in its way.

    The call does not wait for the channel layer, and a layer that is down or slow (Redis
    restarting) costs a dropped live event, counted, never the call.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "call.turn", "speaker": speaker, "text": text}

    async def publish() -> None:
        try:
            await asyncio.wait_for(layer.group_send(f"call.{call_id}", message), timeout)
        except Exception as exc:
            metrics.LIVE_EVENTS_DROPPED.inc()
            log.warning("live_event_dropped", call_id=call_id, error=type(exc).__name__)

    side.start(publish())
