"""The clinic's opening hours, when a caller can be put through to a person.

Written as ``CLINIC_OPENING_HOURS``, e.g. ``mon-fri 08:00-17:00; sat 09:00-12:00``: groups
separated by semicolons, each a day or day range and a time range in the clinic's zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_GROUP = re.compile(
    r"^(?P<first>[a-z]{3})(?:-(?P<last>[a-z]{3}))?\s+"
    r"(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$"
)


@dataclass(frozen=True)
class OpeningHours:
    """Weekday -> list of (open, close) local times."""

    periods: dict[int, list[tuple[time, time]]]
    zone: str

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.zone))
        return any(
            start <= local.time() < end for start, end in self.periods.get(local.weekday(), [])
        )


def parse_opening_hours(text: str, zone: str) -> OpeningHours:
    """Parse the setting; raises ValueError with a short reason on a malformed value."""
    periods: dict[int, list[tuple[time, time]]] = {}
    for group in filter(None, (part.strip().lower() for part in text.split(";"))):
        match = _GROUP.match(group)
        if not match or match["first"] not in DAYS or (match["last"] and match["last"] not in DAYS):
            raise ValueError(f"cannot read {group!r}; expected e.g. 'mon-fri 08:00-17:00'")
        first = DAYS.index(match["first"])
        last = DAYS.index(match["last"]) if match["last"] else first
        try:
            start = time.fromisoformat(match["start"].zfill(5))
            end = time.fromisoformat(match["end"].zfill(5))
        except ValueError:
            raise ValueError(f"bad time in {group!r}") from None
        if end <= start:
            raise ValueError(f"closing time before opening time in {group!r}")
        for day in range(first, last + 1):
            periods.setdefault(day, []).append((start, end))
    return OpeningHours(periods, zone)


def front_desk_open(moment: datetime | None = None) -> bool:
    """A person can take a call now: a front-desk number is set and the clinic is open.

    The one place the agent, the webhook, the drain and the fail-over ask, so that they
    agree on who is reached. Reads the settings when called, never at import.
    """
    from django.conf import settings
    from django.utils import timezone

    if not settings.FRONT_DESK_NUMBER:
        return False
    hours = parse_opening_hours(settings.CLINIC_OPENING_HOURS, settings.TIME_ZONE)
    return hours.is_open(moment or timezone.now())
