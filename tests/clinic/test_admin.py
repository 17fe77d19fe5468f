"""The calendar admin, through its real URLs, for each staff group."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clinic.models import Appointment, AvailabilityRule, Provider, ScheduleConflict, Slot
from clinic.selectors import open_slots
from clinic.services import appointment_book
from tests.clinic.conftest import SmallClinic

pytestmark = pytest.mark.django_db


def staff_client(group_name: str) -> Client:
    user = User.objects.create_user(
        username=group_name.lower().replace(" ", "-"), password="pw-for-tests", is_staff=True
    )
    user.groups.add(Group.objects.get(name=group_name))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def front_desk() -> Client:
    return staff_client("Front desk")


@pytest.fixture
def administrator() -> Client:
    return staff_client("Administrators")


def booked(clinic: SmallClinic) -> Appointment:
    slot = open_slots(appointment_type=clinic.visit, limit=1)[0]
    return appointment_book(slot_id=slot.pk, appointment_type=clinic.visit, reason="cough")


PAGES = [
    "admin:clinic_provider_changelist",
    "admin:clinic_appointmenttype_changelist",
    "admin:clinic_timeoff_changelist",
    "admin:clinic_slot_changelist",
    "admin:clinic_appointment_changelist",
    "admin:clinic_scheduleconflict_changelist",
]


@pytest.mark.parametrize("group", ["Front desk", "Administrators"])
@pytest.mark.parametrize("page", PAGES)
def test_every_list_page_renders_for_both_groups(small_clinic, group: str, page: str) -> None:
    booked(small_clinic)
    response = staff_client(group).get(reverse(page))
    assert response.status_code == 200


@pytest.mark.parametrize("group", ["Front desk", "Administrators"])
def test_detail_and_today_pages_render_for_both_groups(small_clinic, group: str) -> None:
    appointment = booked(small_clinic)
    client = staff_client(group)
    for url in (
        reverse("admin:clinic_provider_change", args=[small_clinic.provider.pk]),
        reverse("admin:clinic_slot_change", args=[appointment.slot_id]),
        reverse("admin:clinic_appointment_change", args=[appointment.pk]),
        reverse("admin:clinic_appointmenttype_change", args=[small_clinic.visit.pk]),
    ):
        assert client.get(url).status_code == 200, url
    day = timezone.localtime(appointment.slot.start).date()
    today = client.get(
        reverse("admin:clinic_provider_today", args=[small_clinic.provider.pk]),
        {"day": day.isoformat()},
    )
    assert today.status_code == 200
    assert f"#{appointment.pk}" in today.content.decode()


def test_front_desk_cannot_edit_providers_rules_time_off_or_types(small_clinic, front_desk) -> None:
    provider = small_clinic.provider
    assert front_desk.get(reverse("admin:clinic_provider_add")).status_code == 403
    assert front_desk.get(reverse("admin:clinic_timeoff_add")).status_code == 403
    assert front_desk.get(reverse("admin:clinic_appointmenttype_add")).status_code == 403
    response = front_desk.post(
        reverse("admin:clinic_provider_change", args=[provider.pk]),
        {"name": "Renamed", "active": "on"},
    )
    assert response.status_code == 403
    assert Provider.objects.get(pk=provider.pk).name == "Dr. Amara Patel"
    page = front_desk.get(reverse("admin:clinic_provider_change", args=[provider.pk]))
    assert b'name="_save"' not in page.content  # view-only


def test_front_desk_sees_slots_read_only(small_clinic, front_desk) -> None:
    slot = Slot.objects.first()
    assert slot is not None
    response = front_desk.post(
        reverse("admin:clinic_slot_changelist"),
        {"action": "block_slots", "_selected_action": [slot.pk]},
    )
    assert Slot.objects.get(pk=slot.pk).status == Slot.Status.FREE
    assert response.status_code in (200, 302)
    assert (
        front_desk.post(reverse("admin:clinic_slot_change", args=[slot.pk]), {}).status_code == 403
    )


def test_front_desk_cancels_and_marks_appointments(small_clinic, front_desk) -> None:
    first, second = booked(small_clinic), booked(small_clinic)
    url = reverse("admin:clinic_appointment_changelist")
    front_desk.post(url, {"action": "cancel_appointments", "_selected_action": [first.pk]})
    front_desk.post(url, {"action": "mark_noshow", "_selected_action": [second.pk]})
    assert Appointment.objects.get(pk=first.pk).status == Appointment.Status.CANCELLED
    assert Appointment.objects.get(pk=second.pk).status == Appointment.Status.NOSHOW
    assert Slot.objects.get(pk=first.slot_id).status == Slot.Status.FREE


def test_front_desk_reschedules_to_another_free_slot(small_clinic, front_desk) -> None:
    appointment = booked(small_clinic)
    target = open_slots(appointment_type=small_clinic.visit, limit=3)[-1]
    url = reverse("admin:clinic_appointment_reschedule", args=[appointment.pk])
    assert front_desk.get(url).status_code == 200
    response = front_desk.post(url, {"new_slot": target.pk})
    assert response.status_code == 302
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.CANCELLED
    assert appointment.rescheduled_to is not None
    assert appointment.rescheduled_to.slot_id == target.pk


def test_front_desk_books_a_slot_for_a_walk_in_caller(small_clinic, front_desk) -> None:
    slot = open_slots(appointment_type=small_clinic.visit, limit=1)[0]
    response = front_desk.post(
        reverse("admin:clinic_appointment_add"),
        {"slot": slot.pk, "appointment_type": small_clinic.visit.pk, "reason": "rash"},
    )
    assert response.status_code == 302
    appointment = Appointment.objects.get(slot=slot)
    assert appointment.source == Appointment.Source.STAFF
    assert appointment.booked_by_user is not None


def test_nobody_deletes_appointments_or_slots(small_clinic, administrator) -> None:
    appointment = booked(small_clinic)
    url = reverse("admin:clinic_appointment_delete", args=[appointment.pk])
    assert administrator.post(url, {"post": "yes"}).status_code == 403
    slot_url = reverse("admin:clinic_slot_delete", args=[appointment.slot_id])
    assert administrator.post(slot_url, {"post": "yes"}).status_code == 403


def inline_management(prefix: str, total: int = 0, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def test_administrator_adds_a_provider_with_hours_and_gets_slots(administrator) -> None:
    data = {
        "name": "Dr. New Hire",
        "specialty": "Dermatology",
        "active": "on",
        "accepts_new_patients": "on",
        **inline_management("rules", total=1),
        "rules-0-weekdays": ["0", "2", "4"],
        "rules-0-start_time": "09:00",
        "rules-0-end_time": "11:00",
        "rules-0-slot_minutes": "30",
        "rules-0-effective_from": timezone.localdate().isoformat(),
        **inline_management("time_off"),
    }
    response = administrator.post(reverse("admin:clinic_provider_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get(name="Dr. New Hire")
    rule = AvailabilityRule.objects.get(provider=provider)
    assert rule.weekdays == [0, 2, 4]
    starts = Slot.objects.filter(provider=provider).values_list("start", flat=True)
    assert starts and {timezone.localtime(s).weekday() for s in starts} <= {0, 2, 4}


def test_administrator_time_off_over_a_booking_opens_a_conflict(
    small_clinic, administrator
) -> None:
    appointment = booked(small_clinic)
    start = timezone.localtime(appointment.slot.start)
    response = administrator.post(
        reverse("admin:clinic_timeoff_add"),
        {
            "provider": small_clinic.provider.pk,
            "start_0": start.date().isoformat(),
            "start_1": (start - timedelta(hours=1)).time().isoformat("minutes"),
            "end_0": start.date().isoformat(),
            "end_1": (start + timedelta(hours=1)).time().isoformat("minutes"),
            "reason": "Conference",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "fall in this time off" in response.content.decode()
    assert ScheduleConflict.objects.filter(appointment=appointment).exists()
    assert Appointment.objects.get(pk=appointment.pk).status == Appointment.Status.BOOKED


def test_administrator_rule_time_validation_is_a_clear_form_error(
    small_clinic, administrator
) -> None:
    rule = small_clinic.rule
    data = {
        "name": small_clinic.provider.name,
        "specialty": "",
        "active": "on",
        **inline_management("rules", total=1, initial=1),
        "rules-0-id": str(rule.pk),
        "rules-0-provider": str(small_clinic.provider.pk),
        "rules-0-weekdays": ["0"],
        "rules-0-start_time": "12:00",
        "rules-0-end_time": "09:00",
        "rules-0-slot_minutes": "30",
        "rules-0-effective_from": "2020-01-01",
        **inline_management("time_off"),
    }
    response = administrator.post(
        reverse("admin:clinic_provider_change", args=[small_clinic.provider.pk]), data
    )
    assert response.status_code == 200
    assert "The end time must be after the start time." in response.content.decode()
    assert AvailabilityRule.objects.get(pk=rule.pk).start_time == time(9)


@pytest.mark.parametrize(
    "page", ["admin:clinic_appointment_changelist", "admin:clinic_slot_changelist"]
)
def test_list_pages_use_a_constant_number_of_queries(small_clinic, front_desk, page) -> None:
    booked(small_clinic)
    url = reverse(page)
    with CaptureQueriesContext(connection) as few:
        front_desk.get(url)
    for _ in range(30):
        booked(small_clinic)
    with CaptureQueriesContext(connection) as many:
        front_desk.get(url)
    assert len(many) == len(few)
