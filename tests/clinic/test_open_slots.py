"""open_slots: earliest first, with the caller's preferences, in the clinic's local time."""

from __future__ import annotations

from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from clinic.models import AppointmentType, Slot
from clinic.selectors import open_slots
from clinic.services import appointment_book, slots_generate
from tests.clinic.factories import AppointmentTypeFactory, ProviderFactory, RuleFactory

pytestmark = pytest.mark.django_db
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def two_providers():
    patel = ProviderFactory.create(name="Dr. Patel")
    chen = ProviderFactory.create(name="Dr. Chen", accepts_new_patients=False)
    sick = AppointmentTypeFactory.create(name="Sick visit", providers=[patel, chen])
    long_physical = AppointmentTypeFactory.create(
        name="Physical", duration_minutes=60, providers=[patel]
    )
    new_patient = AppointmentTypeFactory.create(
        name="New patient", kind=AppointmentType.Kind.NEW_PATIENT, providers=[patel, chen]
    )
    everyday = [0, 1, 2, 3, 4, 5, 6]
    RuleFactory.create(provider=patel, weekdays=everyday, start_time=time(8), end_time=time(12))
    long_rule = RuleFactory.create(
        provider=patel, weekdays=[2], start_time=time(13), end_time=time(15), slot_minutes=60
    )
    long_rule.appointment_types.set([long_physical])
    RuleFactory.create(provider=chen, weekdays=everyday, start_time=time(14), end_time=time(18))
    slots_generate(horizon_days=14)
    return {
        "patel": patel,
        "chen": chen,
        "sick": sick,
        "physical": long_physical,
        "new": new_patient,
    }


def local(slot: Slot):
    return slot.start.astimezone(NEW_YORK)


def test_results_are_earliest_first_and_in_the_future(two_providers) -> None:
    slots = open_slots(limit=20)
    starts = [slot.start for slot in slots]
    assert starts == sorted(starts)
    assert all(start > timezone.now() for start in starts)


def test_filter_by_provider(two_providers) -> None:
    slots = open_slots(provider=two_providers["chen"], limit=50)
    assert slots and {slot.provider for slot in slots} == {two_providers["chen"]}


def test_filter_by_part_of_day_uses_local_time(two_providers) -> None:
    mornings = open_slots(part_of_day="morning", limit=50)
    afternoons = open_slots(part_of_day="afternoon", limit=50)
    evenings = open_slots(part_of_day="evening", limit=50)
    assert mornings and all(local(s).hour < 12 for s in mornings)
    assert afternoons and all(12 <= local(s).hour < 17 for s in afternoons)
    assert evenings and all(local(s).hour >= 17 for s in evenings)


def test_filter_by_weekday_uses_local_days(two_providers) -> None:
    wednesdays = open_slots(weekdays=[2], limit=100)
    assert wednesdays and {local(s).weekday() for s in wednesdays} == {2}


def test_filter_by_date_range(two_providers) -> None:
    start = timezone.now() + timedelta(days=3)
    end = start + timedelta(days=2)
    slots = open_slots(start=start, end=end, limit=500)
    assert slots and all(start < s.start < end for s in slots)


def test_filter_by_appointment_type_respects_rules_and_duration(two_providers) -> None:
    physicals = open_slots(appointment_type=two_providers["physical"], limit=50)
    assert physicals
    assert all(s.duration_minutes >= 60 and local(s).weekday() == 2 for s in physicals)
    sick = open_slots(appointment_type=two_providers["sick"], limit=500)
    assert all(
        s.rule is not None and s.rule.slot_minutes == 30 for s in sick
    )  # the physical-only hours are excluded


def test_new_patients_only_see_providers_who_accept_them(two_providers) -> None:
    slots = open_slots(appointment_type=two_providers["new"], limit=500)
    assert slots and {s.provider for s in slots} == {two_providers["patel"]}
    assert {s.provider for s in open_slots(new_patient=True, limit=500)} == {two_providers["patel"]}


def test_booked_and_blocked_slots_are_not_offered(two_providers) -> None:
    first, second = open_slots(appointment_type=two_providers["sick"], limit=2)
    appointment_book(slot_id=first.pk, appointment_type=two_providers["sick"])
    Slot.objects.filter(pk=second.pk).update(status=Slot.Status.BLOCKED)
    offered = [s.pk for s in open_slots(limit=10)]
    assert first.pk not in offered and second.pk not in offered


def test_inactive_providers_are_not_offered(two_providers) -> None:
    two_providers["chen"].active = False
    two_providers["chen"].save()
    assert two_providers["chen"] not in {s.provider for s in open_slots(limit=500)}
