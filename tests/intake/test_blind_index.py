"""Patients and calls are found by keyed hashes of normalised values, however they are written."""

from __future__ import annotations

import datetime
import hashlib
import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from intake import blind_index, selectors, services
from intake.models import Call, Patient
from tests.factories import CallFactory, PatientFactory

pytestmark = pytest.mark.django_db

DOB = datetime.date(1984, 3, 12)


@pytest.fixture
def garcia() -> Patient:
    return services.patient_create(
        first_name="Lucía",
        last_name="García-Okafor",
        date_of_birth=DOB,
        phone="(617) 555-0167",
    )


@pytest.mark.parametrize(
    "written",
    [
        "(617) 555-0167",
        "617.555.0167",
        "617-555-0167",
        "+1 617 555 0167",
        "1-617-555-0167",
        "6175550167",
        "+16175550167",
        " 617 555 0167 ",
    ],
)
def test_patient_is_found_by_phone_in_any_format(garcia: Patient, written: str) -> None:
    PatientFactory.create(phone="+16175550199")

    assert list(selectors.patient_find_by_phone(written)) == [garcia]


def test_phone_is_stored_in_e164(garcia: Patient) -> None:
    garcia.refresh_from_db()
    assert garcia.phone == "+16175550167"


@pytest.mark.parametrize("written", ["555-0167", "6175550168", "not a number", "", "+266696687"])
def test_other_or_unusable_numbers_find_nobody(garcia: Patient, written: str) -> None:
    assert list(selectors.patient_find_by_phone(written)) == []


@pytest.mark.parametrize(
    ("last_name", "dob"),
    [
        ("García-Okafor", DOB),
        ("garcia okafor", "1984-03-12"),
        ("GARCIA-OKAFOR", "03/12/1984"),
        ("Garcia Okafor", "March 12th, 1984"),
        ("garcíaokafor", "12 March 1984"),
    ],
)
def test_patient_is_found_by_last_name_and_dob(
    garcia: Patient, last_name: str, dob: datetime.date | str
) -> None:
    # Same name, other birthday; same birthday, other name: neither matches.
    PatientFactory.create(last_name="García-Okafor", date_of_birth=datetime.date(1984, 3, 13))
    PatientFactory.create(last_name="Garcia", date_of_birth=DOB)

    assert list(selectors.patient_find_by_name_and_dob(last_name, dob)) == [garcia]


def test_patient_is_found_by_dob_alone(garcia: Patient) -> None:
    other = PatientFactory.create(date_of_birth=DOB)
    PatientFactory.create(date_of_birth=datetime.date(1990, 1, 1))

    assert set(selectors.patient_find_by_dob("3/12/1984")) == {garcia, other}


def test_calls_are_found_by_caller_number_in_any_format() -> None:
    call = CallFactory.create(caller_number="+16175550167")
    CallFactory.create(caller_number="+16175550168")

    assert list(selectors.calls_from_number("(617) 555-0167")) == [call]


def test_indexes_follow_corrections(garcia: Patient) -> None:
    services.patient_update(
        patient=garcia, changes={"phone": "617 555 0999", "last_name": "Okafor"}
    )

    assert list(selectors.patient_find_by_phone("6175550999")) == [garcia]
    assert list(selectors.patient_find_by_phone("6175550167")) == []
    assert list(selectors.patient_find_by_name_and_dob("okafor", DOB)) == [garcia]
    assert list(selectors.patient_find_by_name_and_dob("García-Okafor", DOB)) == []


def test_index_is_keyed_and_never_the_plain_value(garcia: Patient) -> None:
    garcia.refresh_from_db()
    unkeyed = hashlib.sha256(b"+16175550167").hexdigest()
    assert garcia.phone_index not in {"", "+16175550167", unkeyed}
    assert "6175550167" not in garcia.phone_index

    with override_settings(BLIND_INDEX_KEY="another-blind-index-key-of-32-chars!"):
        assert blind_index.phone_index("+16175550167") != garcia.phone_index


def test_domains_are_separated() -> None:
    # The same text hashed as a date and as a phone-shaped value must not collide.
    assert blind_index.dob_index("1984-03-12") != blind_index.phone_index("1984-03-12")
    assert blind_index.dob_index("1984-03-12") != blind_index.name_dob_index("x", "1984-03-12")


def test_rebuild_command_restores_lookups_after_blind_key_change(garcia: Patient) -> None:
    call = CallFactory.create(caller_number="+16175550167")
    with override_settings(BLIND_INDEX_KEY="a-new-blind-index-key-for-this-test-0001"):
        # Stored hashes were made with the old key: nothing matches until the rebuild.
        assert list(selectors.patient_find_by_phone("6175550167")) == []

        call_command("rebuild_blind_indexes", "--batch-size", "1", stdout=io.StringIO())

        assert list(selectors.patient_find_by_phone("6175550167")) == [garcia]
        assert list(selectors.patient_find_by_name_and_dob("garcia okafor", DOB)) == [garcia]
        assert list(selectors.calls_from_number("6175550167")) == [call]
    assert Call.objects.get(pk=call.pk).caller_number == "+16175550167"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("O'Brien", "obrien"),
        ("De La Cruz", "delacruz"),
        ("Nguyễn", "nguyen"),
        ("Straße", "strasse"),
        ("  ", None),
    ],
)
def test_last_names_are_normalised(raw: str, expected: str | None) -> None:
    assert blind_index.normalise_last_name(raw) == expected


@pytest.mark.parametrize("raw", ["3/12/84", "1984-02-30", "tomorrow", "12"])
def test_ambiguous_or_invalid_dates_are_refused(raw: str) -> None:
    assert blind_index.parse_date_of_birth(raw) is None
    assert blind_index.dob_index(raw) == ""
