"""Writes to the calendar: slot generation, holds, booking, cancelling, rescheduling.

Plain keyword-only functions used alike by the phone conversation, the admin and Celery
tasks. Each owns its transaction. Booking is decided by the database, not by Python: a
conditional UPDATE claims the slot (only one of two racing transactions can match it) and a
partial unique index allows one active appointment per slot, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from clinic.logs import get_logger
from clinic.models import (
    Appointment,
    AppointmentType,
    AvailabilityRule,
    Provider,
    ScheduleConflict,
    Slot,
    TimeOff,
)
from clinic.signals import schedule_conflict_opened

log = get_logger(__name__)


class SchedulingError(Exception):
    """Base of the calendar's expected failures. Messages carry ids only, never PHI."""


class SlotUnavailable(SchedulingError):
    """The slot cannot be held or booked: someone else has it, or it is past or blocked."""

    def __init__(self, slot_id: int) -> None:
        self.slot_id = slot_id
        super().__init__(f"slot {slot_id} is no longer available")


class SlotTaken(SlotUnavailable):
    """Another caller or staff member booked the slot first."""


class TypeNotOffered(SchedulingError):
    def __init__(self, slot_id: int, type_id: int) -> None:
        super().__init__(f"appointment type {type_id} is not offered in slot {slot_id}")


class InvalidTransition(SchedulingError):
    def __init__(self, appointment_id: int, current: str, wanted: str) -> None:
        super().__init__(f"appointment {appointment_id} cannot go from {current} to {wanted}")


# --- slot generation ------------------------------------------------------------------------


@dataclass
class GenerationReport:
    """What one run of :func:`slots_generate` changed (for logs, commands and tests)."""

    created: int = 0
    deleted: int = 0
    blocked: int = 0
    unblocked: int = 0
    updated: int = 0
    conflicts: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"created {self.created}, deleted {self.deleted}, blocked {self.blocked}, "
            f"unblocked {self.unblocked}, updated {self.updated}, "
            f"conflicts {len(self.conflicts)}"
        )


def clinic_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _local_to_utc(day: date, wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a wall-clock time in the clinic's zone, or None if it does not exist.

    On the spring-forward day the skipped hour has no instant, so no slot is made there; on
    the fall-back day the first of the two repeated hours is used (fold=0).
    """
    local = wall.replace(tzinfo=zone)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return instant


def _wanted_slots(
    rules: Iterable[AvailabilityRule], first_day: date, last_day: date, now: datetime
) -> dict[tuple[int, datetime], tuple[datetime, int]]:
    """(provider id, start) -> (end, rule id) for every slot the rules call for."""
    zone = clinic_zone()
    wanted: dict[tuple[int, datetime], tuple[datetime, int]] = {}
    for rule in rules:
        step = timedelta(minutes=rule.slot_minutes)
        day = max(first_day, rule.effective_from)
        stop = min(last_day, rule.effective_to or last_day)
        while day <= stop:
            if day.weekday() in rule.weekdays:
                wall = datetime.combine(day, rule.start_time)
                limit = datetime.combine(day, rule.end_time)
                while wall + step <= limit:
                    start = _local_to_utc(day, wall, zone)
                    if start is not None and start > now:
                        wanted.setdefault((rule.provider_id, start), (start + step, rule.pk))
                    wall += step
            day += timedelta(days=1)
    return wanted


class _TimeOffIndex:
    """Per-provider time-off intervals, for overlap tests without a query per slot."""

    def __init__(self, periods: Iterable[TimeOff]) -> None:
        self._by_provider: dict[int, list[TimeOff]] = defaultdict(list)
        for period in periods:
            self._by_provider[period.provider_id].append(period)

    def covering(self, provider_id: int, start: datetime, end: datetime) -> TimeOff | None:
        for period in self._by_provider.get(provider_id, ()):
            if period.start < end and period.end > start:
                return period
        return None


def _open_conflict(
    appointment: Appointment, cause: ScheduleConflict.Cause, time_off: TimeOff | None
) -> ScheduleConflict | None:
    conflict, created = ScheduleConflict.objects.get_or_create(
        appointment=appointment,
        cause=cause,
        resolved_at=None,
        defaults={"time_off": time_off},
    )
    if not created:
        return None
    log.warning(
        "schedule_conflict_opened",
        conflict_id=conflict.pk,
        appointment_id=appointment.pk,
        cause=str(cause),
    )
    # Sent inside this transaction, not after commit: the receivers' writes (intake's follow-up
    # for staff) then commit with the conflict or not at all. After commit, a process that died
    # or a database error in between left a conflict that nobody was asked to act on.
    schedule_conflict_opened.send(sender=ScheduleConflict, conflict=conflict)
    return conflict


@transaction.atomic
def slots_generate(
    *,
    provider_ids: Iterable[int] | None = None,
    horizon_days: int | None = None,
    now: datetime | None = None,
) -> GenerationReport:
    """Make the future slots match the rules and time off over the rolling horizon.

    Idempotent: a second run changes nothing. Free slots are created, moved to blocked under
    time off, and deleted when no rule calls for them any more. A booked slot is never deleted
    or moved: if time off or an edited rule no longer allows it, a ScheduleConflict is opened
    for staff (and the ``schedule_conflict_opened`` signal sent in the same transaction).
    """
    now = now or timezone.now()
    horizon = horizon_days or settings.SLOT_HORIZON_DAYS
    first_day = now.astimezone(clinic_zone()).date()
    last_day = first_day + timedelta(days=horizon)
    window_end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)

    providers = Provider.objects.all()
    if provider_ids is not None:
        providers = providers.filter(pk__in=list(provider_ids))
    provider_pks = list(providers.values_list("pk", flat=True))
    active_pks = set(providers.filter(active=True).values_list("pk", flat=True))

    rules = AvailabilityRule.objects.filter(
        provider_id__in=active_pks, effective_from__lte=last_day
    ).filter(Q(effective_to__isnull=True) | Q(effective_to__gte=first_day))
    wanted = _wanted_slots(rules, first_day, last_day, now)
    time_off = _TimeOffIndex(
        TimeOff.objects.filter(provider_id__in=provider_pks, end__gt=now, start__lt=window_end)
    )

    report = GenerationReport()
    existing = Slot.objects.filter(provider_id__in=provider_pks, start__gt=now).prefetch_related(
        models.Prefetch(
            "appointments",
            queryset=Appointment.objects.filter(status__in=Appointment.ACTIVE_STATUSES),
            to_attr="active_appointments",
        )
    )
    to_delete: list[int] = []
    to_update: list[Slot] = []
    seen: set[tuple[int, datetime]] = set()
    for slot in existing:
        key = (slot.provider_id, slot.start)
        seen.add(key)
        active: list[Appointment] = slot.active_appointments
        target = wanted.get(key)
        blocking = time_off.covering(slot.provider_id, slot.start, slot.end)
        if active:
            appointment = active[0]
            if blocking is not None:
                conflict = _open_conflict(appointment, ScheduleConflict.Cause.TIME_OFF, blocking)
                if conflict:
                    report.conflicts.append(conflict.pk)
            if target is None:
                conflict = _open_conflict(appointment, ScheduleConflict.Cause.OUTSIDE_HOURS, None)
                if conflict:
                    report.conflicts.append(conflict.pk)
            continue
        hold_active = slot.status == Slot.Status.HELD and (slot.held_until or now) > now
        if target is None:
            if not hold_active:
                to_delete.append(slot.pk)
            continue
        end, rule_id = target
        changed = False
        if (slot.end, slot.rule_id) != (end, rule_id) and slot.status != Slot.Status.HELD:
            slot.end, slot.rule_id = end, rule_id
            report.updated += 1
            changed = True
        if blocking is not None and slot.status in (Slot.Status.FREE, Slot.Status.HELD):
            if not hold_active:
                slot.status, slot.held_until, slot.hold_token = Slot.Status.BLOCKED, None, ""
                report.blocked += 1
                changed = True
        elif blocking is None and slot.status == Slot.Status.BLOCKED:
            slot.status = Slot.Status.FREE
            report.unblocked += 1
            changed = True
        if changed:
            to_update.append(slot)

    if to_delete:
        # Slots that still carry a past (cancelled) appointment stay, blocked, for history.
        kept = set(
            Appointment.objects.filter(slot_id__in=to_delete).values_list("slot_id", flat=True)
        )
        Slot.objects.filter(pk__in=kept).update(status=Slot.Status.BLOCKED)
        report.deleted, _ = Slot.objects.filter(pk__in=set(to_delete) - kept).delete()
    if to_update:
        Slot.objects.bulk_update(to_update, ["end", "rule", "status", "held_until", "hold_token"])

    new_slots = []
    for (provider_id, start), (end, rule_id) in wanted.items():
        if (provider_id, start) in seen:
            continue
        blocked = time_off.covering(provider_id, start, end) is not None
        new_slots.append(
            Slot(
                provider_id=provider_id,
                rule_id=rule_id,
                start=start,
                end=end,
                status=Slot.Status.BLOCKED if blocked else Slot.Status.FREE,
            )
        )
    Slot.objects.bulk_create(new_slots, batch_size=1000)
    report.created = len(new_slots)
    log.info("slots_generated", providers=len(provider_pks), **_counts(report))
    return report


def _counts(report: GenerationReport) -> dict[str, int]:
    return {
        "created": report.created,
        "deleted": report.deleted,
        "blocked": report.blocked,
        "unblocked": report.unblocked,
        "updated": report.updated,
        "conflicts": len(report.conflicts),
    }


# --- holds ----------------------------------------------------------------------------------


def _claimable(now: datetime, hold_token: str = "") -> Q:
    """A slot can be taken when free, when its hold has expired, or when we hold it."""
    claimable = Q(status=Slot.Status.FREE) | Q(status=Slot.Status.HELD, held_until__lt=now)
    if hold_token:
        claimable |= Q(status=Slot.Status.HELD, hold_token=hold_token)
    return claimable


def slot_hold(*, slot_id: int, ttl_seconds: int | None = None) -> str:
    """Hold a slot for the seconds a caller is deciding; returns the hold token.

    An expired hold frees itself: every query treats a hold past ``held_until`` as free, and
    :func:`holds_release_expired` tidies the rows up periodically.
    """
    now = timezone.now()
    ttl = ttl_seconds if ttl_seconds is not None else settings.SLOT_HOLD_SECONDS
    token = uuid.uuid4().hex
    claimed = (
        Slot.objects.filter(pk=slot_id, start__gt=now)
        .filter(_claimable(now))
        .update(status=Slot.Status.HELD, held_until=now + timedelta(seconds=ttl), hold_token=token)
    )
    if claimed != 1:
        raise SlotUnavailable(slot_id)
    return token


def slot_release(*, slot_id: int, hold_token: str) -> bool:
    """Give back a slot we hold (the caller chose another one or hung up)."""
    released = Slot.objects.filter(
        pk=slot_id, status=Slot.Status.HELD, hold_token=hold_token
    ).update(status=Slot.Status.FREE, held_until=None, hold_token="")
    return released == 1


def holds_release_expired(*, now: datetime | None = None) -> int:
    """Turn expired holds back into free slots; returns how many."""
    now = now or timezone.now()
    return Slot.objects.filter(status=Slot.Status.HELD, held_until__lt=now).update(
        status=Slot.Status.FREE, held_until=None, hold_token=""
    )


# --- appointments ---------------------------------------------------------------------------


def _type_offered(slot: Slot, appointment_type: AppointmentType) -> bool:
    if not appointment_type.providers.filter(pk=slot.provider_id).exists():
        return False
    if slot.rule_id is None:
        return True
    rule_types = AvailabilityRule.appointment_types.through.objects.filter(
        availabilityrule_id=slot.rule_id
    )
    return not rule_types.exists() or rule_types.filter(appointmenttype=appointment_type).exists()


def appointment_book(
    *,
    slot_id: int,
    appointment_type: AppointmentType,
    patient_id: int | None = None,
    reason: str = "",
    source: str = Appointment.Source.PHONE,
    booked_by_user: User | None = None,
    hold_token: str = "",
) -> Appointment:
    """Book a slot. Exactly one of several concurrent bookings of a slot succeeds.

    Raises :class:`SlotTaken` for the others, and :class:`TypeNotOffered` when the slot's
    provider or hours do not offer this type of visit.
    """
    now = timezone.now()
    with transaction.atomic():
        slot = Slot.objects.select_related("provider").get(pk=slot_id)
        if not _type_offered(slot, appointment_type):
            raise TypeNotOffered(slot_id, appointment_type.pk)
        claimed = (
            Slot.objects.filter(pk=slot_id, start__gt=now)
            .filter(_claimable(now, hold_token))
            .update(status=Slot.Status.BOOKED, held_until=None, hold_token="")
        )
        if claimed != 1:
            raise SlotTaken(slot_id)
        try:
            with transaction.atomic():
                appointment = Appointment.objects.create(
                    slot=slot,
                    patient_id=patient_id,
                    appointment_type=appointment_type,
                    status=Appointment.Status.BOOKED,
                    reason=reason,
                    source=source,
                    booked_by_user=booked_by_user,
                )
        except IntegrityError:
            raise SlotTaken(slot_id) from None
    log.info(
        "appointment_booked",
        appointment_id=appointment.pk,
        slot_id=slot_id,
        provider_id=slot.provider_id,
        source=source,
    )
    return appointment


def _free_slot_after_cancel(slot: Slot, now: datetime) -> None:
    if slot.start <= now:
        return
    blocked = TimeOff.objects.filter(
        provider_id=slot.provider_id, start__lt=slot.end, end__gt=slot.start
    ).exists()
    Slot.objects.filter(pk=slot.pk, status=Slot.Status.BOOKED).update(
        status=Slot.Status.BLOCKED if blocked else Slot.Status.FREE
    )


def appointment_cancel(*, appointment: Appointment, by_user: User | None = None) -> Appointment:
    """Cancel an active appointment and give its future slot back. Idempotent."""
    now = timezone.now()
    with transaction.atomic():
        current = (
            Appointment.objects.select_for_update().select_related("slot").get(pk=appointment.pk)
        )
        if current.status == Appointment.Status.CANCELLED:
            return current
        if current.status not in Appointment.ACTIVE_STATUSES:
            raise InvalidTransition(current.pk, current.status, Appointment.Status.CANCELLED)
        current.status = Appointment.Status.CANCELLED
        current.cancelled_at = now
        current.save(update_fields=["status", "cancelled_at", "updated_at"])
        _free_slot_after_cancel(current.slot, now)
        ScheduleConflict.objects.filter(appointment=current, resolved_at__isnull=True).update(
            resolved_at=now, resolved_by=by_user
        )
    log.info("appointment_cancelled", appointment_id=current.pk, slot_id=current.slot_id)
    return current


def appointment_reschedule(
    *,
    appointment: Appointment,
    new_slot_id: int,
    by_user: User | None = None,
    hold_token: str = "",
) -> Appointment:
    """Move an appointment to another slot: book the new one, then cancel the old one.

    Both happen in one transaction, so a failed booking leaves the original untouched.
    """
    with transaction.atomic():
        current = Appointment.objects.select_for_update().get(pk=appointment.pk)
        if current.status not in Appointment.ACTIVE_STATUSES:
            raise InvalidTransition(current.pk, current.status, "rescheduled")
        replacement = appointment_book(
            slot_id=new_slot_id,
            appointment_type=current.appointment_type,
            patient_id=current.patient_id,
            reason=current.reason,
            source=Appointment.Source.STAFF if by_user else current.source,
            booked_by_user=by_user or current.booked_by_user,
            hold_token=hold_token,
        )
        cancelled = appointment_cancel(appointment=current, by_user=by_user)
        cancelled.rescheduled_to = replacement
        cancelled.save(update_fields=["rescheduled_to", "updated_at"])
    log.info("appointment_rescheduled", appointment_id=current.pk, replacement_id=replacement.pk)
    return replacement


def appointment_set_outcome(*, appointment: Appointment, status: str) -> Appointment:
    """Record what happened to a booked visit: fulfilled or no-show."""
    if status not in (Appointment.Status.FULFILLED, Appointment.Status.NOSHOW):
        raise InvalidTransition(appointment.pk, appointment.status, status)
    with transaction.atomic():
        current = Appointment.objects.select_for_update().get(pk=appointment.pk)
        if current.status == status:
            return current
        if current.status != Appointment.Status.BOOKED:
            raise InvalidTransition(current.pk, current.status, status)
        current.status = status
        current.save(update_fields=["status", "updated_at"])
    log.info("appointment_outcome", appointment_id=current.pk, status=status)
    return current


def conflict_resolve(*, conflict: ScheduleConflict, by_user: User | None) -> None:
    ScheduleConflict.objects.filter(pk=conflict.pk, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolved_by=by_user
    )
