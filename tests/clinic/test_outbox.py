"""The transactional outbox: rows commit with the change, reach the broker once it is there.

The task used throughout is the calendar's real ``clinic.generate_slots`` (no arguments: every
provider); its effect (slots) shows whether it ran. Broker tests publish to a
throwaway redis-server and read the queue back with redis-py; eager tests run the task in
process, as the embedded default does. Both run in both CI passes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections, transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from clinic import outbox
from clinic.celery import app as celery_app
from clinic.config import ConfigError, load_config
from clinic.demo import load_demo_calendar
from clinic.models import OutboxMessage, Provider, Slot
from clinic.outbox import OutboxError, outbox_enqueue, outbox_purge, outbox_relay
from clinic.settings import REDIS_SOCKET_TIMEOUT
from tests.celery_broker import QUEUE, celery_mode, restart_redis
from tests.conftest import ThrowawayRedis

GENERATE = "clinic.generate_slots"


@pytest.fixture(autouse=True)
def broker_state_reset() -> Iterator[None]:
    """The "broker is down" note is per process; one test's outage must not leak into the next."""
    outbox.broker_state.succeeded()
    yield
    outbox.broker_state.succeeded()


@pytest.fixture
def provider(transactional_db: None) -> Provider:
    load_demo_calendar()
    return Provider.objects.get(name="Dr. Luis Moreno")


@pytest.fixture
def eager() -> Iterator[None]:
    with celery_mode(eager=True):
        yield


@pytest.fixture
def on_redis(throwaway_redis: ThrowawayRedis) -> Iterator[ThrowawayRedis]:
    with celery_mode(eager=False, broker_url=throwaway_redis.url):
        yield throwaway_redis


def enqueue_generate(provider: Provider, key: str = "generate:1") -> OutboxMessage:
    with transaction.atomic():
        return outbox_enqueue(task=GENERATE, args=[], dedupe_key=key)


def published(server: ThrowawayRedis) -> list[tuple[str, list[int]]]:
    """(task name, args) of every message waiting in the queue, read as a worker would."""
    client = redis.Redis.from_url(server.url, socket_timeout=2)
    messages = []
    for raw in client.lrange(QUEUE, 0, -1):
        envelope = json.loads(raw)
        args = json.loads(base64.b64decode(envelope["body"]))[0]
        messages.append((envelope["headers"]["task"], args))
    return messages


# --- writing --------------------------------------------------------------------------------


def test_enqueue_outside_a_transaction_is_refused(provider: Provider) -> None:
    with pytest.raises(OutboxError, match="inside the transaction"):
        outbox_enqueue(task=GENERATE, args=[], dedupe_key="generate:1")
    assert not OutboxMessage.objects.exists()


def test_arguments_other_than_ids_are_refused(provider: Provider) -> None:
    with pytest.raises(OutboxError, match="primary keys"), transaction.atomic():
        outbox_enqueue(task=GENERATE, args=["jane@example.com"], dedupe_key="x")  # type: ignore[list-item]
    assert not OutboxMessage.objects.exists()


def test_a_rolled_back_transaction_writes_nothing_and_runs_nothing(
    provider: Provider, eager: None
) -> None:
    with pytest.raises(RuntimeError, match="the change failed"), transaction.atomic():
        outbox_enqueue(task=GENERATE, args=[], dedupe_key="generate:1")
        raise RuntimeError("the change failed")

    assert not OutboxMessage.objects.exists()
    assert not Slot.objects.filter(provider=provider).exists()


def test_eager_the_task_runs_after_commit_not_before(provider: Provider, eager: None) -> None:
    with transaction.atomic():
        outbox_enqueue(task=GENERATE, args=[], dedupe_key="generate:1")
        assert not Slot.objects.filter(provider=provider).exists()

    assert Slot.objects.filter(provider=provider).exists()
    message = OutboxMessage.objects.get()
    assert message.dispatched_at is not None
    assert (message.attempts, message.last_error) == (1, "")


def test_the_same_dedupe_key_is_one_message(provider: Provider, on_redis: ThrowawayRedis) -> None:
    first = enqueue_generate(provider)
    second = enqueue_generate(provider)

    assert first.pk == second.pk
    assert OutboxMessage.objects.count() == 1
    assert published(on_redis) == [(GENERATE, [])]


# --- publishing to a broker -----------------------------------------------------------------


def test_after_commit_the_message_is_on_the_broker(
    provider: Provider, on_redis: ThrowawayRedis
) -> None:
    with transaction.atomic():
        outbox_enqueue(task=GENERATE, args=[], dedupe_key="generate:1")
        assert published(on_redis) == []

    assert published(on_redis) == [(GENERATE, [])]
    assert OutboxMessage.objects.get().dispatched_at is not None
    assert not Slot.objects.exists()  # published, not run here: a worker runs it


def test_broker_down_the_commit_stands_and_the_row_waits(
    provider: Provider, on_redis: ThrowawayRedis
) -> None:
    on_redis.stop()

    enqueue_generate(provider)  # commits without raising

    message = OutboxMessage.objects.get()
    assert message.dispatched_at is None
    assert message.attempts == 1
    assert message.last_error == "kombu.exceptions.OperationalError"
    # The next booking does not wait for a broker known to be down: left to the relay at once.
    enqueue_generate(provider, key="generate:2")
    second = OutboxMessage.objects.get(dedupe_key="generate:2")
    assert (second.attempts, second.dispatched_at) == (0, None)
    assert second.available_at <= timezone.now()


def test_the_relay_dispatches_each_waiting_row_once_when_the_broker_is_back(
    provider: Provider, on_redis: ThrowawayRedis
) -> None:
    on_redis.stop()
    enqueue_generate(provider, key="generate:1")
    enqueue_generate(provider, key="generate:2")
    assert outbox_relay().dispatched == 0  # still down: nothing marked

    restart_redis(on_redis)
    OutboxMessage.objects.update(available_at=timezone.now())  # skip the back-off
    report = outbox_relay()
    again = outbox_relay()

    assert (report.dispatched, report.failed, report.pending) == (2, 0, 0)
    assert (again.dispatched, again.pending) == (0, 0)
    assert published(on_redis) == [(GENERATE, []), (GENERATE, [])]
    assert not OutboxMessage.objects.filter(dispatched_at__isnull=True).exists()


def test_the_relay_stops_at_the_first_broker_failure_and_gives_the_rest_back(
    provider: Provider, on_redis: ThrowawayRedis
) -> None:
    on_redis.stop()
    for number in range(3):
        enqueue_generate(provider, key=f"generate:{number}")

    report = outbox_relay()

    assert (report.dispatched, report.failed, report.pending) == (0, 1, 3)
    rows = {row.dedupe_key: row for row in OutboxMessage.objects.all()}
    # generate:0 failed at commit and backs off; generate:1 was the relay's one try; the
    # refused connection ended the run, and generate:2 was given back untried and due.
    assert [rows[f"generate:{n}"].attempts for n in range(3)] == [1, 1, 0]
    assert rows["generate:2"].available_at <= timezone.now()


def test_a_row_whose_on_commit_publish_is_under_way_is_left_to_it(
    provider: Provider, on_redis: ThrowawayRedis
) -> None:
    relayed: list[int] = []
    with transaction.atomic():
        # Registered first, so it runs after commit and before the row's own publish: the
        # moment another process's relay could find the row.
        transaction.on_commit(lambda: relayed.append(outbox_relay().dispatched))
        outbox_enqueue(task=GENERATE, args=[], dedupe_key="generate:1")

    assert relayed == [0]
    assert published(on_redis) == [(GENERATE, [])]
    assert OutboxMessage.objects.get().dispatched_at is not None


def test_a_silent_broker_costs_the_publish_timeout_not_the_socket_default(
    provider: Provider,
) -> None:
    # A broker that accepts connections and never answers (a hung Redis, a half-open link).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    try:
        with (
            override_settings(OUTBOX_PUBLISH_TIMEOUT_SECONDS=0.3),
            celery_mode(eager=False, broker_url=url),
        ):
            started = time.monotonic()
            enqueue_generate(provider)
            waited = time.monotonic() - started
    finally:
        listener.close()

    message = OutboxMessage.objects.get()
    assert message.dispatched_at is None
    assert message.last_error  # the timeout, recorded
    # Without the outbox's own timeout the socket default would hold the commit this long.
    assert waited < REDIS_SOCKET_TIMEOUT / 3


# --- the relay in eager mode, the loop, housekeeping ------------------------------------------


def test_eager_a_failing_task_is_recorded_and_retried_later(
    provider: Provider, eager: None
) -> None:
    # A task name no longer registered (renamed in a release while its row waited).
    with transaction.atomic():
        outbox_enqueue(task="clinic.no_such_task", args=[1], dedupe_key="gone")
        outbox_enqueue(task=GENERATE, args=[], dedupe_key="generate:1")

    gone = OutboxMessage.objects.get(dedupe_key="gone")
    assert (gone.attempts, gone.last_error) == (1, "celery.exceptions.NotRegistered")
    assert gone.available_at > timezone.now()  # backs off instead of failing every tick
    assert OutboxMessage.objects.get(dedupe_key="generate:1").dispatched_at is not None
    assert outbox_relay().dispatched == 0  # not due yet


async def test_the_server_loop_relays_until_cancelled(provider: Provider, eager: None) -> None:
    await OutboxMessage.objects.acreate(task=GENERATE, args=[], dedupe_key="left-by-a-dead-process")
    loop = asyncio.create_task(outbox.outbox_relay_forever(interval=0.05))
    try:
        for _ in range(200):
            if await Slot.objects.filter(provider=provider).aexists():
                break
            await asyncio.sleep(0.05)
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop

    message = await OutboxMessage.objects.aget()
    assert message.dispatched_at is not None
    await sync_to_async(connections.close_all)()  # the async ORM's thread outlives the test


def test_the_gauges_show_what_is_pending(provider: Provider, on_redis: ThrowawayRedis) -> None:
    on_redis.stop()
    enqueue_generate(provider)
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(minutes=5))

    outbox_relay()

    assert REGISTRY.get_sample_value("outbox_pending") == 1
    assert (REGISTRY.get_sample_value("outbox_oldest_pending_seconds") or 0) >= 300


def test_purge_deletes_old_dispatched_rows_only(provider: Provider) -> None:
    old = timezone.now() - timedelta(days=8)
    OutboxMessage.objects.create(task=GENERATE, dedupe_key="old-sent", dispatched_at=old)
    OutboxMessage.objects.create(
        task=GENERATE, dedupe_key="recent-sent", dispatched_at=timezone.now()
    )
    OutboxMessage.objects.create(task=GENERATE, dedupe_key="old-waiting", created_at=old)

    assert outbox_purge() == 1
    assert set(OutboxMessage.objects.values_list("dedupe_key", flat=True)) == {
        "recent-sent",
        "old-waiting",
    }


def test_operators_read_the_outbox_in_the_admin_and_cannot_edit_it(
    provider: Provider, admin_client: Client, on_redis: ThrowawayRedis
) -> None:
    on_redis.stop()
    message = enqueue_generate(provider, key="confirmation:41")

    listing = admin_client.get(reverse("admin:clinic_outboxmessage_changelist"))
    detail = admin_client.get(reverse("admin:clinic_outboxmessage_change", args=[message.pk]))
    adding = admin_client.get(reverse("admin:clinic_outboxmessage_add"))

    assert listing.status_code == 200
    assert "confirmation:41" in listing.text and "kombu.exceptions.OperationalError" in listing.text
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert adding.status_code == 403


def test_beat_runs_the_relay_at_the_configured_interval(provider: Provider, eager: None) -> None:
    every = settings.OUTBOX_RELAY_SECONDS
    entry = settings.CELERY_BEAT_SCHEDULE["clinic-outbox-relay"]
    assert (entry["task"], entry["schedule"]) == ("clinic.outbox_relay", every)
    assert entry["options"]["expires"] == every  # a late run is dropped, not piled up
    OutboxMessage.objects.create(task=GENERATE, dedupe_key="left-behind")

    celery_app.loader.import_default_modules()
    result = celery_app.tasks["clinic.outbox_relay"].apply().get()

    assert result == {"dispatched": 1, "failed": 0, "pending": 0}
    assert Slot.objects.exists()


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("OUTBOX_PUBLISH_TIMEOUT_SECONDS", "0", "must be at least 0.1"),
        ("OUTBOX_RELAY_SECONDS", "soon", "expected a number"),
        ("OUTBOX_RELAY_SECOND", "15", "unknown setting"),
    ],
)
def test_outbox_settings_are_validated_at_start(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config({variable: value})
    assert str(refused.value).startswith(f"{variable}: {problem}")
