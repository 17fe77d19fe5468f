"""Staff pages: PHI only on detail pages, every such view recorded, permissions per group."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from intake import liveness, selectors, services
from intake.admin import CallAdmin
from intake.models import Call, FollowUp, Patient, PhiAccess
from tests.factories import CallFactory, CoverageFactory, FollowUpFactory, PatientFactory

pytestmark = pytest.mark.django_db

DOB = datetime.date(1962, 8, 19)


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def patient() -> Patient:
    patient = services.patient_create(
        first_name="Philippa",
        last_name="Wójcik-Haddad",
        date_of_birth=DOB,
        phone="(312) 555-0184",
        email="philippa.wh@example.com",
        address="901 Lakeshore Drive, Chicago, IL",
    )
    CoverageFactory.create(patient=patient, member_id="ZYX500312877", carrier="Cigna")
    return patient


@pytest.fixture
def call(patient: Patient) -> Call:
    call = services.call_start(
        call_sid="CA" + "9" * 32,
        caller_number="+13125550184",
        started_at=timezone.now() - datetime.timedelta(minutes=4),
    )
    # Written out of order, as a replay after a restart could: shown in spoken order.
    services.turn_record(
        call=call,
        speaker="caller",
        text="I have a rash on both arms.",
        sequence=2,
        stt_final_ms=245,
        understanding_ms=31,
    )
    services.turn_record(
        call=call,
        speaker="agent",
        text="Thanks for calling Riverside.",
        sequence=1,
        tts_first_byte_ms=118,
        response_latency_ms=702,
    )
    services.turn_record(
        call=call,
        speaker="agent",
        text="Can you spell your last name?",
        sequence=3,
        interrupted=True,
    )
    services.call_update(call=call, phase="identity", patient=patient)
    return services.call_finish(
        call=call,
        outcome=Call.Outcome.CALLBACK,
        ended_at=call.started_at + datetime.timedelta(minutes=4),
    )


PHI_STRINGS = (
    "Philippa",
    "Wójcik",
    "Haddad",
    "1962-08-19",
    "08/19/1962",
    "Aug. 19, 1962",
    "3125550184",
    "+13125550184",
    "555-0184",
    "philippa.wh@example.com",
    "Lakeshore",
    "ZYX500312877",
    "rash on both arms",
)


def assert_no_phi(html: str) -> None:
    assert [text for text in PHI_STRINGS if text in html] == []


# --- List pages ------------------------------------------------------------------------------


def test_call_list_shows_metadata_and_a_masked_number_only(front_desk: User, call: Call) -> None:
    response = client_for(front_desk).get(reverse("admin:intake_call_changelist"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "•••• ••• ••84" in html
    assert "Callback requested" in html and "identity" in html and "4:00" in html
    assert_no_phi(html)
    assert not PhiAccess.objects.exists()


def test_patient_list_shows_no_phi(front_desk: User, patient: Patient, call: Call) -> None:
    response = client_for(front_desk).get(reverse("admin:intake_patient_changelist"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "•••• ••• ••84" in html
    assert response.context["cl"].result_list[0].call_count == 1
    assert_no_phi(html)
    assert not PhiAccess.objects.exists()


# --- Detail pages record PHI access ----------------------------------------------------------


def test_call_detail_shows_the_transcript_in_order_and_records_the_access(
    front_desk: User, call: Call
) -> None:
    response = client_for(front_desk).get(reverse("admin:intake_call_change", args=[call.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    positions = [
        html.index(text)
        for text in (
            "Thanks for calling Riverside.",
            "I have a rash on both arms.",
            "Can you spell your last name?",
        )
    ]
    assert positions == sorted(positions)
    for timing in ("245", "31", "118", "702"):
        assert f">{timing}<" in html.replace(" ", "").replace("\n", "")
    assert "+13125550184" in html
    access = PhiAccess.objects.get()
    assert access.user == front_desk
    assert access.record == call
    assert access.purpose == PhiAccess.Purpose.VIEW_CALL
    assert access.fields == ["caller_number", "turns.text"]


def test_patient_detail_records_the_access_with_coverage_fields(
    front_desk: User, patient: Patient
) -> None:
    response = client_for(front_desk).get(reverse("admin:intake_patient_change", args=[patient.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Wójcik-Haddad" in html and "ZYX500312877" in html
    assert "recorded in the PHI access log" in html
    access = PhiAccess.objects.get()
    assert (access.user, access.record, access.purpose) == (
        front_desk,
        patient,
        PhiAccess.Purpose.VIEW_PATIENT,
    )
    assert "date_of_birth" in access.fields and "coverages.member_id" in access.fields
    # It names fields; it holds no values.
    assert_no_phi(repr(access.fields))


def test_followup_detail_records_the_access(front_desk: User, call: Call) -> None:
    followup = services.followup_open(reason="callback_requested", call=call, summary="rash")

    client_for(front_desk).get(reverse("admin:intake_followup_change", args=[followup.pk]))

    access = PhiAccess.objects.get()
    assert access.record == followup and access.purpose == PhiAccess.Purpose.VIEW_FOLLOWUP


def test_a_refused_or_missing_page_records_nothing(
    staff_without_group: User, front_desk: User, call: Call
) -> None:
    refused = client_for(staff_without_group).get(
        reverse("admin:intake_call_change", args=[call.pk])
    )
    missing = client_for(front_desk).get(reverse("admin:intake_call_change", args=[call.pk + 99]))

    assert refused.status_code == 403
    assert missing.status_code == 302
    assert not PhiAccess.objects.exists()


def test_each_opening_is_recorded(front_desk: User, patient: Patient) -> None:
    client = client_for(front_desk)
    url = reverse("admin:intake_patient_change", args=[patient.pk])
    client.get(url)
    client.get(url)

    assert PhiAccess.objects.filter(user=front_desk).count() == 2


# --- Patient search through the blind index --------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "(312) 555-0184",
        "312.555.0184",
        "+1 312 555 0184",
        "08/19/1962",
        "1962-08-19",
        "August 19, 1962",
        "wojcik-haddad 08/19/1962",
        "Wójcik Haddad 1962-08-19",
    ],
)
def test_patient_search_by_phone_dob_or_name_and_dob(
    front_desk: User, patient: Patient, query: str
) -> None:
    PatientFactory.create(phone="+13125550185", date_of_birth=datetime.date(1962, 8, 20))

    response = client_for(front_desk).get(reverse("admin:intake_patient_changelist"), {"q": query})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [patient]
    assert not PhiAccess.objects.exists()


@pytest.mark.parametrize("query", ["Wójcik", "philippa.wh@example.com", "0184"])
def test_patient_search_refuses_text_it_cannot_hash(
    front_desk: User, patient: Patient, query: str
) -> None:
    response = client_for(front_desk).get(reverse("admin:intake_patient_changelist"), {"q": query})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
    assert "Search by phone number, date of birth" in response.content.decode()


def test_call_search_by_caller_number(front_desk: User, call: Call) -> None:
    CallFactory.create(caller_number="+13125550185")

    response = client_for(front_desk).get(
        reverse("admin:intake_call_changelist"), {"q": "312-555-0184"}
    )

    assert list(response.context["cl"].result_list) == [call]


# --- Liveness of calls in progress ----------------------------------------------------------

SERVER_A = "web-a:4242:1764600000"
SERVER_B = "web-b:5151:1764600100"


@pytest.fixture
def calls_by_liveness(call: Call) -> dict[str, Call]:
    """A call beating 5 s ago, one whose server went quiet 45 s ago, one never on a stream,
    and the finished ``call``: the same heartbeat writes as a live session's."""
    now = timezone.now()
    fresh, stale, no_stream = CallFactory.create_batch(3)
    assert liveness.call_heartbeat(
        call_id=fresh.pk, served_by=SERVER_A, now=now - datetime.timedelta(seconds=5)
    )
    assert liveness.call_heartbeat(
        call_id=stale.pk, served_by=SERVER_B, now=now - datetime.timedelta(seconds=45)
    )
    return {
        "live": Call.objects.get(pk=fresh.pk),
        "stale": Call.objects.get(pk=stale.pk),
        "no_stream": Call.objects.get(pk=no_stream.pk),
        "finished": call,
    }


def liveness_column(changelist: ChangeList) -> dict[int, str]:
    """Each listed call's liveness cell, as the change list renders it."""
    model_admin = changelist.model_admin
    assert isinstance(model_admin, CallAdmin)
    return {c.pk: model_admin.liveness(c) for c in changelist.result_list}


def test_call_list_marks_stale_heartbeats_and_names_the_server(
    front_desk: User, calls_by_liveness: dict[str, Call]
) -> None:
    live, stale = calls_by_liveness["live"], calls_by_liveness["stale"]

    with override_settings(CALL_STALE_SECONDS=30):
        response = client_for(front_desk).get(reverse("admin:intake_call_changelist"))

    html = response.content.decode()
    assert response.status_code == 200
    cells = liveness_column(response.context["cl"])
    assert cells[live.pk] == "live"
    assert cells[stale.pk].startswith("stale: no heartbeat for 4")  # 45 s, or 46 if slow
    assert cells[calls_by_liveness["no_stream"].pk] == "no stream yet"
    assert cells[calls_by_liveness["finished"].pk] == "—"
    # Which server, and when it last beat: to the second, in the clinic's time zone.
    assert SERVER_A in html and SERVER_B in html
    for beating in (live, stale):
        assert beating.heartbeat_at is not None
        shown = beating.heartbeat_at.astimezone(ZoneInfo(settings.TIME_ZONE))
        assert f"{shown:%Y-%m-%d %H:%M:%S}" in html
    assert "stale: no heartbeat for" in html and "no stream yet" in html
    assert_no_phi(html)


@pytest.mark.parametrize(
    ("stale_seconds", "choice", "expected"),
    [
        (30, "stale", {"stale"}),
        (30, "live", {"live"}),
        (30, "no_stream", {"no_stream"}),
        # The threshold is the sweep's setting, read when the page is asked for.
        (60, "stale", set()),
        (60, "live", {"live", "stale"}),
        (3, "stale", {"live", "stale"}),
    ],
)
def test_liveness_filter_follows_the_stale_setting(
    front_desk: User,
    calls_by_liveness: dict[str, Call],
    stale_seconds: int,
    choice: str,
    expected: set[str],
) -> None:
    url = reverse("admin:intake_call_changelist")

    with override_settings(CALL_STALE_SECONDS=stale_seconds):
        response = client_for(front_desk).get(url, {"liveness": choice})

    assert response.status_code == 200
    listed = {call.pk for call in response.context["cl"].result_list}
    assert listed == {calls_by_liveness[name].pk for name in expected}


def test_call_detail_shows_the_server_and_last_heartbeat_read_only(
    administrator: User, calls_by_liveness: dict[str, Call]
) -> None:
    stale = calls_by_liveness["stale"]
    url = reverse("admin:intake_call_change", args=[stale.pk])

    response = client_for(administrator).get(url)
    client_for(administrator).post(url, {"served_by": "forged:1:1", "heartbeat_at": ""})

    html = response.content.decode()
    assert response.status_code == 200
    assert SERVER_B in html and "stale: no heartbeat for" in html
    assert 'name="served_by"' not in html and 'name="heartbeat_at"' not in html
    stale.refresh_from_db()
    assert stale.served_by == SERVER_B and stale.heartbeat_at is not None


# --- Follow-up queue -------------------------------------------------------------------------


def test_queue_lists_overdue_first_and_filters(front_desk: User) -> None:
    now = timezone.now()
    urgent = FollowUpFactory.create(
        reason="emergency", priority=FollowUp.Priority.URGENT, due=now + datetime.timedelta(hours=1)
    )
    overdue = FollowUpFactory.create(
        priority=FollowUp.Priority.LOW, due=now - datetime.timedelta(hours=1)
    )
    client = client_for(front_desk)
    url = reverse("admin:intake_followup_changelist")

    queue = client.get(url)
    emergencies = client.get(url, {"reason__exact": "emergency"})
    urgent_only = client.get(url, {"priority__exact": "1", "status__exact": "open"})

    assert list(queue.context["cl"].result_list) == [overdue, urgent]
    assert list(emergencies.context["cl"].result_list) == [urgent]
    assert list(urgent_only.context["cl"].result_list) == [urgent]
    assert_no_phi(queue.content.decode())


def test_assign_to_me_and_mark_done_actions(front_desk: User) -> None:
    first, second = FollowUpFactory.create_batch(2)
    client = client_for(front_desk)
    url = reverse("admin:intake_followup_changelist")

    client.post(url, {"action": "assign_to_me", "_selected_action": [first.pk, second.pk]})
    first.refresh_from_db()
    assert (first.assignee, first.status) == (front_desk, FollowUp.Status.IN_PROGRESS)

    client.post(url, {"action": "mark_done", "_selected_action": [first.pk]})
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == FollowUp.Status.DONE
    assert first.closed_by == front_desk and first.closed_at is not None
    assert second.status == FollowUp.Status.IN_PROGRESS


def test_front_desk_can_add_a_followup_with_a_default_due(front_desk: User) -> None:
    response = client_for(front_desk).post(
        reverse("admin:intake_followup_add"),
        {
            "reason": "callback_requested",
            "priority": "2",
            "summary": "Caller at the front desk asked for a nurse call back",
            "notes": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    followup = FollowUp.objects.get()
    assert followup.due is not None and followup.due > timezone.now()
    assert followup.status == FollowUp.Status.OPEN


# --- Permissions per group -------------------------------------------------------------------

LISTS = {
    "calls": "admin:intake_call_changelist",
    "patients": "admin:intake_patient_changelist",
    "followups": "admin:intake_followup_changelist",
    "access log": "admin:intake_phiaccess_changelist",
}


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        ("front_desk", {"calls", "patients", "followups"}),
        ("administrator", {"calls", "patients", "followups", "access log"}),
        ("staff_without_group", set()),
    ],
)
def test_what_each_group_sees(request: pytest.FixtureRequest, who: str, allowed: set[str]) -> None:
    client = client_for(request.getfixturevalue(who))

    seen = {name for name, url in LISTS.items() if client.get(reverse(url)).status_code == 200}
    refused = {name for name, url in LISTS.items() if client.get(reverse(url)).status_code == 403}

    assert seen == allowed
    assert refused == set(LISTS) - allowed


@pytest.mark.parametrize("who", ["front_desk", "administrator", "superuser"])
def test_calls_are_read_only_for_everyone(
    request: pytest.FixtureRequest, who: str, call: Call
) -> None:
    client = client_for(request.getfixturevalue(who))

    assert client.get(reverse("admin:intake_call_add")).status_code == 403
    assert client.post(reverse("admin:intake_call_delete", args=[call.pk])).status_code == 403
    client.post(
        reverse("admin:intake_call_change", args=[call.pk]),
        {"outcome": "booked", "phase": "done"},
    )
    assert Call.objects.get(pk=call.pk).outcome == Call.Outcome.CALLBACK


@pytest.mark.parametrize("who", ["administrator", "superuser"])
def test_nobody_can_edit_or_delete_the_access_log(
    request: pytest.FixtureRequest, who: str, patient: Patient, front_desk: User
) -> None:
    client_for(front_desk).get(reverse("admin:intake_patient_change", args=[patient.pk]))
    access = PhiAccess.objects.get()
    client = client_for(request.getfixturevalue(who))

    view = client.get(reverse("admin:intake_phiaccess_change", args=[access.pk]))
    edit = client.post(
        reverse("admin:intake_phiaccess_change", args=[access.pk]), {"purpose": "view_call"}
    )
    delete = client.post(
        reverse("admin:intake_phiaccess_delete", args=[access.pk]), {"post": "yes"}
    )
    bulk_delete = client.post(
        reverse("admin:intake_phiaccess_changelist"),
        {"action": "delete_selected", "_selected_action": [access.pk], "post": "yes"},
    )
    add = client.get(reverse("admin:intake_phiaccess_add"))

    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    assert edit.status_code == 403
    assert delete.status_code == 403
    assert add.status_code == 403
    assert bulk_delete.status_code in (200, 302)
    assert PhiAccess.objects.filter(pk=access.pk, purpose="view_patient").exists()
    # Opening the access log itself shows no PHI and is not a PHI access.
    assert PhiAccess.objects.count() == 1


def test_front_desk_corrects_a_patient_and_verifies_coverage(
    front_desk: User, patient: Patient
) -> None:
    coverage = patient.coverages.get()
    url = reverse("admin:intake_patient_change", args=[patient.pk])

    response = client_for(front_desk).post(
        url,
        {
            "first_name": "Philippa",
            "last_name": "Wojcik-Haddad",
            "date_of_birth": "1962-08-19",
            "preferred_language": "es",
            "phone": "312 555 0199",
            "email": "philippa.wh@example.com",
            "address": "901 Lakeshore Drive, Chicago, IL",
            "coverages-TOTAL_FORMS": "1",
            "coverages-INITIAL_FORMS": "1",
            "coverages-MIN_NUM_FORMS": "0",
            "coverages-MAX_NUM_FORMS": "1000",
            "coverages-0-id": str(coverage.pk),
            "coverages-0-patient": str(patient.pk),
            "coverages-0-carrier": "Cigna",
            "coverages-0-member_id": "ZYX500312877",
            "coverages-0-group_number": "",
            "coverages-0-subscriber_relation": "self",
            "coverages-0-verified": "on",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    patient.refresh_from_db()
    assert patient.phone == "+13125550199"
    assert patient.preferred_language == "es"
    assert list(selectors.patient_find_by_phone("(312) 555-0199")) == [patient]
    assert list(selectors.patient_find_by_name_and_dob("wojcik haddad", DOB)) == [patient]
    assert patient.coverages.get().verified is True
