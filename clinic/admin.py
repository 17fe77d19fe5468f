"""Admin for the calendar: administrators edit providers and hours; front desk works bookings.

Declarative classes; every change that matters goes through :mod:`clinic.services`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html

from clinic import selectors, services
from clinic.admin_mixins import NoAddOrDeleteMixin, ReadOnlyMixin
from clinic.models import (
    WEEKDAYS,
    Appointment,
    AppointmentType,
    AvailabilityRule,
    OutboxMessage,
    Provider,
    ScheduleConflict,
    Slot,
    TimeOff,
)


def _local(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%a %Y-%m-%d %H:%M") if moment else "-"


# --- providers and their schedule -----------------------------------------------------------


class AvailabilityRuleForm(forms.ModelForm):  # type: ignore[type-arg]
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS, coerce=int, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = AvailabilityRule
        fields = (
            "weekdays",
            "start_time",
            "end_time",
            "slot_minutes",
            "appointment_types",
            "effective_from",
            "effective_to",
        )

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        start, end = cleaned.get("start_time"), cleaned.get("end_time")
        if start and end and end <= start:
            raise forms.ValidationError("The end time must be after the start time.")
        return cleaned


class AvailabilityRuleInline(admin.TabularInline):  # type: ignore[type-arg]
    model = AvailabilityRule
    form = AvailabilityRuleForm
    extra = 0
    filter_horizontal = ("appointment_types",)


class TimeOffInline(admin.TabularInline):  # type: ignore[type-arg]
    model = TimeOff
    extra = 0


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "specialty", "active", "accepts_new_patients", "today_link")
    list_filter = ("active", "accepts_new_patients", "specialty")
    search_fields = ("name", "specialty")
    inlines = (AvailabilityRuleInline, TimeOffInline)

    @admin.display(description="Today")
    def today_link(self, provider: Provider) -> str:
        url = reverse("admin:clinic_provider_today", args=[provider.pk])
        return format_html('<a href="{}">Today</a>', url)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Rules and time off are saved with the provider: bring its slots in line at once."""
        super().save_related(request, form, formsets, change)
        report = services.slots_generate(provider_ids=[form.instance.pk])
        self.message_user(request, f"Slots updated: {report}.")
        if report.conflicts:
            self.message_user(
                request,
                f"{len(report.conflicts)} booked appointment(s) now conflict with the schedule; "
                "see Schedule conflicts.",
                level=messages.WARNING,
            )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<int:provider_id>/today/",
                self.admin_site.admin_view(self.today_view),
                name="clinic_provider_today",
            )
        ]
        return own + super().get_urls()

    def today_view(self, request: HttpRequest, provider_id: int) -> HttpResponse:
        """A read-only agenda of one provider's day (today unless ?day=YYYY-MM-DD)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        provider = get_object_or_404(Provider, pk=provider_id)
        day = parse_date(request.GET.get("day", "")) or timezone.localdate()
        rows = [
            {"slot": slot, "appointment": selectors.active_appointment(slot)}
            for slot in selectors.provider_day(provider=provider, day=day)
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"{provider} on {day:%A %d %B %Y}",
            "provider": provider,
            "day": day,
            "previous_day": date.fromordinal(day.toordinal() - 1),
            "next_day": date.fromordinal(day.toordinal() + 1),
            "rows": rows,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/clinic/provider/today.html", context)


@admin.register(AppointmentType)
class AppointmentTypeAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "duration_minutes", "kind")
    list_filter = ("kind",)
    search_fields = ("name",)
    filter_horizontal = ("providers",)


@admin.register(TimeOff)
class TimeOffAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("provider", "start_local", "end_local", "reason")
    list_filter = ("provider",)
    list_select_related = ("provider",)
    date_hierarchy = "start"

    @admin.display(description="Start", ordering="start")
    def start_local(self, period: TimeOff) -> str:
        return _local(period.start)

    @admin.display(description="End", ordering="end")
    def end_local(self, period: TimeOff) -> str:
        return _local(period.end)

    def save_model(self, request: HttpRequest, obj: TimeOff, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        report = services.slots_generate(provider_ids=[obj.provider_id])
        if report.conflicts:
            self.message_user(
                request,
                f"{len(report.conflicts)} booked appointment(s) fall in this time off; "
                "see Schedule conflicts.",
                level=messages.WARNING,
            )

    def delete_model(self, request: HttpRequest, obj: TimeOff) -> None:
        provider_id = obj.provider_id
        super().delete_model(request, obj)
        services.slots_generate(provider_ids=[provider_id])


# --- slots ----------------------------------------------------------------------------------


@admin.register(Slot)
class SlotAdmin(NoAddOrDeleteMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Slots come from the rules: nobody adds or deletes them by hand."""

    list_display = ("start_local", "end_local", "provider", "status")
    list_filter = ("status", "provider")
    list_select_related = ("provider",)
    date_hierarchy = "start"
    readonly_fields = ("provider", "rule", "start", "end", "status", "held_until")
    fields = readonly_fields
    actions = ("block_slots", "unblock_slots")

    @admin.display(description="Start", ordering="start")
    def start_local(self, slot: Slot) -> str:
        return _local(slot.start)

    @admin.display(description="End", ordering="end")
    def end_local(self, slot: Slot) -> str:
        return _local(slot.end)

    @admin.action(description="Block selected free slots", permissions=["change"])
    def block_slots(self, request: HttpRequest, queryset: QuerySet[Slot]) -> None:
        count = queryset.filter(status=Slot.Status.FREE).update(status=Slot.Status.BLOCKED)
        self.message_user(request, f"Blocked {count} slot(s).")

    @admin.action(description="Unblock selected blocked slots", permissions=["change"])
    def unblock_slots(self, request: HttpRequest, queryset: QuerySet[Slot]) -> None:
        count = queryset.filter(status=Slot.Status.BLOCKED).update(status=Slot.Status.FREE)
        self.message_user(request, f"Unblocked {count} slot(s).")


# --- appointments ---------------------------------------------------------------------------


class StaffBookingForm(forms.ModelForm):  # type: ignore[type-arg]
    """Staff booking: only slots that are open right now are offered."""

    class Meta:
        model = Appointment
        fields = ("slot", "appointment_type", "patient", "reason")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["slot"].queryset = Slot.objects.filter(  # type: ignore[attr-defined]
            pk__in=[slot.pk for slot in selectors.open_slots(limit=500)]
        ).select_related("provider")


class SlotChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return f"{_local(obj.start)} with {obj.provider}"


class RescheduleForm(forms.Form):
    new_slot = SlotChoiceField(queryset=Slot.objects.none(), label="Move to")

    def __init__(self, *args: Any, appointment: Appointment, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = selectors.open_slots(appointment_type=appointment.appointment_type, limit=200)
        field = self.fields["new_slot"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Slot.objects.filter(pk__in=[slot.pk for slot in options]).select_related(
            "provider"
        )


@admin.register(Appointment)
class AppointmentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "id",
        "start_local",
        "provider_name",
        "appointment_type",
        "status",
        "source",
        "patient_ref",
        "created_at",
    )
    list_filter = ("status", "source", "appointment_type", "slot__provider")
    list_select_related = ("slot__provider", "appointment_type")
    search_fields = ("=id", "slot__provider__name", "appointment_type__name")
    date_hierarchy = "slot__start"
    ordering = ("-slot__start",)
    raw_id_fields = ("patient",)
    actions = ("cancel_appointments", "mark_noshow", "mark_fulfilled")
    readonly_fields = (
        "slot",
        "appointment_type",
        "patient",
        "status",
        "source",
        "booked_by_user",
        "rescheduled_to",
        "created_at",
        "updated_at",
        "cancelled_at",
        "reschedule_link",
    )

    @admin.display(description="Time", ordering="slot__start")
    def start_local(self, appointment: Appointment) -> str:
        return _local(appointment.slot.start)

    @admin.display(description="Provider", ordering="slot__provider__name")
    def provider_name(self, appointment: Appointment) -> str:
        return appointment.slot.provider.name

    @admin.display(description="Patient")
    def patient_ref(self, appointment: Appointment) -> str:
        # An id only: names are PHI and are read (and audited) on the patient's own page.
        return f"#{appointment.patient_id}" if appointment.patient_id else "-"

    @admin.display(description="Reschedule")
    def reschedule_link(self, appointment: Appointment) -> str:
        if appointment.pk is None or appointment.status not in Appointment.ACTIVE_STATUSES:
            return "-"
        url = reverse("admin:clinic_appointment_reschedule", args=[appointment.pk])
        return format_html('<a class="button" href="{}">Move to another slot</a>', url)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):  # type: ignore[no-untyped-def]
        if obj is None:
            kwargs["form"] = StaffBookingForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return StaffBookingForm.Meta.fields
        return (*self.readonly_fields, "reason")

    def save_model(self, request: HttpRequest, obj: Appointment, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        booked = services.appointment_book(
            slot_id=form.cleaned_data["slot"].pk,
            appointment_type=form.cleaned_data["appointment_type"],
            patient_id=form.cleaned_data["patient"].pk if form.cleaned_data["patient"] else None,
            reason=form.cleaned_data.get("reason", ""),
            source=Appointment.Source.STAFF,
            booked_by_user=request.user if request.user.is_authenticated else None,
        )
        obj.pk = booked.pk
        obj.refresh_from_db()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # appointments are cancelled, never deleted: history matters

    def _run(self, request: HttpRequest, queryset: QuerySet[Appointment], action: Any) -> None:
        done, refused = 0, 0
        for appointment in queryset:
            try:
                action(appointment)
                done += 1
            except services.SchedulingError:
                refused += 1
        self.message_user(request, f"Updated {done} appointment(s).")
        if refused:
            self.message_user(
                request,
                f"{refused} appointment(s) were not in a state that allows it.",
                level=messages.WARNING,
            )

    @admin.action(description="Cancel selected appointments", permissions=["change"])
    def cancel_appointments(self, request: HttpRequest, queryset: QuerySet[Appointment]) -> None:
        user = request.user if request.user.is_authenticated else None
        self._run(
            request,
            queryset,
            lambda a: services.appointment_cancel(appointment=a, by_user=user),
        )

    @admin.action(description="Mark selected as no-show", permissions=["change"])
    def mark_noshow(self, request: HttpRequest, queryset: QuerySet[Appointment]) -> None:
        self._run(
            request,
            queryset,
            lambda a: services.appointment_set_outcome(
                appointment=a, status=Appointment.Status.NOSHOW
            ),
        )

    @admin.action(description="Mark selected as fulfilled", permissions=["change"])
    def mark_fulfilled(self, request: HttpRequest, queryset: QuerySet[Appointment]) -> None:
        self._run(
            request,
            queryset,
            lambda a: services.appointment_set_outcome(
                appointment=a, status=Appointment.Status.FULFILLED
            ),
        )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<int:appointment_id>/reschedule/",
                self.admin_site.admin_view(self.reschedule_view),
                name="clinic_appointment_reschedule",
            )
        ]
        return own + super().get_urls()

    def reschedule_view(self, request: HttpRequest, appointment_id: int) -> HttpResponse:
        appointment = get_object_or_404(
            Appointment.objects.select_related("slot__provider", "appointment_type"),
            pk=appointment_id,
        )
        if not self.has_change_permission(request, appointment):
            raise PermissionDenied
        form = RescheduleForm(request.POST or None, appointment=appointment)
        if request.method == "POST" and form.is_valid():
            user = request.user if request.user.is_authenticated else None
            try:
                replacement = services.appointment_reschedule(
                    appointment=appointment,
                    new_slot_id=form.cleaned_data["new_slot"].pk,
                    by_user=user,
                )
            except services.SchedulingError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
            else:
                self.message_user(request, f"Moved to {_local(replacement.slot.start)}.")
                return HttpResponseRedirect(
                    reverse("admin:clinic_appointment_change", args=[replacement.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reschedule appointment #{appointment.pk}",
            "appointment": appointment,
            "current": _local(appointment.slot.start),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/clinic/appointment/reschedule.html", context)


@admin.register(ScheduleConflict)
class ScheduleConflictAdmin(NoAddOrDeleteMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("appointment_id", "cause", "appointment_time", "detected_at", "resolved_at")
    list_filter = ("cause", ("resolved_at", admin.EmptyFieldListFilter))
    list_select_related = ("appointment__slot__provider",)
    readonly_fields = (
        "appointment",
        "cause",
        "time_off",
        "detected_at",
        "resolved_at",
        "resolved_by",
    )
    actions = ("resolve",)

    @admin.display(description="Appointment time")
    def appointment_time(self, conflict: ScheduleConflict) -> str:
        slot = conflict.appointment.slot
        return f"{_local(slot.start)} with {slot.provider}"

    @admin.action(description="Mark selected as resolved", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[ScheduleConflict]) -> None:
        user = request.user if request.user.is_authenticated else None
        for conflict in queryset:
            services.conflict_resolve(conflict=conflict, by_user=user)
        self.message_user(request, "Resolved.")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Background work waiting for the broker (clinic.outbox), for operators: read only.

    Rows hold task names and ids, never patient data. The relay sends what is pending; an
    old pending row with many attempts means the broker or the task keeps failing.
    """

    list_display = ("id", "task", "dedupe_key", "created", "dispatched", "attempts", "last_error")
    list_filter = ("task", ("dispatched_at", admin.EmptyFieldListFilter))
    search_fields = ("dedupe_key",)
    fields = (
        "task",
        "args",
        "dedupe_key",
        "created_at",
        "available_at",
        "dispatched_at",
        "attempts",
        "last_error",
    )

    @admin.display(description="Created", ordering="created_at")
    def created(self, message: OutboxMessage) -> str:
        return _local(message.created_at)

    @admin.display(description="Dispatched", ordering="dispatched_at")
    def dispatched(self, message: OutboxMessage) -> str:
        return _local(message.dispatched_at)
