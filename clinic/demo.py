"""The demo clinic loaded by `make run`: staff users, providers, visit types, weekly hours.

Idempotent: running it twice leaves one of everything, and slots are regenerated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from clinic.models import AppointmentType, AvailabilityRule, Provider
from clinic.services import slots_generate


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str
    group: str
    superuser: bool


DEMO_USERS = (
    DemoUser("admin", "admin-demo-2026", "Administrator", "Administrators", superuser=True),
    DemoUser("frontdesk", "frontdesk-demo-2026", "Front desk", "Front desk", superuser=False),
)

# name, specialty, accepts new patients, [(weekdays, start, end, slot minutes)]
PROVIDERS = (
    (
        "Dr. Amara Patel",
        "Family medicine",
        True,
        [((0, 1, 2, 3), time(8), time(12), 30), ((0, 1, 2, 3), time(13), time(17), 30)],
    ),
    ("Dr. Luis Moreno", "Internal medicine", True, [((1, 2, 3, 4), time(9), time(16), 30)]),
    ("Dr. Grace Chen", "Pediatrics", False, [((0, 2, 4), time(8), time(14), 30)]),
    ("Jordan Reyes, NP", "Nurse practitioner", True, [((0, 1, 2, 3, 4), time(12), time(19), 30)]),
)

# name, minutes, kind, keywords, instructions, providers (None = all)
TYPES = (
    (
        "New patient visit",
        30,
        AppointmentType.Kind.NEW_PATIENT,
        "new patient,first visit,establish",
        "Please arrive 15 minutes early with your insurance card and a photo ID.",
        None,
    ),
    (
        "Follow-up visit",
        30,
        AppointmentType.Kind.FOLLOW_UP,
        "follow up,follow-up,results,check on",
        "Please bring a list of your current medications.",
        None,
    ),
    (
        "Annual physical",
        30,
        AppointmentType.Kind.ANY,
        "physical,check-up,checkup,annual,wellness",
        "Please arrive 15 minutes early; you may be asked to fast if blood work is planned.",
        None,
    ),
    (
        "Sick visit",
        30,
        AppointmentType.Kind.ANY,
        "sick,fever,cough,cold,flu,rash,pain,sore throat,ear,infection,headache",
        "If your symptoms get worse before your visit, call us or go to urgent care.",
        None,
    ),
)


def load_demo_users() -> None:
    user_model = get_user_model()
    for demo in DEMO_USERS:
        user, _ = user_model.objects.get_or_create(username=demo.username)
        user.is_staff = True
        user.is_superuser = demo.superuser
        user.set_password(demo.password)
        user.save()
        user.groups.add(Group.objects.get(name=demo.group))


@transaction.atomic
def load_demo_calendar() -> None:
    providers = []
    for name, specialty, new_patients, rules in PROVIDERS:
        provider, _ = Provider.objects.update_or_create(
            name=name, defaults={"specialty": specialty, "accepts_new_patients": new_patients}
        )
        providers.append(provider)
        if not provider.rules.exists():
            for weekdays, start, end, minutes in rules:
                AvailabilityRule.objects.create(
                    provider=provider,
                    weekdays=list(weekdays),
                    start_time=start,
                    end_time=end,
                    slot_minutes=minutes,
                    effective_from=timezone.localdate(),
                )
    for name, minutes, kind, keywords, instructions, _ in TYPES:
        kind_type, _ = AppointmentType.objects.update_or_create(
            name=name,
            defaults={
                "duration_minutes": minutes,
                "kind": kind,
                "keywords": keywords,
                "instructions": instructions,
            },
        )
        kind_type.providers.set(providers)


def load_demo_clinic() -> list[str]:
    """Create (or refresh) the demo data and return a summary for the console."""
    load_demo_users()
    load_demo_calendar()
    report = slots_generate()
    return [
        f"Demo clinic: {Provider.objects.count()} providers, "
        f"{AppointmentType.objects.count()} appointment types",
        f"Slots: {report}",
    ]
