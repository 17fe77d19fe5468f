"""The demo clinic loaded by `make run`: staff users now, the calendar in later steps.

Idempotent: running it twice leaves one of everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str
    superuser: bool


DEMO_USERS = (
    DemoUser("admin", "admin-demo-2026", "Administrator", superuser=True),
    DemoUser("frontdesk", "frontdesk-demo-2026", "Front desk", superuser=False),
)


def load_demo_users() -> None:
    user_model = get_user_model()
    for demo in DEMO_USERS:
        user, _ = user_model.objects.get_or_create(username=demo.username)
        user.is_staff = True
        user.is_superuser = demo.superuser
        user.set_password(demo.password)
        user.save()


def load_demo_clinic() -> list[str]:
    """Create (or refresh) the demo data and return a summary for the console."""
    load_demo_users()
    return [f"Demo users: {len(DEMO_USERS)}"]
