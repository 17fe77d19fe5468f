"""Calendar fixtures: a small clinic with one provider, one visit type and weekday hours."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from clinic.models import AppointmentType, AvailabilityRule, Provider
from clinic.services import slots_generate
from tests.clinic.factories import AppointmentTypeFactory, ProviderFactory, RuleFactory


@dataclass
class SmallClinic:
    provider: Provider
    visit: AppointmentType
    rule: AvailabilityRule


@pytest.fixture
def small_clinic(db: None) -> SmallClinic:
    provider = ProviderFactory.create(name="Dr. Amara Patel")
    visit = AppointmentTypeFactory.create(name="Sick visit", providers=[provider])
    rule = RuleFactory.create(provider=provider, weekdays=[0, 1, 2, 3, 4, 5, 6])
    slots_generate(horizon_days=14)
    return SmallClinic(provider, visit, rule)
