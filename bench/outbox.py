"""Outbox benchmark: what a commit that queues Celery work costs, broker up or down, and how
fast the relay empties a backlog.

Run on the embedded SQLite:      .venv/bin/python -m bench.outbox
Run on PostgreSQL:               DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
                                     .venv/bin/python -m bench.outbox

Needs ``redis-server`` on the PATH: it starts a throwaway one on a spare loopback port and
publishes to it (nothing consumes the messages). It creates and destroys its own database.
Broker states measured, for the transaction that writes one outbox row and its after-commit
publish (what a booking turn pays on top of its own writes):

- up: a Redis that answers;
- refused: Redis stopped (connection refused);
- known down: right after a failure, when the publish is left to the relay;
- silent: a listener that accepts and never answers (a hung broker), where the publish
  timeout (``OUTBOX_PUBLISH_TIMEOUT_SECONDS``) is what the caller waits.

Then a backlog of rows left during an outage is relayed in batches. Figures are printed,
never asserted.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
os.environ.setdefault("LOG_LEVEL", "error")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402

from clinic import outbox  # noqa: E402
from clinic.celery import app as celery_app  # noqa: E402
from clinic.models import OutboxMessage  # noqa: E402
from tests.conftest import free_port  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "30"))
BACKLOG = 1000
TASK = "clinic.release_expired_holds"  # published only; nothing runs it here
_counter = iter(range(10**9))


def start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed (Debian package redis-server)")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


def commit_one() -> float:
    """Milliseconds for a transaction that queues one message, after-commit publish included."""
    started = time.perf_counter()
    with transaction.atomic():
        outbox.outbox_enqueue(task=TASK, args=[], dedupe_key=f"bench:{next(_counter)}")
    return (time.perf_counter() - started) * 1000


def report(label: str, measure: Callable[[], float], repeats: int = REPEATS) -> None:
    times = sorted(measure() for _ in range(repeats))
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    print(
        f"  {label:<34} median {statistics.median(times):8.1f} ms   p95 {p95:8.1f} ms   "
        f"max {times[-1]:8.1f} ms   (n={repeats})"
    )


def run() -> None:
    port = free_port()
    redis_server = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    celery_app.conf.update(task_always_eager=False, broker_url=url)
    timeout = settings.OUTBOX_PUBLISH_TIMEOUT_SECONDS
    print(f"== outbox benchmark on {connection.vendor}, publish timeout {timeout} s")
    print("-- one transaction that queues a message, and its after-commit publish")
    try:
        report("broker up", commit_one)

        redis_server.terminate()
        redis_server.wait(timeout=10)

        def refused() -> float:
            outbox.broker_state.succeeded()  # measure the attempt, not the skip
            return commit_one()

        report("broker stopped (refused)", refused)
        report("broker known down (left to relay)", commit_one)

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        celery_app.conf.update(broker_url=f"redis://127.0.0.1:{listener.getsockname()[1]}/0")

        def silent() -> float:
            outbox.broker_state.succeeded()
            return commit_one()

        report("broker silent (hung)", silent, repeats=min(REPEATS, 5))
        listener.close()

        print(f"-- relay of a backlog of {BACKLOG} rows left during the outage")
        OutboxMessage.objects.all().delete()
        OutboxMessage.objects.bulk_create(
            OutboxMessage(task=TASK, args=[], dedupe_key=f"backlog:{n}") for n in range(BACKLOG)
        )
        redis_server = start_redis(port)
        celery_app.conf.update(broker_url=url)
        started = time.perf_counter()
        runs = 0
        while outbox.outbox_relay(limit=outbox.DEFAULT_BATCH).dispatched:
            runs += 1
        elapsed = time.perf_counter() - started
        print(
            f"  {BACKLOG} rows in {runs} relay runs: {elapsed:.2f} s, "
            f"{BACKLOG / elapsed:.0f} messages/s"
        )
    finally:
        redis_server.terminate()
        redis_server.wait(timeout=10)


def main() -> None:
    setup_test_environment()
    test_settings = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "postgresql":
        test_settings["NAME"] = "clinic_bench_outbox"
    else:
        test_settings["NAME"] = str(Path(tempfile.gettempdir()) / "clinic-bench-outbox.sqlite3")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run()
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
