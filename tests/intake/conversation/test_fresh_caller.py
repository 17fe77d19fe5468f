"""A new caller's scenario can be played again on the same database (the README's demo)."""

from __future__ import annotations

import datetime as dt

import pytest

from intake import scenario as scenarios
from intake import services

pytestmark = pytest.mark.django_db


def test_a_new_callers_scenario_moves_to_a_free_number_once_its_number_is_a_patients() -> None:
    scenario = scenarios.load("new_patient_by_voice")
    assert scenarios.with_fresh_caller(scenario) is scenario  # nobody has the number yet

    services.patient_create(
        first_name="Michael",
        last_name="Brown",
        date_of_birth=dt.date(1984, 3, 12),
        phone=scenario.caller_number,
    )
    moved = scenarios.with_fresh_caller(scenario)

    assert moved.caller_number == "+16175550101"  # 0100 is the demo clinic's own line
    assert moved.expect["patient"]["phone"] == "+16175550101"
    assert scenario.expect["patient"]["phone"] == "+16175550177"  # the loaded one is unchanged
    assert moved.lines == scenario.lines


def test_a_scenario_with_its_own_patients_keeps_its_number() -> None:
    scenario = scenarios.load("returning_patient_keypad")
    scenarios.prepare(scenario)

    assert scenarios.with_fresh_caller(scenario) is scenario
