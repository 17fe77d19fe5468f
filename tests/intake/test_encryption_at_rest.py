"""A stolen database file or log file reveals no patient's details.

The scan test loads realistic patients, coverage, calls, turns, conversation state and
follow-ups through the services the agent uses, then reads the raw database (the SQLite file
bytes, or a pg_dump on PostgreSQL) and looks for every piece of PHI in the forms a thief
would try. A control value stored in a plain column proves the scan does see the rows.
"""

from __future__ import annotations

import datetime
import logging
import os
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.exceptions import FieldError
from django.db import connection
from django.db.models import Model

from intake import services
from intake.models import Call, Coverage, FollowUp, Patient, Turn
from tests.factories import CoverageFactory, PatientFactory, TurnFactory


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    dob: datetime.date
    phone: str  # as the caller said it
    national: str  # ten digits
    email: str
    street: str
    member_id: str
    group_number: str
    sentences: tuple[str, ...]


PEOPLE = (
    Person(
        first="Margarita",
        last="Okonkwo-Villanueva",
        dob=datetime.date(1984, 3, 12),
        phone="(617) 555-0167",
        national="6175550167",
        email="margarita.okonkwo@example.org",
        street="48 Brookline Terrace",
        member_id="XQZ884213007",
        group_number="GRP-551902",
        sentences=(
            "my chest has been hurting since last tuesday",
            "I take lisinopril twenty milligrams every morning",
        ),
    ),
    Person(
        first="Bartholomew",
        last="Szczepański",
        dob=datetime.date(1951, 11, 30),
        phone="+1 415 555 0142",
        national="4155550142",
        email="bart.szczepanski@example.net",
        street="1207 Larkspur Avenue",
        member_id="WJH302918455",
        group_number="GRP-730044",
        sentences=(
            "I need to reschedule my colonoscopy consultation",
            "the pharmacy says my prescription for metformin ran out",
        ),
    ),
)
CONTROL_CALL_SID = "CA0f3b9e2d7c41a58e6b0d9f12c3a4b5e6"


def _dob_forms(day: datetime.date) -> list[str]:
    return [
        day.isoformat(),
        f"{day:%m/%d/%Y}",
        f"{day.month}/{day.day}/{day.year}",
        f"{day:%Y%m%d}",
        f"{day:%B} {day.day}, {day.year}",
    ]


def _phone_forms(national: str) -> list[str]:
    area, exchange, line = national[:3], national[3:6], national[6:]
    return [
        national,
        f"+1{national}",
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"{area} {exchange} {line}",
    ]


def _needles(person: Person) -> list[str]:
    return [
        person.first,
        person.last,
        *_dob_forms(person.dob),
        *_phone_forms(person.national),
        person.email,
        person.street,
        person.member_id,
        person.group_number,
        *person.sentences,
    ]


def _load_intake_data() -> list[str]:
    """Create realistic intake data as the agent would, and return every PHI string in it."""
    needles: list[str] = []
    for number, person in enumerate(PEOPLE):
        patient = services.patient_create(
            first_name=person.first,
            last_name=person.last,
            date_of_birth=person.dob,
            phone=person.phone,
            email=person.email,
            address=f"{person.street}\nBoston, MA 02134",
        )
        services.coverage_create(
            patient=patient,
            carrier="Aetna",
            member_id=person.member_id,
            group_number=person.group_number,
        )
        call = services.call_start(
            call_sid=CONTROL_CALL_SID if number == 0 else f"CA{number:032x}",
            caller_number=f"+1{person.national}",
        )
        services.turn_record(call=call, speaker="agent", text="Thank you for calling.")
        services.turn_record(
            call=call, speaker="caller", text=f"My name is {person.first} {person.last}"
        )
        for sentence in person.sentences:
            services.turn_record(call=call, speaker="caller", text=sentence, stt_final_ms=210)
        services.call_update(
            call=call,
            phase="reason",
            patient=patient,
            state={
                "caller": {"first_name": person.first, "last_name": person.last},
                "dob": person.dob,
                "member_id": person.member_id,
                "reason": person.sentences[0],
            },
        )
        services.followup_open(
            reason="emergency",
            call=call,
            summary=f"{person.first} reports: {person.sentences[0]}",
        )
        followup = services.followup_open(reason="callback_requested", call=call)
        followup.notes = f"Call {person.first} back at {person.phone}, DOB {person.dob}"
        followup.save()
        services.call_finish(call=call, outcome="emergency")
        needles += _needles(person)
    # Faker-made patients too; only their long values are scanned (a three-letter name can
    # occur by chance inside base64 ciphertext).
    for coverage in CoverageFactory.create_batch(3):
        patient = coverage.patient
        needles += [patient.phone, patient.phone[2:], patient.date_of_birth.isoformat()]
        needles += [coverage.member_id, patient.email]
        needles += [name for name in (patient.first_name, patient.last_name) if len(name) >= 7]
    for turn in TurnFactory.create_batch(3):
        needles.append(turn.text)
    return needles


def _sqlite_bytes(tmp_path: Path) -> bytes:
    """The database as a thief would copy it: the file, its WAL, and a consolidated copy."""
    connection.ensure_connection()
    copy = tmp_path / "copy.sqlite3"
    # A consolidated copy works for in-memory and file test databases alike.
    raw = connection.connection
    assert isinstance(raw, sqlite3.Connection)
    target = sqlite3.connect(copy)
    raw.backup(target)
    target.close()
    blob = copy.read_bytes()
    name = str(connection.settings_dict["NAME"])
    for suffix in ("", "-wal", "-journal"):
        path = Path(name + suffix)
        if path.is_file():
            blob += path.read_bytes()
    return blob


def _postgres_dump() -> bytes:
    settings = connection.settings_dict
    command = ["pg_dump", "--data-only", "--no-owner", "--dbname", settings["NAME"]]
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if settings.get(key):
            command += [flag, str(settings[key])]
    env = {**os.environ}
    if settings.get("PASSWORD"):
        env["PGPASSWORD"] = str(settings["PASSWORD"])
    return subprocess.run(command, check=True, capture_output=True, env=env, timeout=120).stdout


def _raw_database(tmp_path: Path) -> bytes:
    if connection.vendor == "sqlite":
        return _sqlite_bytes(tmp_path)
    if connection.vendor == "postgresql":
        return _postgres_dump()
    raise AssertionError(f"no raw scan for {connection.vendor}")


@pytest.mark.django_db(transaction=True)
def test_raw_database_contains_no_phi(tmp_path: Path) -> None:
    needles = _load_intake_data()
    assert Turn.objects.count() >= 11 and Patient.objects.count() == 5

    blob = _raw_database(tmp_path).lower()

    # Control: a plain column of the same rows is visible, so the scan reads real data.
    assert CONTROL_CALL_SID.lower().encode() in blob
    assert b"aetna" in blob
    found = sorted({needle for needle in needles if needle.lower().encode() in blob})
    assert found == []


@pytest.mark.django_db
def test_logs_of_an_intake_contain_no_phi(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        needles = _load_intake_data()

    logged = "\n".join(f"{record.getMessage()} {record.msg!r}" for record in caplog.records)
    assert "turn_recorded" in logged and "call_finished" in logged
    assert [needle for needle in needles if needle.lower() in logged.lower()] == []


@pytest.mark.django_db
def test_encrypted_fields_read_back_as_python_values() -> None:
    patient = PatientFactory.create(date_of_birth=datetime.date(1984, 3, 12))
    call = services.call_start(call_sid="CA" + "1" * 32, caller_number="+16175550167")
    services.call_update(call=call, state={"dob": datetime.date(1984, 3, 12), "step": 2})

    fresh_patient = Patient.objects.get(pk=patient.pk)
    fresh_call = Call.objects.get(pk=call.pk)

    assert fresh_patient.date_of_birth == datetime.date(1984, 3, 12)
    assert fresh_call.state == {"dob": "1984-03-12", "step": 2}
    assert Call.objects.values_list("caller_number", flat=True).get(pk=call.pk) == "+16175550167"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "lookup"),
    [
        (Patient, {"last_name": "Okonkwo"}),
        (Patient, {"phone__icontains": "0167"}),
        (Patient, {"date_of_birth__year": 1984}),
        (Coverage, {"member_id__startswith": "XQZ"}),
        (Turn, {"text__contains": "chest"}),
        (FollowUp, {"notes__icontains": "call"}),
    ],
)
def test_sql_lookups_on_encrypted_columns_are_refused(
    model: type[Model], lookup: dict[str, object]
) -> None:
    with pytest.raises(FieldError):
        list(model._default_manager.filter(**lookup))


@pytest.mark.django_db
def test_exceptions_do_not_carry_the_value() -> None:
    with pytest.raises(ValueError) as caught:
        services.patient_create(
            first_name="Margarita", last_name="Okonkwo", date_of_birth=datetime.date(2999, 1, 1)
        )
    for text in (str(caught.value), repr(caught.value)):
        assert "2999" not in text and "Okonkwo" not in text
