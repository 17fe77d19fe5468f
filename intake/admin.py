"""Staff pages for calls, patients, follow-ups and the PHI access log.

What staff may see where:

- List pages show no PHI: times, outcomes, phases, masked phone numbers (last two digits),
  counts. They decrypt nothing but the phone number being masked.
- Detail pages of calls, patients and follow-ups show decrypted PHI, and opening one writes a
  :class:`~intake.models.PhiAccess` record before the page is rendered (:class:`PhiAccessMixin`).
- Search goes through blind indexes only; the encrypted columns are never used in SQL (their
  fields refuse every lookup but ``isnull``, the way the user admin refuses ``password``).
- Calls and transcripts are written by the phone agent and are read-only here. The access log
  is read-only for everyone, superusers included.
- A call in progress shows its liveness: the server process serving its stream
  (``served_by``, host:pid:start, not PHI), its last heartbeat to the second, and "stale" once
  that heartbeat is older than ``CALL_STALE_SECONDS`` (the sweep is about to finish it).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import structlog
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from clinic.admin_mixins import ReadOnlyMixin
from clinic.encryption import EncryptedCharField, EncryptedDateField, EncryptedTextField
from intake import selectors, services
from intake.models import Call, Coverage, FollowUp, Patient, PhiAccess, Turn

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Encrypted fields are TextFields underneath; without this the admin would give every one of
# them a textarea (its widget for TextField is found first in the field's class hierarchy).
ENCRYPTED_FORMFIELDS: dict[Any, dict[str, Any]] = {
    EncryptedCharField: {"widget": widgets.AdminTextInputWidget},
    EncryptedDateField: {"widget": widgets.AdminDateWidget},
    EncryptedTextField: {"widget": widgets.AdminTextareaWidget},
}


def staff_user(request: HttpRequest) -> User:
    """The signed-in staff member (admin views are only reached signed in)."""
    if not request.user.is_authenticated:
        raise PermissionDenied
    return request.user


class PhiAccessMixin:
    """Record a PHI access whenever a detail page with decrypted PHI is shown.

    The record is written in ``change_view``, before the template response renders, so a
    failure to write it (a database error) fails the page instead of showing PHI unrecorded.
    Redirects (after a save, or for a missing object) and refusals show nothing and record
    nothing.
    """

    phi_purpose: str
    phi_fields: tuple[str, ...]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {
            **(extra_context or {}),
            "phi_notice": "Opening this page was recorded in the PHI access log.",
        }
        response: HttpResponse = super().change_view(  # type: ignore[misc]
            request, object_id, form_url, context
        )
        if isinstance(response, TemplateResponse) and response.status_code == 200:
            original = (response.context_data or {}).get("original")
            if original is not None:
                services.phi_access_record(
                    user=staff_user(request),
                    record=original,
                    fields=self.phi_fields,
                    purpose=self.phi_purpose,
                    request_id=structlog.contextvars.get_contextvars().get("request_id", ""),
                )
        return response


# --- Calls -----------------------------------------------------------------------------------


class TurnInline(ReadOnlyMixin, admin.TabularInline):  # type: ignore[type-arg]
    """The transcript, in the order it was spoken, with the pipeline's timings per turn."""

    model = Turn
    fields = (
        "sequence",
        "speaker",
        "transcript_text",
        "stt_final_ms",
        "understanding_ms",
        "tts_first_byte_ms",
        "response_latency_ms",
        "interrupted",
        "created_at",
    )
    readonly_fields = fields
    ordering = ("sequence",)
    extra = 0
    can_delete = False
    verbose_name = "turn"
    verbose_name_plural = "transcript"

    @admin.display(description="text")
    def transcript_text(self, turn: Turn) -> str:
        if turn.text_purged_at is not None:
            return f"(removed by the retention policy on {turn.text_purged_at:%Y-%m-%d})"
        return str(turn.text)


def heartbeat_stale_before(now: datetime.datetime | None = None) -> datetime.datetime:
    """The moment before which a live call's heartbeat is stale.

    The sweep (:mod:`intake.liveness`) finishes such calls on its next round; until it does,
    staff see them marked here, so a call on a server that died is not taken for a live one.
    Read from settings on every request, so the page and the sweep agree on the threshold.
    """
    return (now or timezone.now()) - datetime.timedelta(seconds=settings.CALL_STALE_SECONDS)


class LivenessFilter(admin.SimpleListFilter):
    """Calls in progress by their heartbeat; finished calls have no liveness to filter by.

    "No stream yet" are calls whose media stream never attached (the caller hung up during
    the answer, or was sent to the front desk): Twilio's callbacks finish those, not the sweep
    of stale heartbeats.
    """

    title = "liveness"
    parameter_name = "liveness"

    def lookups(
        self,
        request: HttpRequest,
        model_admin: admin.ModelAdmin[Any],
    ) -> tuple[tuple[str, str], ...]:
        return (
            ("live", "Live (heartbeat fresh)"),
            ("stale", "Stale heartbeat"),
            ("no_stream", "No stream yet"),
        )

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        in_progress = queryset.filter(outcome=Call.Outcome.IN_PROGRESS)
        if value == "live":
            return in_progress.filter(heartbeat_at__gte=heartbeat_stale_before())
        if value == "stale":
            return in_progress.filter(heartbeat_at__lt=heartbeat_stale_before())
        if value == "no_stream":
            return in_progress.filter(heartbeat_at__isnull=True)
        return queryset


CALL_FIELDS = (
    "call_sid",
    "caller_number",
    "started_at",
    "ended_at",
    "duration_seconds",
    "outcome",
    "phase",
    "patient",
    "appointment",
)
LIVENESS_FIELDS = ("liveness", "served_by", "last_heartbeat")


@admin.register(Call)
class CallAdmin(ReadOnlyMixin, PhiAccessMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Calls, with which server process serves a live one and when it last said so."""

    phi_purpose = PhiAccess.Purpose.VIEW_CALL
    phi_fields = Call.PHI_FIELDS

    list_display = (
        "started_at",
        "duration",
        "outcome",
        "phase",
        "caller",
        "liveness",
        "last_heartbeat",
        "served_by",
    )
    list_filter = (LivenessFilter, "outcome", "phase", "started_at")
    date_hierarchy = "started_at"
    # Call SIDs are not PHI and are searched as text; a phone number goes to the blind index.
    search_fields = ("call_sid",)
    search_help_text = "A caller's phone number (any format) or a Twilio Call SID."
    fieldsets = ((None, {"fields": CALL_FIELDS}), ("Liveness", {"fields": LIVENESS_FIELDS}))
    readonly_fields = (*CALL_FIELDS, *LIVENESS_FIELDS)
    inlines = (TurnInline,)
    show_full_result_count = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Call], search_term: str
    ) -> tuple[QuerySet[Call], bool]:
        term = search_term.strip()
        if term and not any(char.isalpha() for char in term):
            matches = selectors.calls_from_number(term)
            return queryset.filter(pk__in=matches.values("pk")), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="duration", ordering="duration_seconds")
    def duration(self, call: Call) -> str:
        if call.duration_seconds is None:
            return "—"
        minutes, seconds = divmod(call.duration_seconds, 60)
        return f"{minutes}:{seconds:02d}"

    @admin.display(description="caller")
    def caller(self, call: Call) -> str:
        return call.caller_masked

    @admin.display(description="liveness")
    def liveness(self, call: Call) -> str:
        if call.outcome != Call.Outcome.IN_PROGRESS:
            return "—"
        if call.heartbeat_at is None:
            return "no stream yet"
        now = timezone.now()
        if call.heartbeat_at < heartbeat_stale_before(now):
            silent = int((now - call.heartbeat_at).total_seconds())
            return f"stale: no heartbeat for {silent} s"
        return "live"

    @admin.display(description="last heartbeat", ordering="heartbeat_at")
    def last_heartbeat(self, call: Call) -> str:
        # To the second, in the clinic's zone: beats are seconds apart, and the admin's own
        # date format stops at the minute.
        if call.heartbeat_at is None:
            return "—"
        return timezone.localtime(call.heartbeat_at).strftime("%Y-%m-%d %H:%M:%S")


# --- Patients --------------------------------------------------------------------------------


class CoverageInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Coverage
    fields = ("carrier", "member_id", "group_number", "subscriber_relation", "verified")
    formfield_overrides = ENCRYPTED_FORMFIELDS
    extra = 0


@admin.register(Patient)
class PatientAdmin(PhiAccessMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    phi_purpose = PhiAccess.Purpose.VIEW_PATIENT
    phi_fields = (*Patient.PHI_FIELDS, *(f"coverages.{name}" for name in Coverage.PHI_FIELDS))

    list_display = ("__str__", "phone_display", "created_at", "call_count")
    list_filter = ("preferred_language", "created_at")
    # Searched by hash equality in get_search_results, never with SQL LIKE: these are the
    # blind-index columns, listed so that the admin shows its search box.
    search_fields = ("phone_index", "dob_index", "name_dob_index")
    search_help_text = (
        "A phone number (any format), a date of birth (1984-03-12, 03/12/1984, March 12 1984), "
        "or a last name and a date of birth."
    )
    fieldsets = (
        (None, {"fields": ("first_name", "last_name", "date_of_birth", "preferred_language")}),
        ("Contact", {"fields": ("phone", "email", "address")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = ("created_at", "updated_at")
    formfield_overrides = ENCRYPTED_FORMFIELDS
    inlines = (CoverageInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Patient]:
        return selectors.patients_with_call_counts()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Patient], search_term: str
    ) -> tuple[QuerySet[Patient], bool]:
        # Never delegates to super(): it would compare the plaintext term with the hashes.
        if not search_term.strip():
            return queryset, False
        matches = selectors.patients_search(search_term)
        if matches is None:
            self.message_user(
                request,
                "Search by phone number, date of birth, or last name and date of birth.",
                messages.WARNING,
            )
            return queryset.none(), False
        return queryset.filter(pk__in=matches.values("pk")), False

    @admin.display(description="phone")
    def phone_display(self, patient: Patient) -> str:
        return patient.phone_masked

    @admin.display(description="calls", ordering="call_count")
    def call_count(self, patient: Patient) -> int:
        return int(getattr(patient, "call_count", 0))


# --- Follow-ups ------------------------------------------------------------------------------


@admin.register(FollowUp)
class FollowUpAdmin(PhiAccessMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """The front desk's work queue: overdue first, then by priority and due time."""

    phi_purpose = PhiAccess.Purpose.VIEW_FOLLOWUP
    phi_fields = FollowUp.PHI_FIELDS

    list_display = (
        "id",
        "reason",
        "priority",
        "status",
        "due",
        "overdue",
        "assignee",
        "call_link",
        "created_at",
    )
    list_filter = (
        "reason",
        "priority",
        "status",
        ("assignee", admin.RelatedOnlyFieldListFilter),
    )
    actions = ("assign_to_me", "mark_done")
    raw_id_fields = ("call", "patient")
    formfield_overrides = ENCRYPTED_FORMFIELDS
    list_select_related = ("assignee",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[FollowUp]:
        # The queue's own order (see selectors.followups_queue); no `ordering` here so that
        # the change list keeps it.
        return selectors.followups_queue()

    def get_fields(self, request: HttpRequest, obj: FollowUp | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("reason", "priority", "due", "patient", "call", "summary", "notes")
        return (
            "reason",
            "priority",
            "status",
            "assignee",
            "due",
            "patient",
            "call",
            "schedule_conflict",
            "summary",
            "notes",
            "created_at",
            "closed_at",
            "closed_by",
        )

    def get_readonly_fields(
        self, request: HttpRequest, obj: FollowUp | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ()
        # Status moves through the actions ("assign to me", "mark done"), which record who
        # and when; what a call left behind (reason, links) is not rewritten by hand.
        return (
            "reason",
            "status",
            "call",
            "schedule_conflict",
            "created_at",
            "closed_at",
            "closed_by",
        )

    def save_model(self, request: HttpRequest, obj: FollowUp, form: Any, change: bool) -> None:
        if not change and obj.due is None:
            obj.due = services.followup_default_due(priority=obj.priority)
        super().save_model(request, obj, form, change)
        if change and "assignee" in form.changed_data and obj.assignee and obj.is_open:
            services.followup_assign(followup=obj, assignee=obj.assignee)

    @admin.display(boolean=True, description="overdue", ordering="overdue_rank")
    def overdue(self, followup: FollowUp) -> bool:
        return followup.is_overdue

    @admin.display(description="call")
    def call_link(self, followup: FollowUp) -> str:
        if followup.call_id is None:
            return "—"
        try:
            url = reverse("admin:intake_call_change", args=[followup.call_id])
        except NoReverseMatch:
            return f"#{followup.call_id}"
        return format_html('<a href="{}">Call #{}</a>', url, followup.call_id)

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[FollowUp]) -> None:
        user = staff_user(request)
        assigned = 0
        for followup in queryset.filter(status__in=FollowUp.OPEN_STATUSES):
            services.followup_assign(followup=followup, assignee=user)
            assigned += 1
        self.message_user(request, f"Assigned to you: {assigned}.", messages.SUCCESS)

    @admin.action(description="Mark done", permissions=["change"])
    def mark_done(self, request: HttpRequest, queryset: QuerySet[FollowUp]) -> None:
        user = staff_user(request)
        closed = 0
        for followup in queryset.filter(status__in=FollowUp.OPEN_STATUSES):
            services.followup_mark_done(followup=followup, by=user)
            closed += 1
        self.message_user(request, f"Marked done: {closed}.", messages.SUCCESS)


# --- PHI access log --------------------------------------------------------------------------


@admin.register(PhiAccess)
class PhiAccessAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only for everyone: no add, change or delete, whatever the user's flags."""

    list_display = ("accessed_at", "user", "purpose", "record_link", "fields_shown")
    list_filter = ("purpose", "content_type", ("user", admin.RelatedOnlyFieldListFilter))
    date_hierarchy = "accessed_at"
    search_fields = ("user__username",)
    fields = (
        "accessed_at",
        "user",
        "purpose",
        "content_type",
        "object_id",
        "fields",
        "request_id",
    )
    readonly_fields = fields
    list_select_related = ("user", "content_type")

    @admin.display(description="record")
    def record_link(self, access: PhiAccess) -> str:
        meta = access.content_type.model_class()
        label = f"{access.content_type.name} #{access.object_id}"
        if meta is None:
            return label
        try:
            url = reverse(
                f"admin:{meta._meta.app_label}_{meta._meta.model_name}_change",
                args=[access.object_id],
            )
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="fields")
    def fields_shown(self, access: PhiAccess) -> str:
        return ", ".join(access.fields)
