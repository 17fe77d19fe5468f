"""Blind indexes: keyed hashes that let us find an encrypted value by equality, never by text.

Encrypted columns are randomised (the same phone number encrypts differently every time), so
they cannot be searched. Next to each searchable value we store
``HMAC-SHA256(BLIND_INDEX_KEY, purpose || normalised value)``. A lookup normalises the query the
same way and compares hashes. Properties this design relies on:

- **Keyed.** Without ``BLIND_INDEX_KEY`` a stolen database cannot be brute-forced by hashing
  every phone number or every date of birth (both are small spaces). The key is separate from
  the encryption keys so that rotating one does not force the other.
- **Normalised.** ``(617) 555-0167``, ``617.555.0167`` and ``+1 617 555 0167`` are one
  number (E.164 via ``phonenumbers``, default region US); ``García``, ``GARCIA`` and
  ``garcia`` are one last name (case-folded, accents stripped, letters only); a date of birth
  is its ISO date.
- **Domain-separated.** A purpose prefix (``phone:``, ``dob:``, ``name_dob:``) keeps the hash
  of a date from ever equalling the hash of a phone number.
- **Equality only.** No prefix or fuzzy search: a blind index of a prefix would leak far more.

Normalisers return ``None`` for a value that cannot be normalised; callers store an empty index
and a lookup of such a value finds nothing (it never raises with the value in a message).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import unicodedata

import phonenumbers
from django.conf import settings

DEFAULT_REGION = "US"
INDEX_LENGTH = 64  # hex digits of SHA-256

# Date formats accepted from staff and callers, tried in order. Two-digit years are refused:
# for a date of birth "3/12/24" could be 1924 or 2024.
_DATE_FORMATS = (
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%m-%d-%Y",
    "%m.%d.%Y",
    "%Y/%m/%d",
    "%B %d %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
)
_ORDINAL = re.compile(r"(\d{1,2})(?:st|nd|rd|th)\b", re.IGNORECASE)


def _digest(purpose: str, normalised: str) -> str:
    key = settings.BLIND_INDEX_KEY.encode()
    return hmac.new(key, f"{purpose}:{normalised}".encode(), hashlib.sha256).hexdigest()


def normalise_phone(raw: str, region: str = DEFAULT_REGION) -> str | None:
    """The E.164 form of a phone number (``+16175550167``), or ``None`` if it is not one.

    "Possible" rather than "valid" numbers are accepted: validity depends on the numbering
    plan metadata of the day (and rejects the 555 numbers used in examples), while a blind
    index only needs the same number to normalise the same way every time.
    """
    if not raw or not any(char.isdigit() for char in raw):
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    # A number that is possible only locally (seven digits, no area code) is ambiguous: it
    # would index differently from the same line written in full, so it is refused.
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_last_name(raw: str) -> str | None:
    """Case-folded letters with accents removed: ``"O'Brien-García"`` -> ``"obriengarcia"``."""
    decomposed = unicodedata.normalize("NFKD", raw.casefold())
    letters = "".join(
        char for char in decomposed if char.isalpha() and not unicodedata.combining(char)
    )
    return letters or None


def parse_date_of_birth(raw: str | datetime.date) -> datetime.date | None:
    """A date from ISO text, US numeric (``03/12/1984``) or spelled (``March 12th, 1984``)."""
    if isinstance(raw, datetime.datetime):
        return raw.date()
    if isinstance(raw, datetime.date):
        return raw
    text = _ORDINAL.sub(r"\1", raw.strip().replace(",", " "))
    text = " ".join(text.split())
    for fmt in _DATE_FORMATS:
        try:
            # A date is not an instant: no time zone applies to a date of birth.
            return datetime.datetime.strptime(text, fmt).date()  # noqa: DTZ007
        except ValueError:
            continue
    return None


def normalise_date_of_birth(raw: str | datetime.date) -> str | None:
    """The ISO form (``1984-03-12``) of a date of birth, or ``None``."""
    day = parse_date_of_birth(raw)
    return None if day is None else day.isoformat()


def phone_index(raw: str) -> str:
    """The blind index of a phone number; empty when it is not a phone number."""
    normalised = normalise_phone(raw)
    return _digest("phone", normalised) if normalised else ""


def dob_index(raw: str | datetime.date | None) -> str:
    """The blind index of a date of birth; empty when there is none."""
    normalised = normalise_date_of_birth(raw) if raw else None
    return _digest("dob", normalised) if normalised else ""


def name_dob_index(last_name: str, date_of_birth: str | datetime.date | None) -> str:
    """The blind index of last name + date of birth; empty unless both are usable.

    The pair, not the name alone, is indexed: a last name by itself is low in entropy and
    shared by families, and callers identify themselves by name and birth date together.
    """
    name = normalise_last_name(last_name) if last_name else None
    day = normalise_date_of_birth(date_of_birth) if date_of_birth else None
    return _digest("name_dob", f"{name}|{day}") if name and day else ""
