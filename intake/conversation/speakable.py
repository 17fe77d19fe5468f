"""Turn stored values into words a caller can check by ear."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone


def spell(word: str) -> str:
    """``"Smyth"`` -> ``"S, M, Y, T, H"``: letters read one by one for a spelling check."""
    return ", ".join(char.upper() for char in word if char.isalnum())


def characters(value: str) -> str:
    """A member ID read back one character at a time."""
    return ", ".join(value)


def spoken_date(value: dt.date) -> str:
    return f"{value:%B} {value.day}, {value.year}"


def spoken_day(value: dt.datetime) -> str:
    """``"Tuesday, March 3 at 9:30 AM"`` in the clinic's zone."""
    local = timezone.localtime(value)
    hour = local.strftime("%I").lstrip("0")
    minutes = "" if local.minute == 0 else f":{local.minute:02d}"
    return f"{local:%A}, {local:%B} {local.day} at {hour}{minutes} {local:%p}"


def spoken_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f", or {items[-1]}"
