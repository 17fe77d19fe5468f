"""The transactional outbox: Celery work that survives a broker outage.

``transaction.on_commit(lambda: task.delay(pk))`` loses the task whenever the broker is down
at commit, or the process dies between the commit and the publish: the booking is kept, its
confirmation never leaves. Instead, :func:`outbox_enqueue` writes an :class:`OutboxMessage`
row in the caller's transaction, so the task exists exactly when the change does, and then:

1. after commit it tries to publish at once, with a short broker timeout
   (``OUTBOX_PUBLISH_TIMEOUT_SECONDS``) and no retries, so a dead broker costs a request or a
   call turn at most about that long (a refused connection costs nothing); a failure is
   recorded on the row and never raised;
2. :func:`outbox_relay` publishes whatever is left. It runs as the beat job
   ``clinic.outbox_relay`` and, because beat itself needs the broker to reach a worker, also
   in the web process (:func:`outbox_relay_forever`), every ``OUTBOX_RELAY_SECONDS``.

A row is marked dispatched only after the broker accepted the message (Redis answered the
push). A crash between the publish and the mark publishes it again, so delivery is *at least
once* and every outbox task must be idempotent (the confirmation task locks its
``Confirmation`` row and sends only while it is pending): exactly once in effect.

With ``CELERY_TASK_ALWAYS_EAGER`` (the embedded default, no broker) "publishing" runs the task
in process, after commit, as ``.delay()`` did; a task that fails is left for the relay.

Rows are claimed with a lease (``available_at`` moved ahead) in a short transaction, ``SELECT
... FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite takes its write lock instead), and
published outside any transaction, so a slow broker or a slow eager task never holds a
database lock, and several relays (beat, every web process) share the work without waiting
for each other.

Arguments are primary keys only (they travel through the broker and its logs); the recorded
error is the exception's class, never its message (an SMTP refusal quotes the address).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.exceptions import Retry
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import Count, F, Min
from django.utils import timezone
from prometheus_client import Counter, Gauge

from clinic.logs import get_logger
from clinic.models import OutboxMessage

log = get_logger(__name__)

# While a dispatcher holds a row (the on-commit publish, or a relay's batch) nobody else takes
# it. Longer than any publish; if the holder dies, the row is due again after this.
LEASE = timedelta(seconds=60)
# After a failed publish a row waits BACKOFF_BASE * 2**(attempts - 1), at most BACKOFF_MAX, so
# that a task that keeps failing (eager mode) is not retried every relay tick; a broker outage
# is retried sooner through the broker check below.
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(seconds=60)
# Dispatched rows are kept this long (for staff looking into "was it sent?"), then purged.
KEEP_DISPATCHED = timedelta(days=7)
DEFAULT_BATCH = 100

OUTBOX_PUBLISHED = Counter(
    "outbox_published_total", "Outbox messages the broker accepted (or eager runs).", ["task"]
)
OUTBOX_FAILED = Counter(
    "outbox_publish_failures_total", "Failed outbox publishes, by error class.", ["error"]
)
OUTBOX_PENDING = Gauge("outbox_pending", "Outbox messages not yet dispatched (last relay run).")
OUTBOX_OLDEST = Gauge(
    "outbox_oldest_pending_seconds", "Age of the oldest undispatched outbox message."
)


class OutboxError(RuntimeError):
    """The outbox was used wrongly (outside a transaction, or with arguments that are not ids)."""


@dataclass(frozen=True)
class RelayReport:
    """What one relay run did (for the beat task's result, logs and tests)."""

    dispatched: int = 0
    failed: int = 0
    pending: int = 0


# --- a per-process note that the broker is down -------------------------------------------


class _BrokerState:
    """After a failed publish, skip the on-commit attempt for a while and leave it to the relay.

    Otherwise every booking during an outage would wait for the publish timeout first. Per
    process, like a circuit breaker; the relay always tries (it is how the outage is noticed
    to be over) and a success clears the note.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_until = 0.0

    def down(self) -> bool:
        with self._lock:
            return time.monotonic() < self._down_until

    def failed(self) -> None:
        with self._lock:
            self._down_until = time.monotonic() + float(settings.OUTBOX_RELAY_SECONDS)

    def succeeded(self) -> None:
        with self._lock:
            self._down_until = 0.0


broker_state = _BrokerState()


# --- writing --------------------------------------------------------------------------------


def outbox_enqueue(*, task: str, args: Sequence[int], dedupe_key: str) -> OutboxMessage:
    """Record that ``task(*args)`` must run once the caller's transaction commits.

    Must be called inside that transaction (``transaction.atomic()``): the row commits or rolls
    back with the change. A second call with the same ``dedupe_key`` returns the first row and
    queues nothing more. After commit the task is published at once when possible; a broker
    failure is logged and left to :func:`outbox_relay`, never raised into the request or call.
    """
    if not transaction.get_connection().in_atomic_block:
        raise OutboxError("outbox_enqueue must be called inside the transaction it belongs to")
    if not all(isinstance(arg, int) and not isinstance(arg, bool) for arg in args):
        raise OutboxError("outbox arguments are primary keys (integers) only")
    now = timezone.now()
    publish_now = not broker_state.down()
    message, created = OutboxMessage.objects.get_or_create(
        dedupe_key=dedupe_key,
        defaults={
            "task": task,
            "args": list(args),
            "created_at": now,
            # Held for the on-commit publish; due for the relay at once if that is skipped.
            "available_at": now + LEASE if publish_now else now,
        },
    )
    if not created:
        log.info("outbox_duplicate", outbox_id=message.pk, task=message.task)
        return message
    log.info("outbox_enqueued", outbox_id=message.pk, task=task)
    if publish_now:
        message_id = message.pk
        transaction.on_commit(lambda: _dispatch_after_commit(message_id), robust=True)
    return message


def _dispatch_after_commit(message_id: int) -> None:
    """The on-commit publish of one row. Never raises: the row stays for the relay."""
    try:
        message = OutboxMessage.objects.filter(pk=message_id, dispatched_at__isnull=True).first()
        if message is None:
            return
        if _dispatch(message, connection=None):
            broker_state.succeeded()
    except Exception as exc:  # noqa: BLE001 - the caller's work is committed; the relay retries
        log.warning("outbox_dispatch_error", outbox_id=message_id, error=error_code(exc))


# --- publishing -----------------------------------------------------------------------------


def error_code(exc: BaseException) -> str:
    """The exception's class as ``module.Name``: says what failed without quoting any data.

    An eager task that asked to be retried raises ``Retry``; the cause is what it wraps (the
    relay's back-off stands in for the task's own retries when there is no broker).
    """
    cause = getattr(exc, "exc", None) if isinstance(exc, Retry) else None
    kind = type(cause if isinstance(cause, BaseException) else exc)
    return f"{kind.__module__}.{kind.__qualname__}"[:120]


def _celery() -> Any:
    from clinic.celery import app

    return app


def _eager() -> bool:
    return bool(_celery().conf.task_always_eager)


def broker_connection() -> Any:
    """A new broker connection whose every wait is bounded by the publish timeout.

    Nothing is inherited: the connect timeout, Redis's socket timeouts and kombu's connection
    retries (``max_retries=0``; kombu's default retries for the whole connect timeout) are set
    here, so a refused connection fails at once and a silent broker within about the timeout.
    """
    timeout = float(settings.OUTBOX_PUBLISH_TIMEOUT_SECONDS)
    return _celery().connection_for_write(
        connect_timeout=timeout,
        transport_options={
            "max_retries": 0,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        },
    )


def _publish(message: OutboxMessage, connection: Any) -> None:
    app = _celery()
    if app.conf.task_always_eager:
        # No broker: run it here, as .delay() would have. throw=True so that a failed run
        # leaves the row for the relay instead of counting as sent.
        if message.task not in app.tasks:
            # A web process never ran the worker's task discovery; do it once, here.
            app.loader.import_default_modules()
        app.tasks[message.task].apply(args=list(message.args), throw=True)
        return
    app.send_task(
        message.task,
        args=list(message.args),
        connection=connection,
        retry=True,
        retry_policy={"max_retries": 0},
    )


def _dispatch(message: OutboxMessage, *, connection: Any) -> bool:
    """Publish one claimed row and record the outcome. Returns whether the broker took it."""
    own = connection is None and not _eager()
    if own:
        connection = broker_connection()
    try:
        _publish(message, connection)
    except Exception as exc:  # noqa: BLE001 - recorded on the row; the relay retries
        _record_failure(message, exc)
        return False
    finally:
        if own:
            connection.release()
    OutboxMessage.objects.filter(pk=message.pk, dispatched_at__isnull=True).update(
        dispatched_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
    )
    OUTBOX_PUBLISHED.labels(task=message.task).inc()
    log.info("outbox_dispatched", outbox_id=message.pk, task=message.task)
    return True


def _backoff(attempts: int) -> timedelta:
    factor: int = 2 ** max(attempts - 1, 0)
    return min(BACKOFF_BASE * factor, BACKOFF_MAX)


def _record_failure(message: OutboxMessage, exc: BaseException) -> None:
    code = error_code(exc)
    attempts = message.attempts + 1
    OutboxMessage.objects.filter(pk=message.pk, dispatched_at__isnull=True).update(
        attempts=F("attempts") + 1,
        last_error=code,
        available_at=timezone.now() + _backoff(attempts),
    )
    message.attempts, message.last_error = attempts, code
    if not _eager():
        broker_state.failed()
    OUTBOX_FAILED.labels(error=code).inc()
    log.warning(
        "outbox_publish_failed",
        outbox_id=message.pk,
        task=message.task,
        attempts=attempts,
        error=code,
    )


# --- the relay ------------------------------------------------------------------------------


def _claim(limit: int) -> list[OutboxMessage]:
    """Take up to ``limit`` due rows for this relay: lock, lease, commit (a short transaction)."""
    now = timezone.now()
    with transaction.atomic():
        batch = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(dispatched_at__isnull=True, available_at__lte=now)
            .order_by("available_at", "id")[:limit]
        )
        if batch:
            OutboxMessage.objects.filter(pk__in=[row.pk for row in batch]).update(
                available_at=now + LEASE
            )
    return batch


def _release(rows: Sequence[OutboxMessage]) -> None:
    """Give back rows this relay will not try now (the broker is down): due again at once."""
    if rows:
        OutboxMessage.objects.filter(
            pk__in=[row.pk for row in rows], dispatched_at__isnull=True
        ).update(available_at=timezone.now())


def outbox_relay(*, limit: int = DEFAULT_BATCH) -> RelayReport:
    """Publish due, undispatched outbox rows, oldest first; safe to run anywhere, any time.

    Each row is marked dispatched only once the broker accepted it. With a broker, the first
    failure ends the run (the broker is down: the rest would fail the same way and are given
    back untouched); in eager mode a failing task is recorded and the others still run.
    Concurrent relays (beat and each web process) skip each other's rows.
    """
    batch = _claim(limit)
    dispatched = failed = 0
    connection = None if _eager() or not batch else broker_connection()
    try:
        for position, message in enumerate(batch):
            if _dispatch(message, connection=connection):
                dispatched += 1
                continue
            failed += 1
            if connection is not None:
                _release(batch[position + 1 :])
                break
    finally:
        if connection is not None:
            connection.release()
    if dispatched and connection is not None:
        broker_state.succeeded()
    pending = outbox_measure()
    report = RelayReport(dispatched=dispatched, failed=failed, pending=pending)
    if batch:
        log.info("outbox_relayed", dispatched=dispatched, failed=failed, pending=pending)
    return report


def outbox_measure() -> int:
    """Set the pending gauges (count, oldest age) and return the count."""
    stats = OutboxMessage.objects.filter(dispatched_at__isnull=True).aggregate(
        count=Count("id"), oldest=Min("created_at")
    )
    pending = int(stats["count"] or 0)
    OUTBOX_PENDING.set(pending)
    oldest = stats["oldest"]
    OUTBOX_OLDEST.set((timezone.now() - oldest).total_seconds() if oldest else 0.0)
    return pending


def outbox_purge(*, older_than: timedelta = KEEP_DISPATCHED) -> int:
    """Delete dispatched rows older than ``older_than``; undispatched rows are never purged."""
    deleted, _ = OutboxMessage.objects.filter(
        dispatched_at__isnull=False, dispatched_at__lt=timezone.now() - older_than
    ).delete()
    return deleted


def _relay_in_thread(limit: int) -> None:
    close_old_connections()
    try:
        outbox_relay(limit=limit)
    finally:
        close_old_connections()


async def outbox_relay_forever(
    *, interval: float | None = None, limit: int = DEFAULT_BATCH
) -> None:
    """Run :func:`outbox_relay` every ``interval`` seconds (``OUTBOX_RELAY_SECONDS``) until
    cancelled. For the web process, so that the outbox drains even when beat cannot reach a
    worker.

    The relay runs in a thread of its own, not in the thread shared by the calls' database
    work, so an eager task it runs (the embedded default sends e-mail in process) never delays
    a caller's turn. Errors (a database outage) are logged and the loop goes on. Cancelling it
    waits for a batch under way and closes the thread's database connection.
    """
    every = float(interval if interval is not None else settings.OUTBOX_RELAY_SECONDS)
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-relay")
    try:
        while True:
            try:
                await loop.run_in_executor(executor, _relay_in_thread, limit)
            except Exception as exc:  # noqa: BLE001 - a database outage must not end the loop
                log.warning("outbox_relay_error", error=error_code(exc))
            await asyncio.sleep(every)
    finally:
        closing = loop.run_in_executor(executor, connections.close_all)
        executor.shutdown(wait=False)
        await asyncio.shield(closing)
