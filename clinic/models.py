"""The clinic's calendar, modelled on the HL7 FHIR scheduling resources.

FHIR names, for staff and future integrations: a Provider's availability rules are its
``Schedule`` (``Schedule.planningHorizon`` = ``SLOT_HORIZON_DAYS``); ``Slot`` and
``Appointment`` carry FHIR's statuses. Times are stored in UTC and shown in the clinic's zone
(``CLINIC_TIME_ZONE``).

The patient on an appointment is the swappable ``CLINIC_PATIENT_MODEL`` (``intake.Patient``),
referenced by name like ``AUTH_USER_MODEL``, so that this app never imports ``intake``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from clinic.encryption import EncryptedTextField

WEEKDAYS = (
    (0, "Mon"),
    (1, "Tue"),
    (2, "Wed"),
    (3, "Thu"),
    (4, "Fri"),
    (5, "Sat"),
    (6, "Sun"),
)


class Provider(models.Model):
    """A clinician who sees patients (FHIR Practitioner / PractitionerRole)."""

    name = models.CharField(max_length=120)
    specialty = models.CharField(max_length=120, blank=True)
    active = models.BooleanField(default=True)
    accepts_new_patients = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AppointmentType(models.Model):
    """What a visit is for, how long it takes, and who offers it (FHIR ``appointmentType``)."""

    class Kind(models.TextChoices):
        NEW_PATIENT = "new_patient", "New patient"
        FOLLOW_UP = "follow_up", "Follow-up"
        ANY = "any", "New or returning"

    name = models.CharField(max_length=80, unique=True)
    duration_minutes = models.PositiveSmallIntegerField(default=30)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ANY)
    providers = models.ManyToManyField(Provider, related_name="appointment_types", blank=True)
    instructions = models.TextField(
        blank=True, help_text="Read to the caller after booking (no medical advice)."
    )
    keywords = models.CharField(
        max_length=300,
        blank=True,
        help_text="Comma-separated words in a caller's reason that suggest this type.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AvailabilityRule(models.Model):
    """Weekly hours of one provider (the FHIR ``Schedule`` from which slots are made)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="rules")
    weekdays = models.JSONField(default=list, help_text="Days of the week, 0 = Monday.")
    start_time = models.TimeField()
    end_time = models.TimeField()
    slot_minutes = models.PositiveSmallIntegerField(default=30)
    appointment_types = models.ManyToManyField(AppointmentType, related_name="rules", blank=True)
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["provider", "start_time"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_time__gt=models.F("start_time")), name="rule_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True)
                | Q(effective_to__gte=models.F("effective_from")),
                name="rule_effective_range",
            ),
        ]

    def __str__(self) -> str:
        days = ", ".join(label for number, label in WEEKDAYS if number in self.weekdays)
        return f"{self.provider}: {days} {self.start_time:%H:%M}-{self.end_time:%H:%M}"


class TimeOff(models.Model):
    """A period when a provider sees no one. Free slots inside it become blocked."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="time_off")
    start = models.DateTimeField()
    end = models.DateTimeField()
    reason = models.CharField(max_length=120, blank=True, help_text="No patient details here.")

    class Meta:
        ordering = ["start"]
        verbose_name_plural = "time off"
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="timeoff_order")
        ]

    def __str__(self) -> str:
        return f"{self.provider}: {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M}"


class Slot(models.Model):
    """A bookable interval of one provider.

    FHIR ``Slot.status``: free = ``free``, held = ``busy-tentative`` (a caller is deciding),
    booked = ``busy``, blocked = ``busy-unavailable`` (time off).
    """

    class Status(models.TextChoices):
        FREE = "free", "Free"
        HELD = "held", "Held"
        BOOKED = "booked", "Booked"
        BLOCKED = "blocked", "Blocked"

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="slots")
    # No index of its own: open_slots filters by rule among slots read in time order (the
    # start index); an index here tempts the planner into reading and sorting every slot.
    rule = models.ForeignKey(
        AvailabilityRule,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="slots",
        db_index=False,
    )
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.FREE)
    held_until = models.DateTimeField(null=True, blank=True)
    hold_token = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["start", "provider"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "start"], name="one_slot_per_start"),
            models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="slot_order"),
        ]
        indexes = [
            # open_slots walks this in time order and stops at the first few open slots.
            models.Index(fields=["start", "provider"], name="slot_start_provider"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.start:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def duration_minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)


class Appointment(models.Model):
    """A booking of one slot (FHIR ``Appointment`` and its statuses)."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        BOOKED = "booked", "Booked"
        CANCELLED = "cancelled", "Cancelled"
        NOSHOW = "noshow", "No-show"
        FULFILLED = "fulfilled", "Fulfilled"

    class Source(models.TextChoices):
        PHONE = "phone", "Phone agent"
        STAFF = "staff", "Staff"

    # Statuses that occupy a slot; the partial unique index below enforces one per slot.
    ACTIVE_STATUSES = (Status.PROPOSED, Status.BOOKED)

    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="appointments")
    patient = models.ForeignKey(
        settings.CLINIC_PATIENT_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="appointments",
    )
    appointment_type = models.ForeignKey(AppointmentType, on_delete=models.PROTECT)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BOOKED)
    reason = EncryptedTextField(blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.PHONE)
    booked_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rescheduled_to = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rescheduled_from"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-slot__start"]
        constraints = [
            models.UniqueConstraint(
                fields=["slot"],
                condition=Q(status__in=["proposed", "booked"]),
                name="one_active_appointment_per_slot",
            )
        ]
        indexes = [models.Index(fields=["status"], name="appointment_status")]

    def __str__(self) -> str:
        return f"Appointment #{self.pk}"

    @property
    def provider(self) -> Provider:
        return self.slot.provider

    @property
    def start(self) -> Any:
        return self.slot.start


class ScheduleConflict(models.Model):
    """A booked appointment that the schedule no longer allows (time off, edited hours).

    The appointment is never moved or cancelled silently: staff resolve the conflict.
    """

    class Cause(models.TextChoices):
        TIME_OFF = "time_off", "Time off over a booking"
        OUTSIDE_HOURS = "outside_hours", "Booking outside the provider's hours"

    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="conflicts")
    cause = models.CharField(max_length=16, choices=Cause.choices)
    time_off = models.ForeignKey(TimeOff, null=True, blank=True, on_delete=models.SET_NULL)
    detected_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["resolved_at", "-detected_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "cause"],
                condition=Q(resolved_at__isnull=True),
                name="one_open_conflict_per_cause",
            )
        ]

    def __str__(self) -> str:
        return f"Conflict: appointment #{self.appointment_id} ({self.get_cause_display()})"


class OutboxMessage(models.Model):
    """A Celery task to send, written in the same transaction as the change that caused it.

    ``transaction.on_commit(task.delay)`` alone loses the task when the broker is down at
    commit (or the process dies just after): the change is kept and its side effect is not.
    A row here commits or rolls back with the change; :mod:`clinic.outbox` publishes it after
    commit and, failing that, the relay does later. A row may be published more than once (a
    crash between publish and marking it), so every outbox task is idempotent.

    ``args`` are primary keys only, never PHI (they travel through the broker and its logs).
    ``last_error`` is an exception class name, never a message (messages can quote data).
    """

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list, help_text="Primary keys only, never patient data.")
    dedupe_key = models.CharField(
        max_length=200, unique=True, help_text="One row per logical message, e.g. an appointment."
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Not before: set ahead while a dispatcher has the row (a lease) and after a failure (a
    # back-off), so that the relay neither races the on-commit dispatch nor hammers a dead broker.
    available_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The relay reads only what is still to be sent, oldest due first.
            models.Index(
                fields=["available_at"],
                condition=Q(dispatched_at__isnull=True),
                name="outbox_due",
            )
        ]

    def __str__(self) -> str:
        return f"Outbox #{self.pk} {self.task}"
