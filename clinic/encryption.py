"""Field-level encryption at rest with cryptography's MultiFernet.

Several keys are configured at once (``FIELD_ENCRYPTION_KEYS``): the first encrypts, every key
decrypts, so a key is rotated by prepending a new one, re-encrypting the rows
(``manage.py rotate_encryption_keys``) and then removing the old key. Fernet authenticates as
well as encrypts, so a tampered value fails loudly instead of decrypting to garbage.

It lives in ``clinic`` (the bottom layer) because both the calendar (appointment reasons) and
intake (patients, transcripts) store PHI.

Every encrypted field is a subclass of :class:`EncryptedTextField`: the column is always text
holding a Fernet token, whatever the Python type, so one rotation command can find and
re-encrypt them all (:func:`encrypted_fields_by_model`).
"""

from __future__ import annotations

import datetime
import functools
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django import forms
from django.apps import apps
from django.conf import settings
from django.core import validators
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import setting_changed
from django.db import models
from django.db.models.expressions import Combinable
from django.dispatch import receiver


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key (no value in message)."""


@functools.cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.FIELD_ENCRYPTION_KEYS])


@functools.cache
def _primary() -> Fernet:
    return Fernet(settings.FIELD_ENCRYPTION_KEYS[0].encode())


@receiver(setting_changed)
def _reset_keys(*, setting: str, **_: Any) -> None:
    if setting == "FIELD_ENCRYPTION_KEYS":
        _fernet.cache_clear()
        _primary.cache_clear()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored value cannot be decrypted with the configured keys") from None


def rotate(token: str) -> str:
    """Re-encrypt ``token`` under the first (current) key."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored value cannot be decrypted with the configured keys") from None


def is_current(token: str) -> bool:
    """Whether ``token`` is encrypted under the first key, i.e. needs no rotation.

    Used to check, before an old key is removed, that no row still depends on it.
    """
    try:
        _primary().decrypt(token.encode())
    except InvalidToken:
        return False
    return True


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A text column stored as a Fernet token; Python code sees the plaintext.

    Encrypted values cannot be searched, ordered or compared in SQL: lookups other than
    ``isnull`` are refused (see :meth:`get_lookup`). Use a blind index for equality lookups.
    """

    description = "Text encrypted at rest"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> str | None:
        prepared = super().get_prep_value(value)
        if prepared is None or prepared == "":
            return None if prepared is None else ""
        return encrypt(str(prepared))

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)


class EncryptedCharField(EncryptedTextField):
    """Short encrypted text (a name, a phone number): a one-line input, length checked in Python.

    ``max_length`` limits the plaintext; the column stays unbounded text because the token is
    longer than the value and its length is an implementation detail of Fernet.
    """

    description = "Short text encrypted at rest"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.max_length is not None:
            self.validators.append(validators.MaxLengthValidator(self.max_length))

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"widget": forms.TextInput, **kwargs})


class EncryptedDateField(EncryptedTextField):
    """A date (of birth) stored as the encrypted ISO text ``YYYY-MM-DD``; Python sees a date."""

    description = "Date encrypted at rest"
    # For django-stubs' mypy plugin: the attribute is a date, not the text of the column.
    _pyi_private_set_type: datetime.date | str | Combinable  # type: ignore[assignment]
    _pyi_private_get_type: datetime.date  # type: ignore[assignment]

    def to_python(self, value: Any) -> datetime.date | None:
        if value is None or value == "":
            return None
        if isinstance(value, datetime.datetime):
            return value.date()
        if isinstance(value, datetime.date):
            return value
        try:
            return datetime.date.fromisoformat(str(value))
        except ValueError:
            # The message names the format, never the rejected value.
            raise ValidationError("Enter a valid date (YYYY-MM-DD).", code="invalid") from None

    def from_db_value(
        self, value: str | None, expression: Any, connection: Any
    ) -> datetime.date | None:
        if value is None or value == "":
            return None
        return datetime.date.fromisoformat(decrypt(value))

    def get_prep_value(self, value: Any) -> str | None:
        day = self.to_python(value)
        return None if day is None else encrypt(day.isoformat())

    def value_to_string(self, obj: models.Model) -> str:
        day = self.value_from_object(obj)
        return "" if day is None else day.isoformat()

    def formfield(self, **kwargs: Any) -> Any:
        return models.Field.formfield(self, **{"form_class": forms.DateField, **kwargs})


class EncryptedJSONField(EncryptedTextField):
    """A JSON document stored as one encrypted token; Python sees dicts, lists, numbers, text.

    For state that may hold PHI (a call's conversation state). Dates and datetimes are written
    as ISO text by Django's JSON encoder and read back as text.
    """

    description = "JSON encrypted at rest"
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def to_python(self, value: Any) -> Any:
        return value

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return None
        return json.loads(decrypt(value))

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return encrypt(json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":")))

    def value_to_string(self, obj: models.Model) -> str:
        return json.dumps(self.value_from_object(obj), cls=DjangoJSONEncoder)

    def formfield(self, **kwargs: Any) -> Any:
        return models.Field.formfield(
            self, **{"form_class": forms.JSONField, "encoder": DjangoJSONEncoder, **kwargs}
        )


def encrypted_fields_by_model() -> list[tuple[type[models.Model], list[EncryptedTextField]]]:
    """Every concrete model of every installed app with its encrypted columns.

    Proxy and unmanaged models are skipped: their rows belong to a concrete model listed here
    or to another system. Only a model's own columns are listed (a multi-table child does not
    repeat its parent's), so each column is visited once.
    """
    found: list[tuple[type[models.Model], list[EncryptedTextField]]] = []
    for model in apps.get_models():
        meta = model._meta
        if meta.proxy or not meta.managed:
            continue
        fields = [
            field for field in meta.local_concrete_fields if isinstance(field, EncryptedTextField)
        ]
        if fields:
            found.append((model, fields))
    return found
