"""Dates as callers say them: a date of birth, or the day they would like to come in.

A date of birth is read from the number groups the caller used ("march third nineteen eighty
four", "3 12 84", "the twelfth of march 1984", "oh three one two eight four") in the US order
(month, day, year), with dateparser as the fallback for anything else; it is never in the
future, and a two-digit year becomes the most recent such year that is not. A requested day
is read as weekdays, a part of the day, "as soon as possible", and a specific date when one
was named; relative phrases ("tomorrow", "in two weeks") go to dateparser, anchored on the
clinic's today and preferring the future.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from dateparser.date import DateDataParser

from intake.understanding.spoken import MONTHS, Chunk, number_chunks, tokens
from intake.understanding.types import PartOfDay

_OLDEST_BIRTH_YEAR = 1900


@lru_cache(maxsize=8)
def _dateparser(prefer: str, today: dt.date, require_full: bool) -> DateDataParser:
    """A parser per (direction, today): building one costs more than a parse."""
    settings: dict[str, object] = {
        "PREFER_DATES_FROM": prefer,
        "RELATIVE_BASE": dt.datetime.combine(today, dt.time()),
        "DATE_ORDER": "MDY",
        "PREFER_LOCALE_DATE_ORDER": False,
    }
    if require_full:
        settings["REQUIRE_PARTS"] = ["day", "month", "year"]
    return DateDataParser(languages=["en"], settings=settings)


def _dateparse(text: str, prefer: str, today: dt.date, require_full: bool) -> dt.date | None:
    try:
        data = _dateparser(prefer, today, require_full).get_date_data(text)
    except (ValueError, OverflowError):  # dateparser's own arithmetic on absurd numbers
        return None
    return data.date_obj.date() if data.date_obj else None


def with_digits(words: list[str]) -> str:
    """``words`` with every spoken number written in digits ("in two weeks" -> "in 2 weeks")."""
    chunks = {chunk.start: chunk for chunk in number_chunks(words)}
    out: list[str] = []
    i = 0
    while i < len(words):
        chunk = chunks.get(i)
        if chunk:
            out.append(chunk.digits)
            i = chunk.end
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except (ValueError, OverflowError):  # "february thirtieth", "99999999999"
        return None


def _month_position(words: list[str], chunks: list[Chunk]) -> int | None:
    """Where a month is named; "may" and "march" count only beside a number."""
    numbered = {c.start for c in chunks} | {c.end - 1 for c in chunks}
    for i, word in enumerate(words):
        if word not in MONTHS:
            continue
        if word in ("may", "march", "jan", "mar", "sep") and not ({i - 1, i + 1, i + 2} & numbered):
            continue
        return i
    return None


def _year(chunks: Sequence[Chunk]) -> tuple[int, bool] | None:
    """The year in ``chunks``: (year, said with two digits only)."""
    for chunk in chunks:
        if chunk.value >= 1000 and len(chunk.digits) == 4:
            return chunk.value, False
    for first, second in zip(chunks, chunks[1:], strict=False):
        # "nineteen eighty four", "twenty oh five", "twenty twenty"
        if 18 <= first.value <= 20 and second.value < 100 and second.start == first.end:
            return first.value * 100 + second.value, False
    for chunk in chunks:
        if chunk.value < 100 and not chunk.ordinal:
            return chunk.value, True
    return None


def _full_year(year: int, short: bool, month: int, day: int, today: dt.date) -> int:
    if not short:
        return year
    recent = 2000 + year
    candidate = _safe_date(recent, month, day)
    return recent if candidate is not None and candidate <= today else 1900 + year


def _split_digits(digits: str) -> tuple[int, int, int, bool] | None:
    """ "03121984" / "031284" as month, day, year, short-year."""
    if len(digits) == 8:
        return int(digits[:2]), int(digits[2:4]), int(digits[4:]), False
    if len(digits) == 6:
        return int(digits[:2]), int(digits[2:4]), int(digits[4:]), True
    return None


def _named_month_parts(
    words: list[str], chunks: list[Chunk], position: int
) -> tuple[int, int, int, bool] | None:
    """Day and year around a named month: "the first of june nineteen fifty", "march 3 84".

    The day is the number right before or right after the month; an ordinal ("first") wins,
    then the one after the month (the US order), as long as a year is left over.
    """
    month = MONTHS[words[position]]
    before = [c for c in chunks if position - 3 < c.end <= position and c.value <= 31]
    after = [c for c in chunks if position < c.start <= position + 2 and c.value <= 31]
    days = before[-1:] + after[:1]
    days.sort(key=lambda c: (not c.ordinal, c.start < position))
    for day in days:
        year = _year([c for c in chunks if c is not day])
        if year is not None:
            return month, day.value, year[0], year[1]
    return None


def _birth_parts(words: list[str]) -> tuple[int, int, int, bool] | None:
    chunks = number_chunks(words)
    if not chunks:
        return None
    position = _month_position(words, chunks)
    if position is not None:
        return _named_month_parts(words, chunks, position)
    if len(chunks) == 1 or (len(chunks) >= 5 and all(c.value < 10 for c in chunks)):
        # one written number ("03121984") or digit by digit ("oh three one two ...")
        return _split_digits("".join(c.digits for c in chunks))
    if len(chunks) < 3:
        return None
    if chunks[0].value >= 1000:  # 1984 3 12, ISO order
        return chunks[1].value, chunks[2].value, chunks[0].value, False
    month, day = chunks[0].value, chunks[1].value
    year = _year(chunks[2:])
    if year is None:
        return None
    if month > 12 and day <= 12:  # said day first
        month, day = day, month
    return month, day, year[0], year[1]


def parse_birth_date(text: str, today: dt.date) -> tuple[dt.date | None, float]:
    """A date of birth in ``text`` and how sure the parse is.

    Never a date after ``today`` or before 1900: such a parse is a mishearing, and asking
    again is better than storing it.
    """
    words = tokens(text)
    parts = _birth_parts(words)
    born: dt.date | None = None
    confidence = 0.0
    if parts is not None:
        month, day, year, short = parts
        year = _full_year(year, short, month, day, today)
        born = _safe_date(year, month, day)
        confidence = 0.8 if short else 0.92
    if born is None:
        born = _dateparse(with_digits(words), "past", today, require_full=True)
        confidence = 0.7
    if born is None or born > today or born.year < _OLDEST_BIRTH_YEAR:
        return None, 0.0
    return born, confidence


@dataclass(frozen=True)
class DayPreference:
    """When the caller would like to come in, as far as they said."""

    weekdays: frozenset[int] = field(default_factory=frozenset)
    part_of_day: PartOfDay | None = None
    soonest: bool = False
    date: dt.date | None = None
    not_before: dt.date | None = None

    @property
    def said(self) -> bool:
        return bool(
            self.weekdays or self.part_of_day or self.soonest or self.date or self.not_before
        )


_DAY_NAME = r"(mon|tues?|wed(?:nes)?|weds|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?s?\b"
_WEEKDAY_WORD = re.compile(r"\b" + _DAY_NAME)
_WEEKDAY_INDEX = {
    "mon": 0,
    "tue": 1,
    "tues": 1,
    "wed": 2,
    "wednes": 2,
    "weds": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "fri": 4,
    "sat": 5,
    "satur": 5,
    "sun": 6,
}
_RANGE = re.compile(r"\b" + _DAY_NAME + r" (through|thru|to|till|until) " + _DAY_NAME)
_EXCEPT = re.compile(
    r"\b(except|but not|not|no|anything but|other than|besides|can't do|cannot do|can't make)"
    r" (on )?$"
)
# Most specific first: "before noon" is a morning even though it says "noon".
_PARTS: tuple[tuple[re.Pattern[str], PartOfDay], ...] = (
    (re.compile(r"\bbefore (noon|lunch|eleven|11|twelve|12)\b"), PartOfDay.MORNING),
    (re.compile(r"\bafter (lunch|noon|twelve|12|one|1|two|2)\b"), PartOfDay.AFTERNOON),
    (re.compile(r"\b(after work|after (five|5)|tonight|late in the day)\b"), PartOfDay.EVENING),
    (re.compile(r"\b(mornings?|first thing|early in the day)\b"), PartOfDay.MORNING),
    (re.compile(r"\b(afternoons?|midday|lunch ?time)\b"), PartOfDay.AFTERNOON),
    (re.compile(r"\bevenings?\b"), PartOfDay.EVENING),
    (re.compile(r"\d ?a ?m\b"), PartOfDay.MORNING),
    (re.compile(r"\d ?p ?m\b"), PartOfDay.AFTERNOON),
)
_SOONEST = re.compile(
    r"\b(as soon as (possible|you can)|asap|a s a p|earliest|soonest|first available|"
    r"next available|right away|first opening|urgent(ly)?|whenever|any ?time|any day|"
    r"no preference|(doesn'?t|does not) matter)\b"
)
_RELATIVE = re.compile(
    r"\b(today|tomorrow|day after tomorrow|in \d+ (days?|weeks?)|\d+ (days?|weeks?) from now|"
    r"a week from (today|now))\b"
)
_NEXT_WEEK = re.compile(r"\b(next week|the week after)\b")
_THIS_NEXT_DAY = re.compile(r"\b(this|next|this coming|coming) " + _DAY_NAME)
_DAY_OF_MONTH = re.compile(r"\bthe (\d{1,2})(st|nd|rd|th)?\b")
_AFTER_DAY = re.compile(r"\bafter the (\d{1,2})(st|nd|rd|th)?\b")


def part_of_day_in(text: str) -> PartOfDay | None:
    """The one part of the day the caller asked for; none when they named several."""
    found = [(rank, part) for rank, (pattern, part) in enumerate(_PARTS) if pattern.search(text)]
    if not found:
        return None
    parts = {part for _, part in found}
    if len(parts) == 1:
        return found[0][1]
    rank, part = found[0]
    return part if rank < 3 else None  # "after lunch" outranks "afternoon or evening"


def _weekday(word: str) -> int:
    return _WEEKDAY_INDEX[word]


def weekdays_in(text: str) -> frozenset[int]:
    """Weekdays named in ``text`` (0 = Monday): ranges, "weekdays", and "not Mondays"."""
    days: set[int] = set()
    for match in _RANGE.finditer(text):
        first, last = _weekday(match.group(1)), _weekday(match.group(3))
        days |= set(range(first, last + 1)) if first <= last else {first, last}
    excluded: set[int] = set()
    for match in _WEEKDAY_WORD.finditer(text):
        day = _weekday(match.group(1))
        if _EXCEPT.search(text[max(0, match.start() - 16) : match.start()]):
            excluded.add(day)
        else:
            days.add(day)
    if re.search(r"\b(any ?weekday|weekdays|during the week)\b", text):
        days |= {0, 1, 2, 3, 4}
    if re.search(r"\bweekends?\b", text):
        days |= {5, 6}
    if excluded and not days:
        days = set(range(7))
    return frozenset(days - excluded)


def _next_weekday(today: dt.date, weekday: int, *, next_week: bool) -> dt.date:
    if next_week:  # "next tuesday": the tuesday of the following calendar week
        monday = today + dt.timedelta(days=7 - today.weekday())
        return monday + dt.timedelta(days=weekday)
    return today + dt.timedelta(days=(weekday - today.weekday()) % 7)


def _day_of_month(day: int, today: dt.date) -> dt.date | None:
    """The next date (from today) that falls on this day of the month."""
    year, month = today.year, today.month
    for _ in range(3):
        candidate = _safe_date(year, month, day)
        if candidate is not None and candidate >= today:
            return candidate
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _month_day(words: list[str], today: dt.date) -> dt.date | None:
    chunks = number_chunks(words)
    position = _month_position(words, chunks)
    if position is None:
        return None
    near = [c for c in chunks if c.start in (position + 1, position + 2)]
    near += [c for c in chunks if c.end in (position, position - 1)]
    day = next((c.value for c in near if 1 <= c.value <= 31), None)
    if day is None:
        return None
    month = MONTHS[words[position]]
    for year in (today.year, today.year + 1):
        candidate = _safe_date(year, month, day)
        if candidate is not None and candidate >= today:
            return candidate
    return None


def parse_day(text: str, today: dt.date) -> DayPreference:
    """The caller's day preference in ``text``: never a day before ``today``."""
    words = tokens(text)
    plain = with_digits(words)
    part = part_of_day_in(plain)
    weekdays = weekdays_in(plain)
    date: dt.date | None = None
    not_before: dt.date | None = None
    if match := _THIS_NEXT_DAY.search(plain):
        day = _weekday(match.group(2))
        date = _next_weekday(today, day, next_week=match.group(1) == "next")
    elif match := _RELATIVE.search(plain):
        date = _dateparse(match.group(1), "future", today, require_full=False)
    elif (month_day := _month_day(words, today)) is not None:
        date = month_day
    elif match := _AFTER_DAY.search(plain):
        after = _day_of_month(int(match.group(1)), today)
        not_before = after + dt.timedelta(days=1) if after else None
    elif match := _DAY_OF_MONTH.search(plain):
        date = _day_of_month(int(match.group(1)), today)
    if _NEXT_WEEK.search(plain) and date is None:
        not_before = today + dt.timedelta(days=7 - today.weekday())
    if date is not None:
        if date < today:
            date = None
        else:
            weekdays = weekdays | {date.weekday()}
    return DayPreference(
        weekdays=weekdays,
        part_of_day=part,
        soonest=bool(_SOONEST.search(plain)),
        date=date,
        not_before=not_before,
    )
