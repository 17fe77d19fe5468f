"""Whole calls, written as data files, played as text through the rules engine."""

from __future__ import annotations

import pytest
from django.test import override_settings

from intake import scenario as scenarios
from intake.understanding.rules import RulesEngine
from tests.intake.conversation.runner import play

ALL = scenarios.all_scenarios()


def settings_for(scenario: scenarios.Scenario) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if "opening_hours" in scenario.setup:
        overrides["CLINIC_OPENING_HOURS"] = scenario.setup["opening_hours"]
    if "front_desk_number" in scenario.setup:
        overrides["FRONT_DESK_NUMBER"] = scenario.setup["front_desk_number"]
    return overrides


@pytest.mark.parametrize("scenario", ALL, ids=[s.slug for s in ALL])
async def test_scenario_with_the_rules_engine(scenario, demo_clinic) -> None:
    with override_settings(**settings_for(scenario)):
        played = await play(scenario, RulesEngine())
    assert played.problems == [], "\n".join(["", *played.agent_lines])
