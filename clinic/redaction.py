"""Mask PHI-shaped text in log events: the safety net behind "log ids, not PHI".

Application code logs identifiers, lengths and phases, never PHI. This processor runs on every
structured log event anyway and masks what looks like a phone number, a date, an e-mail
address or a long run of digits (member IDs, record numbers), in the message and in every
string value, so that a mistake does not leak a caller's details into a log file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

MASK = "[redacted]"

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # e-mail addresses
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE),
    # ISO and numeric dates: 1984-03-12, 03/12/1984, 3-12-84, 12.03.1984
    re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b"),
    re.compile(r"\b\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})\b"),
    # spelled dates: March 12, 1984 / 12 March 1984 / March 12th
    re.compile(rf"\b{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{2,4}})?\b", re.IGNORECASE),
    re.compile(
        rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\b(?:,?\s+\d{{4}})?", re.IGNORECASE
    ),
    # phone numbers: +1 (555) 123-4567, 555.123.4567, 555 123 4567, +447700900123
    re.compile(r"(?<![\w+])\+?(?:\d[\s.-]?){0,3}\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}\b"),
    # any other run of five or more digits (member IDs, record numbers, ZIP codes)
    re.compile(r"(?<![\w.])\d{5,}(?![\w.])"),
)

# Keys whose values are our own identifiers or the logging machinery's fields, never PHI.
SAFE_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "logger_name",
        "request_id",
        "call_id",
        "call_sid",
        "task_id",
        "stream_sid",
        "duration_ms",
        "latency_ms",
        "status_code",
        "method",
        "path",
    }
)


def redact_text(text: str) -> str:
    """Return ``text`` with every PHI-shaped substring replaced by :data:`MASK`."""
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return type(value)(_redact_value(item) for item in value)
    return value


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact every string value except :data:`SAFE_KEYS`."""
    for key, value in list(event_dict.items()):
        if key in SAFE_KEYS or key.startswith("_"):
            continue
        if key == "exc_info" or key == "exception":
            # Rendered tracebacks are redacted as text after formatting (see clinic.logs).
            if isinstance(value, str):
                event_dict[key] = redact_text(value)
            continue
        event_dict[key] = _redact_value(value)
    return event_dict
