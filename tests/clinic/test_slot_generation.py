"""Slots follow the rules over the horizon, across DST, edits and time off."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from clinic.models import Appointment, ScheduleConflict, Slot
from clinic.services import appointment_book, slots_generate
from clinic.signals import schedule_conflict_opened
from tests.clinic.factories import (
    AppointmentTypeFactory,
    ProviderFactory,
    RuleFactory,
    TimeOffFactory,
)

pytestmark = pytest.mark.django_db
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def local_starts(provider, day: date) -> list[str]:
    starts = (
        Slot.objects.filter(provider=provider).order_by("start").values_list("start", flat=True)
    )
    return [
        f"{s.astimezone(NEW_YORK):%H:%M %Z}" for s in starts if s.astimezone(NEW_YORK).date() == day
    ]


@override_settings(TIME_ZONE="America/New_York")
def test_spring_forward_skips_the_missing_hour() -> None:
    provider = ProviderFactory.create()
    RuleFactory.create(provider=provider, weekdays=[6], start_time=time(1), end_time=time(4))
    slots_generate(now=utc(2027, 3, 10, 12), horizon_days=7)
    assert local_starts(provider, date(2027, 3, 14)) == [
        "01:00 EST",
        "01:30 EST",
        "03:00 EDT",
        "03:30 EDT",
    ]


@override_settings(TIME_ZONE="America/New_York")
def test_fall_back_makes_each_wall_clock_slot_once() -> None:
    provider = ProviderFactory.create()
    RuleFactory.create(provider=provider, weekdays=[6], start_time=time(0), end_time=time(3))
    slots_generate(now=utc(2027, 11, 3, 12), horizon_days=7)
    assert local_starts(provider, date(2027, 11, 7)) == [
        "00:00 EDT",
        "00:30 EDT",
        "01:00 EDT",
        "01:30 EDT",
        "02:00 EST",
        "02:30 EST",
    ]


@override_settings(TIME_ZONE="America/New_York")
def test_nine_oclock_stays_nine_oclock_local_across_the_change() -> None:
    provider = ProviderFactory.create()
    RuleFactory.create(provider=provider, weekdays=[4], start_time=time(9), end_time=time(9, 30))
    slots_generate(now=utc(2027, 3, 8, 12), horizon_days=14)
    starts = list(
        Slot.objects.filter(provider=provider).order_by("start").values_list("start", flat=True)
    )
    assert starts == [utc(2027, 3, 12, 14), utc(2027, 3, 19, 13)]


def test_generation_covers_the_horizon_and_is_idempotent() -> None:
    provider = ProviderFactory.create()
    RuleFactory.create(provider=provider, weekdays=[0, 1, 2, 3, 4, 5, 6])
    first = slots_generate(now=utc(2027, 1, 4, 5), horizon_days=10)
    assert first.created == 11 * 6  # today plus ten days, six half-hours a day
    again = slots_generate(now=utc(2027, 1, 4, 5), horizon_days=10)
    assert (again.created, again.deleted, again.updated) == (0, 0, 0)


def test_rule_effective_dates_are_respected() -> None:
    provider = ProviderFactory.create()
    RuleFactory.create(
        provider=provider,
        weekdays=[0, 1, 2, 3, 4, 5, 6],
        effective_from=date(2027, 1, 6),
        effective_to=date(2027, 1, 7),
    )
    slots_generate(now=utc(2027, 1, 4, 5), horizon_days=10)
    days = {s.astimezone(NEW_YORK).date() for s in Slot.objects.values_list("start", flat=True)}
    assert days == {date(2027, 1, 6), date(2027, 1, 7)}


def test_editing_a_rule_regenerates_free_slots_but_keeps_booked_ones(
    django_capture_on_commit_callbacks,
) -> None:
    provider = ProviderFactory.create()
    visit = AppointmentTypeFactory.create(providers=[provider])
    rule = RuleFactory.create(provider=provider, weekdays=[0, 1, 2, 3, 4, 5, 6])
    slots_generate(horizon_days=5)
    booked_slot = Slot.objects.filter(provider=provider).order_by("start").last()
    assert booked_slot is not None
    appointment = appointment_book(slot_id=booked_slot.pk, appointment_type=visit)

    rule.start_time, rule.end_time = time(14), time(16)
    rule.save()
    opened: list[ScheduleConflict] = []

    def receiver(conflict: ScheduleConflict, **_: object) -> None:
        opened.append(conflict)

    schedule_conflict_opened.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            report = slots_generate(horizon_days=5)
    finally:
        schedule_conflict_opened.disconnect(receiver)

    local_hours = {
        s.astimezone(NEW_YORK).hour
        for s in Slot.objects.filter(provider=provider, status=Slot.Status.FREE).values_list(
            "start", flat=True
        )
    }
    assert local_hours <= {14, 15}
    assert report.deleted > 0
    booked_slot.refresh_from_db()
    assert booked_slot.status == Slot.Status.BOOKED  # never deleted or moved silently
    conflict = ScheduleConflict.objects.get(appointment=appointment)
    assert conflict.cause == ScheduleConflict.Cause.OUTSIDE_HOURS
    assert [c.pk for c in opened] == [conflict.pk]


def test_time_off_blocks_free_slots_and_flags_a_booked_one() -> None:
    provider = ProviderFactory.create()
    visit = AppointmentTypeFactory.create(providers=[provider])
    RuleFactory.create(provider=provider, weekdays=[0, 1, 2, 3, 4, 5, 6])
    slots_generate(horizon_days=5)
    day_slots = list(Slot.objects.filter(provider=provider).order_by("start")[6:12])
    appointment = appointment_book(slot_id=day_slots[2].pk, appointment_type=visit)

    period = TimeOffFactory.create(
        provider=provider, start=day_slots[0].start, end=day_slots[-1].end
    )
    report = slots_generate(horizon_days=5)
    statuses = [Slot.objects.get(pk=s.pk).status for s in day_slots]
    assert statuses.count(Slot.Status.BLOCKED) == 5
    assert statuses[2] == Slot.Status.BOOKED
    assert Appointment.objects.get(pk=appointment.pk).status == Appointment.Status.BOOKED
    conflict = ScheduleConflict.objects.get(appointment=appointment)
    assert (conflict.cause, conflict.time_off) == (ScheduleConflict.Cause.TIME_OFF, period)
    assert report.conflicts == [conflict.pk]
    assert slots_generate(horizon_days=5).conflicts == []  # one open conflict, not one per run

    period.delete()
    slots_generate(horizon_days=5)
    assert (
        Slot.objects.filter(pk__in=[s.pk for s in day_slots], status=Slot.Status.BLOCKED).count()
        == 0
    )


def test_inactive_provider_loses_free_slots() -> None:
    provider = ProviderFactory.create()
    RuleFactory.create(provider=provider)
    slots_generate(horizon_days=7)
    assert Slot.objects.filter(provider=provider).exists()
    provider.active = False
    provider.save()
    slots_generate(horizon_days=7)
    assert not Slot.objects.filter(provider=provider).exists()


def test_slots_in_the_past_are_never_touched() -> None:
    provider = ProviderFactory.create()
    RuleFactory.create(provider=provider, weekdays=[0, 1, 2, 3, 4, 5, 6])
    past = Slot.objects.create(
        provider=provider,
        start=utc(2020, 1, 1, 15),
        end=utc(2020, 1, 1, 15) + timedelta(minutes=30),
    )
    slots_generate(horizon_days=3)
    assert Slot.objects.filter(pk=past.pk).exists()
