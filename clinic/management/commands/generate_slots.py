"""Make future slots match the providers' rules and time off over the rolling horizon."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from clinic.services import slots_generate


class Command(BaseCommand):
    help = "Generate (and reconcile) slots from availability rules and time off."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="horizon in days")
        parser.add_argument("--provider", type=int, action="append", help="provider id(s)")

    def handle(self, *args: Any, **options: Any) -> None:
        report = slots_generate(provider_ids=options["provider"], horizon_days=options["days"])
        self.stdout.write(f"Slots: {report}")
