"""Patients, coverage, calls, transcript turns, follow-ups and the PHI access log.

Every value that identifies a person or repeats what they said is encrypted at rest
(:mod:`clinic.encryption`); equality lookups go through blind indexes (:mod:`intake.blind_index`)
kept up to date by ``save()``. ``__str__`` never shows PHI, because the admin puts it in page
titles, breadcrumbs, history entries and messages.

Writes go through :mod:`intake.services`, reads through :mod:`intake.selectors`.
"""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone

from clinic.encryption import (
    EncryptedCharField,
    EncryptedDateField,
    EncryptedJSONField,
    EncryptedTextField,
)
from intake import blind_index

MASK_DOTS = "•••• ••• ••"


def mask_phone(number: str) -> str:
    """``"•••• ••• ••67"``: enough for staff to tell two callers apart, too little to dial."""
    digits = [char for char in number if char.isdigit()]
    if len(digits) < 4:
        return "—"
    return MASK_DOTS + "".join(digits[-2:])


class Patient(models.Model):
    """A person who calls the clinic. Every identifying field is encrypted at rest.

    ``phone`` is stored in E.164 when it parses. The three blind indexes are recomputed from
    the plaintext on every ``save()``, so they cannot drift from the encrypted values (a
    queryset ``update()`` bypasses this and must not touch these fields).
    """

    class Language(models.TextChoices):
        ENGLISH = "en", "English"
        SPANISH = "es", "Spanish"
        OTHER = "other", "Other"

    first_name = EncryptedCharField(max_length=100)
    last_name = EncryptedCharField(max_length=100)
    date_of_birth = EncryptedDateField(null=True, blank=True)
    phone = EncryptedCharField(max_length=32, blank=True)
    email = EncryptedCharField(max_length=254, blank=True, validators=[validate_email])
    address = EncryptedTextField(blank=True)
    preferred_language = models.CharField(
        max_length=8, choices=Language.choices, default=Language.ENGLISH
    )
    phone_index = models.CharField(max_length=blind_index.INDEX_LENGTH, blank=True, editable=False)
    dob_index = models.CharField(max_length=blind_index.INDEX_LENGTH, blank=True, editable=False)
    name_dob_index = models.CharField(
        max_length=blind_index.INDEX_LENGTH, blank=True, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Encrypted fields a staff member sees on the patient page (recorded as PHI access).
    PHI_FIELDS: ClassVar[tuple[str, ...]] = (
        "first_name",
        "last_name",
        "date_of_birth",
        "phone",
        "email",
        "address",
    )
    BLIND_INDEX_FIELDS: ClassVar[list[str]] = ["phone_index", "dob_index", "name_dob_index"]

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["phone_index"], name="patient_phone_index"),
            models.Index(fields=["dob_index"], name="patient_dob_index"),
            models.Index(fields=["name_dob_index"], name="patient_name_dob_index"),
        ]

    def __str__(self) -> str:
        return f"Patient #{self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.phone = blind_index.normalise_phone(self.phone) or self.phone.strip()
        self.refresh_blind_indexes()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], *self.BLIND_INDEX_FIELDS}
        super().save(*args, **kwargs)

    def refresh_blind_indexes(self) -> None:
        """Recompute the keyed hashes from the plaintext (also after a blind-key change)."""
        self.phone_index = blind_index.phone_index(self.phone)
        self.dob_index = blind_index.dob_index(self.date_of_birth)
        self.name_dob_index = blind_index.name_dob_index(self.last_name, self.date_of_birth)

    @property
    def phone_masked(self) -> str:
        return mask_phone(self.phone)


class Coverage(models.Model):
    """A patient's insurance as the caller gave it; ``verified`` once staff have checked it."""

    class Relation(models.TextChoices):
        SELF = "self", "Self"
        SPOUSE = "spouse", "Spouse"
        CHILD = "child", "Child"
        OTHER = "other", "Other"

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="coverages")
    # The carrier's name is not PHI (the clinic lists the carriers it accepts) and stays
    # plain so that staff can filter by it.
    carrier = models.CharField(max_length=120)
    member_id = EncryptedCharField(max_length=64)
    group_number = EncryptedCharField(max_length=64, blank=True)
    subscriber_relation = models.CharField(
        max_length=8, choices=Relation.choices, default=Relation.SELF
    )
    verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    PHI_FIELDS: ClassVar[tuple[str, ...]] = ("member_id", "group_number")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "coverage"

    def __str__(self) -> str:
        return f"Coverage #{self.pk} ({self.carrier})"


class Call(models.Model):
    """One phone call: Twilio's CallSid, who called, how it went and how far it got.

    ``state`` is the conversation's memory between turns (it may hold what the caller said),
    so it is encrypted as a whole. ``phase`` is the name of the conversation step reached.
    """

    class Outcome(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        BOOKED = "booked", "Booked"
        RESCHEDULED = "rescheduled", "Rescheduled"
        CANCELLED = "cancelled", "Cancelled"
        EMERGENCY = "emergency", "Emergency"
        CALLBACK = "callback", "Callback requested"
        TRANSFERRED = "transferred", "Transferred"
        ABANDONED = "abandoned", "Abandoned"
        FAILED = "failed", "Failed"

    call_sid = models.CharField("Call SID", max_length=64, unique=True)
    caller_number = EncryptedCharField(max_length=32, blank=True)
    caller_number_index = models.CharField(
        max_length=blind_index.INDEX_LENGTH, blank=True, editable=False, db_index=True
    )
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.IN_PROGRESS)
    phase = models.CharField(max_length=40, blank=True)
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    appointment = models.ForeignKey(
        "clinic.Appointment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="calls",
    )
    state = EncryptedJSONField(default=dict, blank=True)
    state_purged_at = models.DateTimeField(null=True, blank=True)
    # Written by the process serving the call's stream every CALL_HEARTBEAT_SECONDS; a call in
    # progress whose heartbeat stops is finished by the sweep (intake.liveness).
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    served_by = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    PHI_FIELDS: ClassVar[tuple[str, ...]] = ("caller_number", "turns.text")
    BLIND_INDEX_FIELDS: ClassVar[list[str]] = ["caller_number_index"]

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["started_at"], name="call_started_at"),
            # The sweep reads only calls in progress, a handful among all calls ever made.
            models.Index(
                fields=["heartbeat_at"],
                name="call_in_progress_heartbeat",
                condition=models.Q(outcome="in_progress"),
            ),
        ]

    def __str__(self) -> str:
        return f"Call #{self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.refresh_blind_indexes()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "caller_number" in update_fields:
            kwargs["update_fields"] = {*update_fields, *self.BLIND_INDEX_FIELDS}
        super().save(*args, **kwargs)

    def refresh_blind_indexes(self) -> None:
        """Recompute the caller's phone hash from the plaintext number."""
        self.caller_number_index = blind_index.phone_index(self.caller_number)

    @property
    def caller_masked(self) -> str:
        return mask_phone(self.caller_number)

    @property
    def finished(self) -> bool:
        return self.outcome != self.Outcome.IN_PROGRESS


class Turn(models.Model):
    """One utterance in a call, in order, with how long each stage of the pipeline took.

    Timings are milliseconds: ``stt_final_ms`` from the end of the caller's speech to the final
    transcript, ``understanding_ms`` for the language step, ``tts_first_byte_ms`` from the
    synthesis request to its first audio, ``response_latency_ms`` from the end of the caller's
    speech to the first audio sent back (what the caller feels). The retention job empties
    ``text`` and stamps ``text_purged_at``; the timings stay for the benchmarks.
    """

    class Speaker(models.TextChoices):
        CALLER = "caller", "Caller"
        AGENT = "agent", "Agent"
        SYSTEM = "system", "System"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="turns")
    sequence = models.PositiveIntegerField()
    speaker = models.CharField(max_length=8, choices=Speaker.choices)
    text = EncryptedTextField(blank=True)
    stt_final_ms = models.PositiveIntegerField("STT final (ms)", null=True, blank=True)
    understanding_ms = models.PositiveIntegerField("understanding (ms)", null=True, blank=True)
    tts_first_byte_ms = models.PositiveIntegerField("TTS first byte (ms)", null=True, blank=True)
    response_latency_ms = models.PositiveIntegerField(
        "speech end to audio out (ms)", null=True, blank=True
    )
    interrupted = models.BooleanField(default=False)
    text_purged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["call", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["call", "sequence"], name="one_turn_per_sequence")
        ]
        indexes = [models.Index(fields=["created_at"], name="turn_created_at")]

    def __str__(self) -> str:
        return f"Turn {self.sequence} of call #{self.call_id}"


class FollowUp(models.Model):
    """Work for the front desk that a call (or the calendar) left behind."""

    class Reason(models.TextChoices):
        EMERGENCY = "emergency", "Emergency flagged"
        CALLBACK_REQUESTED = "callback_requested", "Callback requested"
        INSURANCE_NOT_ACCEPTED = "insurance_not_accepted", "Insurance not accepted"
        NO_SLOTS = "no_slots", "No slots"
        BOOKING_FAILED = "booking_failed", "Booking failed"
        TRANSFER_FAILED = "transfer_failed", "Transfer failed"
        CALL_DROPPED = "call_dropped", "Call dropped"
        HANDED_OVER = "handed_over", "Handed over mid-call"
        SCHEDULE_CONFLICT = "schedule_conflict", "Schedule conflict"

    class Priority(models.IntegerChoices):
        # Numbers sort most urgent first.
        URGENT = 1, "Urgent"
        HIGH = 2, "High"
        NORMAL = 3, "Normal"
        LOW = 4, "Low"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"

    OPEN_STATUSES = (Status.OPEN, Status.IN_PROGRESS)

    reason = models.CharField(max_length=24, choices=Reason.choices)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    call = models.ForeignKey(
        Call, null=True, blank=True, on_delete=models.SET_NULL, related_name="followups"
    )
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.SET_NULL, related_name="followups"
    )
    schedule_conflict = models.OneToOneField(
        "clinic.ScheduleConflict",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="followup",
    )
    summary = EncryptedTextField(blank=True, help_text="What the caller needs, in a sentence.")
    notes = EncryptedTextField(blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="followups",
    )
    due = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    PHI_FIELDS: ClassVar[tuple[str, ...]] = ("summary", "notes")

    class Meta:
        verbose_name = "follow-up"
        constraints = [
            # A retried "open a follow-up" action from a call must not open a second one.
            models.UniqueConstraint(
                fields=["call", "reason"],
                condition=Q(call__isnull=False, status__in=["open", "in_progress"]),
                name="one_open_followup_per_call_reason",
            ),
            models.CheckConstraint(
                condition=Q(status="done", closed_at__isnull=False) | ~Q(status="done"),
                name="followup_done_has_closed_at",
            ),
        ]
        indexes = [models.Index(fields=["status", "priority", "due"], name="followup_queue")]

    def __str__(self) -> str:
        return f"Follow-up #{self.pk} ({self.get_reason_display()})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def is_overdue(self) -> bool:
        return self.is_open and self.due is not None and self.due < timezone.now()


class ImmutableRecordError(Exception):
    """An attempt to change or delete an audit record."""


class PhiAccessQuerySet(models.QuerySet["PhiAccess"]):
    """Bulk updates and deletes are refused like single ones."""

    def update(self, **kwargs: Any) -> NoReturn:
        raise ImmutableRecordError("PHI access records cannot be changed")

    def delete(self) -> NoReturn:
        raise ImmutableRecordError("PHI access records cannot be deleted")


class PhiAccess(models.Model):
    """Who saw which PHI of which record, when and why. Holds no PHI values itself.

    Append-only: ``save()`` refuses to update, ``delete()`` refuses, and so do the queryset's
    bulk ``update()`` and ``delete()``. Only a ``view`` permission exists. Users who have
    accessed PHI cannot be deleted (``PROTECT``): deactivate the account instead, so that
    the trail keeps naming them.
    """

    class Purpose(models.TextChoices):
        VIEW_CALL = "view_call", "View call transcript"
        VIEW_PATIENT = "view_patient", "View patient"
        VIEW_FOLLOWUP = "view_followup", "View follow-up"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="phi_accesses"
    )
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    object_id = models.PositiveBigIntegerField()
    record = GenericForeignKey("content_type", "object_id")
    fields = models.JSONField(default=list, help_text="Names of the fields shown, never values.")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    request_id = models.CharField(max_length=64, blank=True)
    accessed_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = PhiAccessQuerySet.as_manager()

    class Meta:
        verbose_name = "PHI access"
        verbose_name_plural = "PHI access log"
        ordering = ["-accessed_at"]
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["content_type", "object_id"], name="phiaccess_record"),
        ]

    def __str__(self) -> str:
        return f"PHI access #{self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableRecordError("PHI access records cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableRecordError("PHI access records cannot be deleted")


class Confirmation(models.Model):
    """The confirmation message for a booking; one per appointment, so sending is idempotent.

    A re-delivered Celery task finds the row already ``sent`` and does nothing.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        NONE = "none", "No contact on file"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        SKIPPED = "skipped", "Skipped"

    appointment = models.OneToOneField(
        "clinic.Appointment", on_delete=models.CASCADE, related_name="confirmation"
    )
    call = models.ForeignKey(
        Call, null=True, blank=True, on_delete=models.SET_NULL, related_name="confirmations"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.NONE)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Confirmation for appointment #{self.appointment_id}"
