"""Which of the offered appointments the caller chose.

The caller can point at an option by position ("the first one", "the last"), by time ("the
9:30", "two thirty"), by day ("Tuesday's"), by provider ("with Dr. Patel") or by a mix; each
clue narrows the offered list and a choice is made only when exactly one option is left. An
ambiguous answer gives no index (the conversation asks which), never a guess.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from intake.understanding.dates import part_of_day_in, weekdays_in, with_digits
from intake.understanding.matching import match_provider
from intake.understanding.spoken import tokens
from intake.understanding.types import ANY_PROVIDER, OfferedOption, PartOfDay

_POSITIONS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4}
_POSITION = re.compile(r"\b(first|second|third|fourth|fifth)\b(?! (of|thing|available|time))")
_NUMBERED = re.compile(r"\b(option|number|choice) (\d)\b")
_LAST = re.compile(r"\b(last|latter|final)\b")
_EARLIEST = re.compile(
    r"\b((earlier|earliest|sooner|soonest) (one|option|time|slot|appointment)|first available)\b"
)
_LATEST = re.compile(r"\b(later|latest) (one|option|time|slot|appointment)\b")
_TIME = re.compile(r"\b(\d{1,2})(?: (\d{2}))?(?: (o'?clock))?(?: ?([ap]) ?m\b)?")
_RELATIVE_DAY = re.compile(r"\b(today|tomorrow)\b")
_REFUSE = re.compile(
    r"\b(neither|none of (those|them|these)|no(ne)? (of )?(those|them) work|something else|"
    r"other (times|days|options)|different (time|day)|(doesn'?t|don'?t|won'?t) work|"
    r"can'?t do (any|either|those)|anything else)\b|^(no|nope|nah)\b"
)
_ACCEPT = re.compile(
    r"^(yes|yeah|yep|sure|ok|okay|that works|sounds good|perfect|great|book it|that one|"
    r"that'?s (fine|good|great|perfect))\b"
)


@dataclass(frozen=True)
class SlotChoice:
    index: int | None
    refused: bool
    accepted: bool
    confidence: float


def _time_candidates(said: str) -> list[tuple[int, int, str | None]]:
    """Clock times in digit-written text: "9 30", "2 30 pm", "10 o'clock", "at 2"."""
    found: list[tuple[int, int, str | None]] = []
    for match in _TIME.finditer(said):
        hour = int(match.group(1))
        minutes, oclock, meridiem = match.group(2), match.group(3), match.group(4)
        if not (minutes or oclock or meridiem) and not re.search(rf"\bat {match.group(1)}\b", said):
            continue  # a bare number is a position or a date, not a time
        minute = int(minutes) if minutes else 0
        if 1 <= hour <= 23 and minute <= 59:
            found.append((hour, minute, meridiem))
    return found


def _matches_time(option: OfferedOption, hour: int, minute: int, meridiem: str | None) -> bool:
    if option.minute != minute:
        return False
    if meridiem == "a":
        return option.hour == hour % 12
    if meridiem == "p":
        return option.hour == hour % 12 + 12
    return option.hour % 12 == hour % 12


def _in_part(option: OfferedOption, part: PartOfDay) -> bool:
    if part is PartOfDay.MORNING:
        return option.hour < 12
    if part is PartOfDay.AFTERNOON:
        return 12 <= option.hour < 17
    return option.hour >= 17


def choose_slot(text: str, options: Sequence[OfferedOption], today: dt.date) -> SlotChoice:
    """The option the caller chose, if exactly one fits everything they said."""
    words = tokens(text)
    plain = " ".join(words)
    said = with_digits(words)
    refused = bool(_REFUSE.search(plain))
    accepted = bool(_ACCEPT.search(plain)) and not refused
    if not options:
        return SlotChoice(None, refused, accepted, 0.3 if refused or accepted else 0.0)
    indexes = list(range(len(options)))
    clues = 0

    def narrow(keep: list[int]) -> None:
        nonlocal indexes, clues
        clues += 1
        indexes = keep

    times = _time_candidates(said)
    if times:
        narrow([i for i in indexes if any(_matches_time(options[i], *t) for t in times)])
    days = set(weekdays_in(plain))
    if relative := _RELATIVE_DAY.search(plain):
        days.add((today + dt.timedelta(days=relative.group(1) == "tomorrow")).weekday())
    if days:
        narrow([i for i in indexes if options[i].weekday in days])
    part = part_of_day_in(said)
    if part and not times:
        narrow([i for i in indexes if _in_part(options[i], part)])
    providers = sorted({o.provider for o in options if o.provider})
    provider = match_provider(plain, providers)[0] if providers else None
    if provider and provider != ANY_PROVIDER:
        narrow([i for i in indexes if options[i].provider == provider])

    position = _position(plain, said, [options[i] for i in indexes])
    if position is not None and 0 <= position < len(indexes):
        return SlotChoice(indexes[position], False, True, 0.9)
    if clues and len(indexes) == 1:
        return SlotChoice(indexes[0], False, True, 0.9)
    if accepted and not clues and len(options) == 1:
        return SlotChoice(0, False, True, 0.85)
    confidence = 0.4 if clues or refused or accepted else 0.1
    return SlotChoice(None, refused, accepted and not clues, confidence)


def _position(plain: str, said: str, candidates: Sequence[OfferedOption]) -> int | None:
    """A position in ``candidates`` ("the second one", "option 2", "the last", "the earlier")."""
    if not candidates:
        return None
    if match := _NUMBERED.search(said):
        return int(match.group(2)) - 1
    if match := _POSITION.search(plain):
        return _POSITIONS[match.group(1)]
    if _LAST.search(plain):
        return len(candidates) - 1
    earliest, latest = _EARLIEST.search(plain), _LATEST.search(plain)
    if earliest or latest:
        order = sorted(
            range(len(candidates)),
            key=lambda i: (
                candidates[i].date or dt.date.min,
                candidates[i].hour,
                candidates[i].minute,
            ),
        )
        return order[0] if earliest else order[-1]
    return None
