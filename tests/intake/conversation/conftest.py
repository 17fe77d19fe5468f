"""The demo clinic (providers, visit types, weekly hours, slots) for whole-call tests."""

from __future__ import annotations

import pytest

from clinic.demo import load_demo_calendar
from clinic.services import slots_generate


@pytest.fixture
def demo_clinic(transactional_db: None) -> None:
    load_demo_calendar()
    slots_generate(horizon_days=30)
