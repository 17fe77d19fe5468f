"""Load the demo clinic so that a newcomer sees a working system after `make run`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from clinic.demo import DEMO_USERS, load_demo_clinic


class Command(BaseCommand):
    help = "Create the demo clinic (providers, weekly hours, slots) and demo staff users."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.CONFIG.production:
            raise CommandError("seed_demo refuses to run when APP_ENV=production")
        summary = load_demo_clinic()
        for line in summary:
            self.stdout.write(line)
        self.stdout.write("")
        self.stdout.write("Demo sign-ins (development only):")
        for user in DEMO_USERS:
            self.stdout.write(f"  {user.role:<14} {user.username} / {user.password}")
