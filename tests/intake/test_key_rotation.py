"""Key rotation: old key still decrypts, rotate, old key removed, everything still decrypts."""

from __future__ import annotations

import datetime
import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from clinic.encryption import DecryptionError, encrypted_fields_by_model, is_current
from clinic.models import Appointment, AppointmentType, Provider, Slot
from intake import services
from intake.management.commands.rotate_encryption_keys import Command, Tally
from intake.models import Call, Coverage, FollowUp, Patient, Turn

pytestmark = pytest.mark.django_db

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
DOB = datetime.date(1979, 7, 4)


def _snapshot() -> dict[str, object]:
    """Every encrypted value of the data set, read fresh from the database."""
    patient = Patient.objects.get()
    coverage = Coverage.objects.get()
    call = Call.objects.get()
    followup = FollowUp.objects.get()
    return {
        "patient": (
            patient.first_name,
            patient.last_name,
            patient.date_of_birth,
            patient.phone,
            patient.email,
            patient.address,
        ),
        "coverage": (coverage.member_id, coverage.group_number),
        "call": (call.caller_number, call.state),
        "turns": list(Turn.objects.order_by("sequence").values_list("text", flat=True)),
        "followup": (followup.summary, followup.notes),
        "appointment": Appointment.objects.get().reason,
    }


EXPECTED = {
    "patient": (
        "Dolores",
        "Abernathy",
        DOB,
        "+15085550123",
        "dolores@example.com",
        "12 Sweetwater Road\nWorcester, MA",
    ),
    "coverage": ("MBR77120934", "GRP-4411"),
    "call": ("+15085550123", {"phase": "insurance", "first_name": "Dolores"}),
    "turns": ["Hello, this is the clinic.", "I would like to book a physical."],
    "followup": ("Wants a call back about lab results", "Left a voicemail"),
    "appointment": "annual physical, knee pain",
}


def _load_data() -> None:
    patient = services.patient_create(
        first_name="Dolores",
        last_name="Abernathy",
        date_of_birth=DOB,
        phone="508-555-0123",
        email="dolores@example.com",
        address="12 Sweetwater Road\nWorcester, MA",
    )
    services.coverage_create(
        patient=patient, carrier="Cigna", member_id="MBR77120934", group_number="GRP-4411"
    )
    call = services.call_start(call_sid="CA" + "a" * 32, caller_number="+15085550123")
    services.turn_record(call=call, speaker="agent", text="Hello, this is the clinic.")
    services.turn_record(call=call, speaker="caller", text="I would like to book a physical.")
    services.call_update(call=call, state={"phase": "insurance", "first_name": "Dolores"})
    followup = services.followup_open(
        reason="callback_requested", call=call, summary="Wants a call back about lab results"
    )
    followup.notes = "Left a voicemail"
    followup.save()
    # The calendar's encrypted column is rotated by the same command.
    provider = Provider.objects.create(name="Dr. Rotation")
    start = timezone.now() + datetime.timedelta(days=2)
    slot = Slot.objects.create(
        provider=provider, start=start, end=start + datetime.timedelta(minutes=30)
    )
    Appointment.objects.create(
        slot=slot,
        patient=patient,
        appointment_type=AppointmentType.objects.create(name="Physical"),
        reason="annual physical, knee pain",
    )


def _rotate(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _raw_tokens() -> list[str]:
    tokens: list[str] = []
    with connection.cursor() as cursor:
        for model, fields in encrypted_fields_by_model():
            for field in fields:
                cursor.execute(
                    f"SELECT {field.column} FROM {model._meta.db_table}"  # noqa: S608
                )
                tokens += [value for (value,) in cursor.fetchall() if value]
    return tokens


def test_rotation_moves_every_value_to_the_new_key() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        _load_data()
        assert _snapshot() == EXPECTED

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        # The new key is first: old values still decrypt, none is current yet.
        assert _snapshot() == EXPECTED
        with pytest.raises(CommandError, match="still need rotating"):
            _rotate("--check")

        output = _rotate("--batch-size", "1")

        assert "intake.Patient (first_name, last_name, date_of_birth, phone, email, address)" in (
            output
        )
        assert "6 re-encrypted" in output  # the patient's six values
        assert "clinic.Appointment (reason): 1 rows, 1 values, 1 re-encrypted" in output
        assert "intake.Turn (text): 2 rows, 2 values, 2 re-encrypted" in output
        _rotate("--check")
        tokens = _raw_tokens()
        assert len(tokens) == 15
        assert all(is_current(token) for token in tokens)

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]):
        # Old key removed: everything still decrypts.
        assert _snapshot() == EXPECTED

    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        # And the rows really moved: the old key alone no longer opens them.
        with pytest.raises(DecryptionError):
            Patient.objects.get()


def test_rotation_is_resumable_and_leaves_timestamps_alone() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        _load_data()
    updated_at = Patient.objects.values_list("updated_at", flat=True).get()

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        _rotate()
        second = _rotate()

    assert "0 re-encrypted" in second and "6 already current" in second
    assert Patient.objects.values_list("updated_at", flat=True).get() == updated_at


def test_a_value_rewritten_during_rotation_is_not_overwritten() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        _load_data()
        turn = Turn.objects.order_by("sequence").first()
    assert turn is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT text FROM intake_turn WHERE id = %s", [turn.pk])
        (stale_token,) = cursor.fetchone()

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        # The application writes a new value after the command read the old token.
        turn.text = "Corrected while rotating."
        turn.save()
        tally = Tally()
        with connection.cursor() as cursor:
            Command._row(
                cursor,
                connection.ops.quote_name("intake_turn"),
                connection.ops.quote_name("id"),
                [connection.ops.quote_name("text")],
                (turn.pk, stale_token),
                tally,
                check=False,
            )

        assert tally.changed_meanwhile == 1 and tally.rotated == 0
        assert Turn.objects.get(pk=turn.pk).text == "Corrected while rotating."


def test_values_no_key_can_open_are_reported_by_primary_key_only() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        _load_data()
    patient_pk = Patient.objects.values_list("pk", flat=True).get()
    err = io.StringIO()

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]):
        with pytest.raises(CommandError, match="could not be decrypted"):
            call_command("rotate_encryption_keys", stdout=io.StringIO(), stderr=err)

    assert (
        f"intake.Patient: 6 values decrypt with no configured key (primary keys: {patient_pk}"
        in (err.getvalue())
    )
    assert "Dolores" not in err.getvalue()


def test_every_encrypted_column_of_both_apps_is_discovered() -> None:
    found = {
        (model._meta.label, field.name)
        for model, fields in encrypted_fields_by_model()
        for field in fields
    }
    assert found == {
        ("clinic.Appointment", "reason"),
        ("intake.Patient", "first_name"),
        ("intake.Patient", "last_name"),
        ("intake.Patient", "date_of_birth"),
        ("intake.Patient", "phone"),
        ("intake.Patient", "email"),
        ("intake.Patient", "address"),
        ("intake.Coverage", "member_id"),
        ("intake.Coverage", "group_number"),
        ("intake.Call", "caller_number"),
        ("intake.Call", "state"),
        ("intake.Turn", "text"),
        ("intake.FollowUp", "summary"),
        ("intake.FollowUp", "notes"),
    }
