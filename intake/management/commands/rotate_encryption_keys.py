"""Re-encrypt every encrypted column of every model under the current (first) key.

Key rotation, step by step (see the README):

1. Prepend a new key to ``FIELD_ENCRYPTION_KEYS`` (``new,old``) and restart: new writes use
   the new key, old values still decrypt.
2. ``manage.py rotate_encryption_keys``: every value not yet under the new key is re-encrypted,
   in batches, one transaction per batch. Safe to re-run and to interrupt.
3. ``manage.py rotate_encryption_keys --check``: exits non-zero while any value still needs
   the old key.
4. Remove the old key from ``FIELD_ENCRYPTION_KEYS`` and restart.

Values are read and written as raw tokens (no model instances, no ``save()``): timestamps
such as ``updated_at`` do not move, and no plaintext leaves the cryptography library. Each
write is conditional on the token being unchanged since it was read, so a row written by the
running application in the meantime (already under the new key) is never overwritten with an
older value. Output is counts and primary keys, never values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction

from clinic.encryption import (
    DecryptionError,
    EncryptedTextField,
    encrypted_fields_by_model,
    is_current,
    rotate,
)


@dataclass
class Tally:
    rows: int = 0
    values: int = 0
    rotated: int = 0
    current: int = 0
    changed_meanwhile: int = 0
    undecryptable: list[Any] = field(default_factory=list)


def _column(model_field: models.Field[Any, Any] | None) -> str:
    if model_field is None or not model_field.column:
        raise CommandError("a model without a primary key column cannot be rotated")
    return model_field.column


class Command(BaseCommand):
    help = "Re-encrypt every encrypted column under the first key of FIELD_ENCRYPTION_KEYS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Rows per transaction (default 500).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing; fail if any value is not yet under the first key.",
        )

    def handle(self, *args: Any, batch_size: int, check: bool, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        stale = 0
        failed = 0
        for model, fields in encrypted_fields_by_model():
            tally = self._process(model, fields, batch_size=batch_size, check=check)
            label = model._meta.label
            columns = ", ".join(f.name for f in fields)
            if check:
                stale += tally.values - tally.current - len(tally.undecryptable)
                self.stdout.write(
                    f"{label} ({columns}): {tally.rows} rows, {tally.values} values, "
                    f"{tally.current} under the current key"
                )
            else:
                self.stdout.write(
                    f"{label} ({columns}): {tally.rows} rows, {tally.values} values, "
                    f"{tally.rotated} re-encrypted, {tally.current} already current, "
                    f"{tally.changed_meanwhile} changed meanwhile"
                )
            if tally.undecryptable:
                failed += len(tally.undecryptable)
                ids = ", ".join(str(pk) for pk in tally.undecryptable[:20])
                self.stderr.write(
                    f"{label}: {len(tally.undecryptable)} values decrypt with no configured "
                    f"key (primary keys: {ids})"
                )
        if failed:
            raise CommandError(f"{failed} values could not be decrypted with the configured keys")
        if check and stale:
            raise CommandError(f"{stale} values still need rotating")
        self.stdout.write(self.style.SUCCESS("All encrypted values are under the current key."))

    def _process(
        self,
        model: type[models.Model],
        fields: list[EncryptedTextField],
        *,
        batch_size: int,
        check: bool,
    ) -> Tally:
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        pk = quote(_column(model._meta.pk))
        columns = [quote(_column(f)) for f in fields]
        select = f"SELECT {pk}, {', '.join(columns)} FROM {table}"  # noqa: S608 - quoted names
        tally = Tally()
        last: Any = None
        while True:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    if last is None:
                        cursor.execute(f"{select} ORDER BY {pk} LIMIT %s", [batch_size])
                    else:
                        cursor.execute(
                            f"{select} WHERE {pk} > %s ORDER BY {pk} LIMIT %s", [last, batch_size]
                        )
                    rows = cursor.fetchall()
                    for row in rows:
                        self._row(cursor, table, pk, columns, row, tally, check=check)
            if not rows:
                return tally
            tally.rows += len(rows)
            last = rows[-1][0]

    @staticmethod
    def _row(
        cursor: Any,
        table: str,
        pk: str,
        columns: list[str],
        row: tuple[Any, ...],
        tally: Tally,
        *,
        check: bool,
    ) -> None:
        key = row[0]
        for column, token in zip(columns, row[1:], strict=True):
            if not token:
                continue  # NULL or the unencrypted empty string
            tally.values += 1
            if is_current(token):
                tally.current += 1
                continue
            try:
                fresh = rotate(token)
            except DecryptionError:
                tally.undecryptable.append(key)
                continue
            if check:
                continue
            cursor.execute(
                f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s",  # noqa: S608
                [fresh, key, token],
            )
            if cursor.rowcount == 1:
                tally.rotated += 1
            else:
                tally.changed_meanwhile += 1
