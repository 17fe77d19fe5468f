"""Celery against a real broker inside a test: switch the app's broker, run a worker process.

The project's Celery app is configured once from settings (eager without ``REDIS_URL``).
Tests of the outbox need both modes in both CI passes, so they switch the app's
configuration for the length of a test (``override_settings`` cannot: Celery reads settings
once) and start a real ``celery worker`` subprocess that shares the test database.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import redis
from django.db import connection

from clinic.celery import app as celery_app
from clinic.config import BASE_DIR
from tests.conftest import ThrowawayRedis

QUEUE = "celery"  # Celery's default queue: a Redis list of pending messages


@contextmanager
def celery_mode(*, eager: bool, broker_url: str | None = None) -> Iterator[None]:
    """Run the app eagerly, or publish to ``broker_url``, until the block ends."""
    conf = celery_app.conf
    saved = {"task_always_eager": conf.task_always_eager, "broker_url": conf.broker_url}
    conf.update(task_always_eager=eager, **({"broker_url": broker_url} if broker_url else {}))
    try:
        yield
    finally:
        conf.update(saved)


def restart_redis(server: ThrowawayRedis) -> None:
    """Start a new, empty redis-server on the stopped one's port (the fixture stops it later)."""
    binary = shutil.which("redis-server")
    assert binary
    server.stop()
    server.process = subprocess.Popen(
        [binary, "--port", str(server.port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _answers(server.url), 10, "redis-server did not restart")


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def queued(url: str) -> int:
    """Messages waiting in the default queue plus those a worker holds unacknowledged."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    return int(client.llen(QUEUE)) + int(client.hlen("unacked"))


def wait_for(condition: Callable[[], bool], seconds: float, failure: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.1)


def database_url() -> str:
    """``DATABASE_URL`` of the test database, for a subprocess that must see the test's rows."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = quote(settings.get("USER") or "")
    password = quote(settings.get("PASSWORD") or "")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{settings['NAME']}"


@contextmanager
def celery_worker_process(broker_url: str, mail_dir: Path, log_path: Path) -> Iterator[None]:
    """``celery -A clinic worker`` as deployed (solo pool), on the test database and broker.

    E-mail goes to files in ``mail_dir`` (``EMAIL_URL=filemail://``), one per message, so the
    test counts what the worker sent. The worker's output goes to ``log_path`` (shown when a
    test fails). Stopped with SIGTERM (warm shutdown), killed if it does not stop.
    """
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": broker_url,
        "EMAIL_URL": f"filemail://{mail_dir}",
    }
    command = [sys.executable, "-m", "celery", "-A", "clinic", "worker", "--pool", "solo"]
    command += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    command += ["--hostname", f"outbox-test-{os.getpid()}@%h"]
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=log)
        try:
            yield
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=5)
