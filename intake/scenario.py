"""Whole calls written as data: what the caller does, and what must be in the database after.

Scenario files (``intake/scenarios/*.toml``) are read by the conversation tests (as text), by
the voice tests and by ``manage.py simulate_call`` (as audio over a real WebSocket), so the
same call is checked at every layer. A file looks like::

    name = "new patient booked"
    caller_number = "+16175550142"
    caller_voice = "piper-joe"  # optional: how the simulator speaks this caller's lines
    [[patients]]              # returning patients to create first (optional)
    [[turns]]
    caller = "I'd like to book an appointment"   # or: silence = 6 / press = "0" /
    agent_says = "new or returning"              #     hangup = true / event = "slot_taken"
    confidence = 0.4                             # optional, text mode only (see Line)
    [expect]
    outcome = "booked"
    followups = ["call_dropped"]
    patient = { last_name = "Smith" }
    agent_never_says = ["1984"]

:func:`check` compares the database with ``[expect]`` and returns the differences, so a test
asserts it is empty and the simulator exits 0 only when it is.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django.utils import timezone

from clinic.models import Appointment, AppointmentType, Provider, Slot, TimeOff
from clinic.selectors import open_slots
from clinic.services import appointment_book
from intake import services
from intake.models import Call, FollowUp, Turn
from intake.selectors import patient_find_by_name_and_dob, patient_find_by_phone

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
# What a clear line on a good recogniser reports; the default for a scenario line as text.
TEXT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Line:
    """One thing the caller (or the world) does."""

    caller: str = ""
    silence: float = 0.0
    press: str = ""
    hangup: bool = False
    event: str = ""  # "slot_taken": another caller books what was just offered
    agent_says: str = ""  # a phrase the agent's answer to this line must contain
    barge_in: bool = False  # for the voice simulator: talk over the agent's prompt
    # The recogniser's confidence in a spoken line when the scenario is played as text (a
    # misheard red flag is confirmed below RED_FLAG_MIN_CONFIDENCE). Played as audio, the
    # recogniser reports its own and this is not used.
    confidence: float = TEXT_CONFIDENCE

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence}")


@dataclass(frozen=True)
class Scenario:
    name: str
    slug: str
    caller_number: str
    lines: list[Line]
    expect: dict[str, Any]
    patients: list[dict[str, Any]] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    caller_voice: str = ""
    """The simulator's voice for this caller (``voice.simulator.VOICES``); '' = its default."""


def load(slug_or_path: str | Path) -> Scenario:
    path = Path(slug_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{slug_or_path}.toml"
    data = tomllib.loads(path.read_text())
    return Scenario(
        name=data["name"],
        slug=path.stem,
        caller_number=data.get("caller_number", ""),
        lines=[Line(**line) for line in data.get("turns", [])],
        expect=data.get("expect", {}),
        patients=data.get("patients", []),
        setup=data.get("setup", {}),
        caller_voice=data.get("caller_voice", ""),
    )


def all_scenarios() -> list[Scenario]:
    return [load(path) for path in sorted(SCENARIO_DIR.glob("*.toml"))]


# --- before the call -----------------------------------------------------------------------


def with_fresh_caller(scenario: Scenario) -> Scenario:
    """The scenario played from a number no patient has, when it is a new caller's call.

    A new patient's call registers the caller's number, so the same scenario played again on
    the same database (the README's demo, run a second time) would be recognised as a
    returning patient and go another way. A scenario that creates no patients of its own is
    therefore moved to the first free number of the fictional 555-0100..0199 range of its
    area code, and an expected phone that was the caller's number moves with it.
    """
    if scenario.patients or not patient_find_by_phone(scenario.caller_number).exists():
        return scenario
    area = scenario.caller_number[:-7]  # "+1617" of "+16175550177"
    for last in range(101, 200):  # 555-0100 is the clinic's own line in the demo
        number = f"{area}555{last:04d}"
        if not patient_find_by_phone(number).exists():
            break
    else:
        return scenario  # all taken: play it as written; the check will say what differs
    expect = dict(scenario.expect)
    patient = expect.get("patient")
    if isinstance(patient, dict) and patient.get("phone") == scenario.caller_number:
        expect["patient"] = {**patient, "phone": number}
    return replace(scenario, caller_number=number, expect=expect)


def prepare(scenario: Scenario) -> None:
    """Create the scenario's returning patients and apply its calendar set-up."""
    for spec in scenario.patients:
        birth = dt.date.fromisoformat(spec["date_of_birth"])
        existing = patient_find_by_name_and_dob(spec["last_name"], birth).first()
        patient = existing or services.patient_create(
            first_name=spec["first_name"],
            last_name=spec["last_name"],
            date_of_birth=birth,
            phone=spec.get("phone", ""),
        )
        if spec.get("carrier") and not patient.coverages.exists():
            services.coverage_create(
                patient=patient, carrier=spec["carrier"], member_id=spec.get("member_id", "")
            )
        if (
            spec.get("appointment")
            and not patient.appointments.filter(status=Appointment.Status.BOOKED).exists()
        ):
            slot = open_slots(limit=20)[-1]
            kind = AppointmentType.objects.filter(providers=slot.provider).first()
            assert kind is not None, "the demo clinic has no appointment types"
            appointment_book(
                slot_id=slot.pk,
                appointment_type=kind,
                patient_id=patient.pk,
                reason=spec["appointment"],
            )
    if scenario.setup.get("no_open_slots"):
        now = timezone.now()
        for provider in Provider.objects.all():
            TimeOff.objects.create(
                provider=provider,
                start=now,
                end=now + dt.timedelta(days=400),
                reason="Scenario: clinic fully booked",
            )
        Slot.objects.filter(status=Slot.Status.FREE).update(status=Slot.Status.BLOCKED)


def take_offered_slot(call: Call) -> None:
    """Another caller books the first slot this call was offered (a race lost)."""
    offers = call.state.get("offers", [])
    assert offers, "event slot_taken needs slots to have been offered"
    slot = Slot.objects.get(pk=offers[0]["slot_id"])
    kind = AppointmentType.objects.filter(providers=slot.provider).first()
    assert kind is not None
    appointment_book(slot_id=slot.pk, appointment_type=kind, reason="another caller")


# --- after the call ------------------------------------------------------------------------


def check(scenario: Scenario, call: Call) -> list[str]:
    """Differences between ``[expect]`` and what the database holds for ``call``."""
    call.refresh_from_db()
    expect = scenario.expect
    problems: list[str] = []
    if "outcome" in expect and call.outcome != expect["outcome"]:
        problems.append(f"outcome is {call.outcome!r}, expected {expect['outcome']!r}")
    if "phase" in expect and call.phase != expect["phase"]:
        problems.append(f"phase is {call.phase!r}, expected {expect['phase']!r}")
    reasons = sorted(call.followups.values_list("reason", flat=True))
    if "followups" in expect and reasons != sorted(expect["followups"]):
        problems.append(f"follow-ups are {reasons}, expected {sorted(expect['followups'])}")
    if (
        expect.get("urgent_followup")
        and not call.followups.filter(priority=FollowUp.Priority.URGENT).exists()
    ):
        problems.append("no urgent follow-up")
    if "appointment" in expect:
        booked = call.appointment is not None and call.appointment.status == "booked"
        if booked != expect["appointment"]:
            problems.append(f"appointment booked is {booked}, expected {expect['appointment']}")
    if "appointment_status" in expect:
        status = call.appointment.status if call.appointment else None
        if status != expect["appointment_status"]:
            problems.append(
                f"appointment status {status!r}, expected {expect['appointment_status']!r}"
            )
    problems += _check_patient(call, expect.get("patient"))
    if "coverage" in expect:
        coverage = call.patient.coverages.first() if call.patient else None
        for key, value in expect["coverage"].items():
            actual = getattr(coverage, key, None)
            if actual != value:
                problems.append(f"coverage {key} is {actual!r}, expected {value!r}")
    agent_text = " ".join(
        call.turns.filter(speaker=Turn.Speaker.AGENT).values_list("text", flat=True)
    ).lower()
    for phrase in expect.get("agent_never_says", []):
        if phrase.lower() in agent_text:
            problems.append(f"the agent said {phrase!r}, which it must not")
    for phrase in expect.get("agent_says", []):
        if phrase.lower() not in agent_text:
            problems.append(f"the agent never said {phrase!r}")
    if expect.get("transcript_kept") and not call.turns.filter(speaker="caller").exists():
        problems.append("no caller turns were stored")
    return problems


def _check_patient(call: Call, wanted: dict[str, Any] | None) -> list[str]:
    if wanted is None:
        return []
    if call.patient is None:
        return ["no patient is linked to the call"]
    problems = []
    for key, value in wanted.items():
        actual = getattr(call.patient, key)
        if isinstance(actual, dt.date):
            actual = actual.isoformat()
        if actual != value:
            problems.append(f"patient {key} is {actual!r}, expected {value!r}")
    return problems
