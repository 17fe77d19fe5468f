"""Writes of patients and their insurance coverage, from a caller's answers or staff edits.

Values passed in are PHI: log lines carry ids and field names only. The blind indexes that let
a caller be found again are kept up to date by ``Patient.save``, not here.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from clinic.logs import get_logger
from intake.models import Coverage, Patient

log = get_logger(__name__)

PATIENT_EDITABLE_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "date_of_birth",
        "phone",
        "email",
        "address",
        "preferred_language",
    }
)


def patient_create(
    *,
    first_name: str,
    last_name: str,
    date_of_birth: datetime.date | None = None,
    phone: str = "",
    email: str = "",
    address: str = "",
    preferred_language: str = Patient.Language.ENGLISH,
) -> Patient:
    """Create a patient from what the caller (or staff) gave.

    The phone number is stored in E.164 when it parses; blind indexes for phone, date of
    birth and last name + date of birth are computed by ``Patient.save``.
    """
    if date_of_birth is not None and date_of_birth > timezone.localdate():
        raise ValueError("date of birth is in the future")
    patient = Patient(
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        date_of_birth=date_of_birth,
        phone=phone,
        email=email.strip(),
        address=address.strip(),
        preferred_language=preferred_language,
    )
    patient.full_clean()
    patient.save()
    log.info("patient_created", patient_id=patient.pk)
    return patient


def patient_update(*, patient: Patient, changes: Mapping[str, Any]) -> Patient:
    """Apply corrections (a spelling read back, a new phone number) to a patient.

    Only the fields in :data:`PATIENT_EDITABLE_FIELDS` may change; the blind indexes follow.
    """
    unknown = set(changes) - PATIENT_EDITABLE_FIELDS
    if unknown:
        # Field names are not PHI; values are never echoed.
        raise ValueError(f"not editable on a patient: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(patient, name, value)
    patient.full_clean()
    patient.save()
    log.info("patient_updated", patient_id=patient.pk, fields=sorted(changes))
    return patient


def coverage_create(
    *,
    patient: Patient,
    carrier: str,
    member_id: str,
    group_number: str = "",
    subscriber_relation: str = Coverage.Relation.SELF,
) -> Coverage:
    """Record the insurance a caller gave; staff verify it later (``verified`` stays False)."""
    coverage = Coverage(
        patient=patient,
        carrier=carrier.strip(),
        member_id=member_id.strip(),
        group_number=group_number.strip(),
        subscriber_relation=subscriber_relation,
    )
    coverage.full_clean()
    coverage.save()
    log.info("coverage_created", coverage_id=coverage.pk, patient_id=patient.pk)
    return coverage
