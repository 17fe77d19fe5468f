"""Readiness checks: each one really talks to its dependency and reports its latency.

A load balancer takes a process out of rotation when ``/health/ready`` answers 503, so every
check has a short timeout and one failing dependency never hangs the probe.

Only what is wrong with *this process* makes it unready (it is draining). A shared
dependency that is down (the database, Redis, the broker) is down for every process alike:
taking them all out of rotation would leave Twilio nothing to call, while each process can
still answer the phone and put the caller through to a person (``voice.views.answer``), and
Redis is not on a call's audio path at all. Those checks are reported, and the status says
"degraded", but the answer stays 200; alerting on them is the monitoring's job
(``health_check_failed`` log lines, the metrics).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from clinic import lifecycle
from clinic.logs import get_logger

log = get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    latency_ms: float
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        result: dict[str, object] = {
            "status": "ok" if self.ok else "fail",
            "latency_ms": self.latency_ms,
        }
        if self.detail:
            result["detail"] = self.detail
        return result


def _database_roundtrip() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # Health probes run on a worker thread; do not leave a connection open there.
        connection.close()


async def check_database() -> None:
    await sync_to_async(_database_roundtrip, thread_sensitive=False)()


async def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("health.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.ping", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned a different message")


async def check_redis() -> None:
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.from_url(
        str(settings.REDIS_URL),
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


class Draining(RuntimeError):
    """The process was told to stop: it finishes its calls and takes no new ones."""


async def check_not_draining() -> None:
    # First thing a stopping process changes: the load balancer sends new calls elsewhere.
    if lifecycle.draining():
        raise Draining()


def _broker_roundtrip() -> None:
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, timeout=int(CHECK_TIMEOUT_SECONDS))


async def check_celery_broker() -> None:
    await sync_to_async(_broker_roundtrip, thread_sensitive=False)()


CRITICAL_CHECKS = frozenset({"process"})
"""Checks whose failure makes this process unready (503); the rest only degrade it."""


def enabled_checks() -> dict[str, Callable[[], Awaitable[None]]]:
    """The checks that apply to this configuration (Redis ones only when it is configured)."""
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": check_database,
        "channel_layer": check_channel_layer,
    }
    if lifecycle.draining():
        checks["process"] = check_not_draining
    if settings.REDIS_URL:
        checks["redis"] = check_redis
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        checks["celery_broker"] = check_celery_broker
    return checks


async def _run(name: str, check: Callable[[], Awaitable[None]]) -> CheckResult:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        latency = round((time.perf_counter() - started) * 1000, 1)
        detail = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        log.warning("health_check_failed", check=name, error=detail, latency_ms=latency)
        return CheckResult(name, False, latency, detail)
    return CheckResult(name, True, round((time.perf_counter() - started) * 1000, 1))


async def run_checks() -> list[CheckResult]:
    """Run every enabled check concurrently."""
    checks = enabled_checks()
    return list(await asyncio.gather(*(_run(name, check) for name, check in checks.items())))
