"""Recompute every blind index after ``BLIND_INDEX_KEY`` changed.

The hashes depend on the key, so after a change lookups by phone or date of birth find
nothing until this has run. It decrypts each row in memory, hashes the normalised values with
the new key and writes only the index columns. Output is a count.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from intake.services import blind_indexes_rebuild


class Command(BaseCommand):
    help = "Recompute the phone / date-of-birth blind indexes with the current BLIND_INDEX_KEY."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        rows = blind_indexes_rebuild(batch_size=batch_size)
        self.stdout.write(self.style.SUCCESS(f"Blind indexes recomputed for {rows} rows."))
