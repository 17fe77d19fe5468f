"""Reads of intake: finding patients and calls through blind indexes, the follow-up queue.

Encrypted columns cannot be searched; every lookup here hashes the normalised query with the
blind-index key and compares hashes (:mod:`intake.blind_index`). A query that does not
normalise (not a phone number, not a date) finds nothing rather than raising.
"""

from __future__ import annotations

import datetime
import re

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from intake import blind_index
from intake.models import Call, FollowUp, Patient, Turn


def patient_find_by_phone(raw_phone: str) -> QuerySet[Patient]:
    """Patients whose phone is this number, however it is written (newest first).

    Several patients can share a number (a family's landline), so this is a queryset.
    """
    index = blind_index.phone_index(raw_phone)
    if not index:
        return Patient.objects.none()
    return Patient.objects.filter(phone_index=index)


def patient_find_by_dob(date_of_birth: datetime.date | str) -> QuerySet[Patient]:
    """Patients born on this date (ISO, US numeric or spelled text accepted)."""
    index = blind_index.dob_index(date_of_birth)
    if not index:
        return Patient.objects.none()
    return Patient.objects.filter(dob_index=index)


def patient_find_by_name_and_dob(
    last_name: str, date_of_birth: datetime.date | str
) -> QuerySet[Patient]:
    """Patients with this last name (case, accents and punctuation ignored) and birth date.

    How the agent recognises a returning caller who may be phoning from another number.
    """
    index = blind_index.name_dob_index(last_name, date_of_birth)
    if not index:
        return Patient.objects.none()
    return Patient.objects.filter(name_dob_index=index)


_DATE_AT_END = re.compile(
    r"^(?P<name>.*?)[\s,]+(?P<date>(?:\d[\d/.-]*\d)|(?:[a-z]+\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})"
    r"|(?:\d{1,2}(?:st|nd|rd|th)?\s+[a-z]+\.?,?\s+\d{4}))$",
    re.IGNORECASE,
)


def patients_search(term: str) -> QuerySet[Patient] | None:
    """Staff search: a phone number, a date of birth, or "last name + date of birth".

    Returns ``None`` when the term is none of these, so the caller can explain what works;
    an empty queryset means it was understood and nothing matched.
    """
    term = term.strip()
    if not term:
        return None
    # A date first: "03/12/1984" is a date, never a phone number.
    if blind_index.parse_date_of_birth(term) is not None:
        return patient_find_by_dob(term)
    match = _DATE_AT_END.match(term)
    if match and blind_index.parse_date_of_birth(match["date"]) is not None:
        if blind_index.normalise_last_name(match["name"]):
            return patient_find_by_name_and_dob(match["name"], match["date"])
    if not any(char.isalpha() for char in term) and blind_index.normalise_phone(term):
        return patient_find_by_phone(term)
    return None


def patients_with_call_counts() -> QuerySet[Patient]:
    """Patients annotated with ``call_count`` (for the staff list)."""
    return Patient.objects.annotate(call_count=Count("calls"))


def call_find_by_sid(call_sid: str) -> Call | None:
    """The call Twilio knows by this CallSid, if we have it."""
    return Call.objects.filter(call_sid=call_sid).first()


def calls_from_number(raw_phone: str) -> QuerySet[Call]:
    """Calls from this number, newest first (e.g. "has this caller phoned today already?")."""
    index = blind_index.phone_index(raw_phone)
    if not index:
        return Call.objects.none()
    return Call.objects.filter(caller_number_index=index).order_by("-started_at")


def call_transcript(call: Call) -> QuerySet[Turn]:
    """The call's turns in the order they were spoken."""
    return call.turns.order_by("sequence")


def followups_queue(*, now: datetime.datetime | None = None) -> QuerySet[FollowUp]:
    """Follow-ups in the order staff should work them.

    Overdue open ones first, then open ones, then done; within each, most urgent priority
    first, then the earliest due (none last), then the oldest. ``overdue_rank`` and
    ``open_rank`` are annotated so that the admin can show and keep this order.
    """
    now = now or timezone.now()
    is_open = Q(status__in=FollowUp.OPEN_STATUSES)
    return FollowUp.objects.annotate(
        overdue_rank=Case(
            When(is_open & Q(due__lt=now), then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        ),
        open_rank=Case(When(is_open, then=Value(0)), default=Value(1), output_field=IntegerField()),
        due_missing=Case(
            When(due__isnull=True, then=Value(1)), default=Value(0), output_field=IntegerField()
        ),
    ).order_by("overdue_rank", "open_rank", "priority", "due_missing", "due", "created_at", "pk")


def followups_open_for_call(call: Call) -> QuerySet[FollowUp]:
    """Open follow-ups a call left (so the agent does not open the same one twice)."""
    return call.followups.filter(status__in=FollowUp.OPEN_STATUSES)
