"""Fixtures for intake tests: staff users per group, and a Celery worker when there is a broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections

from clinic.celery import app as celery_app
from tests.factories import StaffUserFactory

FRONT_DESK = "Front desk"
ADMINISTRATORS = "Administrators"


@pytest.fixture
def front_desk(db: None) -> User:
    return StaffUserFactory.create(username="frontdesk1", group=FRONT_DESK)


@pytest.fixture
def administrator(db: None) -> User:
    return StaffUserFactory.create(username="administrator1", group=ADMINISTRATORS)


@pytest.fixture
def staff_without_group(db: None) -> User:
    return StaffUserFactory.create(username="nogroup1")


@pytest.fixture
def superuser(db: None) -> User:
    return StaffUserFactory.create(username="root1", is_superuser=True)


def _close_worker_connections(**_: Any) -> None:
    # The worker thread's database connections would otherwise outlive the test and keep
    # PostgreSQL from dropping the test database.
    connections.close_all()


@pytest.fixture
def celery_worker_if_broker(transactional_db: None) -> Iterator[None]:
    """A real Celery worker (in a thread) when a broker is configured; nothing when eager.

    With ``REDIS_URL`` set, ``.delay()`` goes to Redis and only a worker runs the task, which
    sees the test's data because the test runs with ``transaction=True`` (committed rows).
    Without it, tasks run eagerly in the calling thread. Tests wait for the task's effect in
    the database, not for a result (there is no result backend).
    """
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield
        return
    celery_app.control.purge()  # leftovers from earlier runs must not reach this worker
    task_postrun.connect(_close_worker_connections, weak=False)
    try:
        with start_worker(celery_app, perform_ping_check=False, pool="solo"):
            yield
    finally:
        task_postrun.disconnect(_close_worker_connections)
