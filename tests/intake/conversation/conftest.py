"""The demo clinic (providers, visit types, weekly hours, slots) for whole-call tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from clinic.demo import load_demo_calendar
from clinic.services import slots_generate


@pytest.fixture
def demo_clinic(transactional_db: None) -> None:
    load_demo_calendar()
    slots_generate(horizon_days=30)


@pytest.fixture(autouse=True)
async def close_async_orm_connections() -> AsyncIterator[None]:
    """Close the database connections the async ORM opened in asgiref's worker thread.

    ``sync_to_async`` and the ``a*`` queryset methods (the scenario runner uses both) run in
    one thread shared by the whole test session; its connections outlive every test, and on
    PostgreSQL the open session keeps pytest-django from dropping the test database.
    """
    yield
    await sync_to_async(connections.close_all)()
