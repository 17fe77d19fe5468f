"""Database writes a call could not make, kept and retried until the database is back.

A call that loses its database mid-way is apologised to and handed to a person at once (see
:mod:`voice.session`); what it still had to write (the caller's last words, the follow-up,
the call's outcome) must not be lost with it. Each such write is a plain synchronous
function, written to run more than once safely (in one transaction, idempotent), queued here
and retried in order by one background task per process, with a pause between rounds, until
it succeeds. A write that fails for any reason other than the database being unreachable is a
bug that retrying will not fix: it is logged and dropped.

The queue lives in the server's memory: it survives the outage, not the process. A process
that is told to stop flushes it within its drain period (:meth:`DeferredWrites.flush`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.db import DatabaseError

from clinic.logs import get_logger
from voice import metrics

log = get_logger(__name__)

RETRY_SECONDS = 2.0
MAX_PENDING = 10_000


@dataclass(frozen=True)
class DeferredWrite:
    name: str  # what it writes, for logs and metrics: a code, never PHI
    call_id: int
    write: Callable[[], object]
    queued_at: float


class DeferredWrites:
    """The process's queue of writes waiting for the database, and its retrying task."""

    def __init__(self, *, retry_seconds: float = RETRY_SECONDS) -> None:
        self.retry_seconds = retry_seconds
        self._pending: deque[DeferredWrite] = deque()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, name: str, call_id: int, write: Callable[[], object]) -> None:
        """Queue ``write``; it is tried at once and then every ``retry_seconds`` until done."""
        if len(self._pending) >= MAX_PENDING:
            dropped = self._pending.popleft()
            log.error("deferred_write_dropped", name=dropped.name, call_id=dropped.call_id)
        self._pending.append(DeferredWrite(name, call_id, write, time.monotonic()))
        metrics.DEFERRED_WRITES.set(len(self._pending))
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="deferred-writes")

    async def flush(self, limit_s: float) -> int:
        """Wait up to ``limit_s`` seconds for the queue to empty; returns what is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), limit_s)
        if self._pending:
            log.error("deferred_writes_left", pending=len(self._pending))
        return len(self._pending)

    async def _run(self) -> None:
        while self._pending:
            item = self._pending[0]
            try:
                await database_sync_to_async(item.write)()
            except DatabaseError as exc:
                log.warning(
                    "deferred_write_waiting",
                    name=item.name,
                    call_id=item.call_id,
                    pending=len(self._pending),
                    waited_s=round(time.monotonic() - item.queued_at, 1),
                    error=type(exc).__name__,
                )
                await asyncio.sleep(self.retry_seconds)
                continue
            except Exception:
                log.exception("deferred_write_failed", name=item.name, call_id=item.call_id)
            else:
                log.info(
                    "deferred_write_done",
                    name=item.name,
                    call_id=item.call_id,
                    waited_s=round(time.monotonic() - item.queued_at, 1),
                )
            self._pending.popleft()
            metrics.DEFERRED_WRITES.set(len(self._pending))
        self._idle.set()


_QUEUES: dict[asyncio.AbstractEventLoop, DeferredWrites] = {}


def deferred_writes() -> DeferredWrites:
    """The queue of the running event loop (a server has one loop; tests have one each)."""
    loop = asyncio.get_running_loop()
    queue = _QUEUES.get(loop)
    if queue is None:
        for old in [known for known in _QUEUES if known.is_closed()]:
            del _QUEUES[old]
        queue = _QUEUES[loop] = DeferredWrites()
    return queue
