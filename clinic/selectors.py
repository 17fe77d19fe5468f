"""Reads of the calendar: open slots to offer a caller, and a provider's day."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from clinic.models import Appointment, AppointmentType, AvailabilityRule, Provider, Slot


class PartOfDay(StrEnum):
    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"


# Local clock hours [from, to) of each part of the day, in the clinic's zone.
# Free slots, and held ones whose hold may have expired (filtered further in the query).
OPEN_STATUSES = ("free", "held")

PART_OF_DAY_HOURS = {
    PartOfDay.MORNING: (0, 12),
    PartOfDay.AFTERNOON: (12, 17),
    PartOfDay.EVENING: (17, 24),
}


def _eligible_rules(appointment_type: AppointmentType) -> list[int]:
    """Ids of the rules whose slots can take this type of visit.

    Worked out in Python from a few small tables so that the query over the (large) slot
    table is a plain ``rule_id IN (...)`` instead of joins across two many-to-many tables.
    """
    offering = set(appointment_type.providers.values_list("pk", flat=True))
    rules = AvailabilityRule.objects.filter(
        provider_id__in=offering, slot_minutes__gte=appointment_type.duration_minutes
    ).prefetch_related("appointment_types")
    return [
        rule.pk
        for rule in rules
        if not rule.appointment_types.all()
        or any(t.pk == appointment_type.pk for t in rule.appointment_types.all())
    ]


def _local_windows(
    first: datetime, last: datetime, weekdays: Collection[int] | None, part: PartOfDay | None
) -> Q:
    """The caller's "Thursday afternoons" as explicit UTC intervals, one per matching day.

    Computing the clinic-local intervals here (DST-correct through zoneinfo) lets the database
    use its index on ``start`` instead of converting every row's time zone.
    """
    zone = ZoneInfo(settings.TIME_ZONE)
    first_hour, last_hour = PART_OF_DAY_HOURS[part] if part else (0, 24)
    windows = Q(pk__in=[])
    day = first.astimezone(zone).date()
    while day <= last.astimezone(zone).date():
        if not weekdays or day.weekday() in weekdays:
            window_start = datetime.combine(day, time(first_hour), zone)
            window_end = (
                datetime.combine(day + timedelta(days=1), time.min, zone)
                if last_hour == 24
                else datetime.combine(day, time(last_hour), zone)
            )
            windows |= Q(start__gte=window_start, start__lt=window_end)
        day += timedelta(days=1)
    return windows


def open_slots(
    *,
    appointment_type: AppointmentType | None = None,
    provider: Provider | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    part_of_day: PartOfDay | str | None = None,
    weekdays: Collection[int] | None = None,
    new_patient: bool | None = None,
    limit: int | None = None,
) -> list[Slot]:
    """Bookable slots, earliest first, with the caller's preferences applied.

    ``weekdays`` are 0 = Monday ... 6 = Sunday and, like ``part_of_day``, refer to the clinic's
    local time. A slot whose hold has expired counts as open.
    """
    now = timezone.now()
    earliest = max(now, start) if start else now
    slots = Slot.objects.filter(
        status__in=OPEN_STATUSES, start__gt=earliest, provider__active=True
    ).exclude(status=Slot.Status.HELD, held_until__gte=now)
    if end is not None:
        slots = slots.filter(start__lt=end)
    if provider is not None:
        slots = slots.filter(provider=provider)
    if new_patient:
        slots = slots.filter(provider__accepts_new_patients=True)
    if appointment_type is not None:
        slots = slots.filter(rule_id__in=_eligible_rules(appointment_type))
        if appointment_type.kind == AppointmentType.Kind.NEW_PATIENT:
            slots = slots.filter(provider__accepts_new_patients=True)
    if part_of_day is not None or weekdays:
        last = end or now + timedelta(days=settings.SLOT_HORIZON_DAYS + 1)
        part = PartOfDay(part_of_day) if part_of_day is not None else None
        slots = slots.filter(_local_windows(earliest, last, weekdays, part))
    # (start, provider) is the open-slot index's order, so the database stops after `limit` rows.
    ordered: QuerySet[Slot] = slots.select_related("provider").order_by("start", "provider_id")
    if limit is not None:
        ordered = ordered[:limit]
    return list(ordered)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """UTC instants of the clinic-local midnight starting and ending ``day`` (DST-safe)."""
    zone = ZoneInfo(settings.TIME_ZONE)
    start = datetime.combine(day, time.min, zone)
    end = datetime.combine(day + timedelta(days=1), time.min, zone)
    return start, end


def provider_day(*, provider: Provider, day: date) -> list[Slot]:
    """Every slot of one provider on one local day, with its active appointment if any."""
    start, end = day_bounds(day)
    slots = (
        Slot.objects.filter(provider=provider, start__gte=start, start__lt=end)
        .order_by("start")
        .prefetch_related("appointments__appointment_type")
    )
    return list(slots)


def active_appointment(slot: Slot) -> Appointment | None:
    """The slot's proposed or booked appointment (from a prefetch when there is one)."""
    for appointment in slot.appointments.all():
        if appointment.status in Appointment.ACTIVE_STATUSES:
            return appointment
    return None


def appointment_types_for(*, new_patient: bool | None = None) -> list[AppointmentType]:
    types = AppointmentType.objects.prefetch_related("providers")
    if new_patient is True:
        types = types.exclude(kind=AppointmentType.Kind.FOLLOW_UP)
    elif new_patient is False:
        types = types.exclude(kind=AppointmentType.Kind.NEW_PATIENT)
    return list(types)
