"""The logging safety net masks PHI-shaped text and leaves our identifiers alone."""

from __future__ import annotations

import pytest

from clinic.redaction import MASK, redact_event, redact_text


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("caller said my number is (555) 867-5309", "867-5309"),
        ("callback to +1 555 867 5309 requested", "867 5309"),
        ("sms to +447700900123 queued", "7700900123"),
        ("caller number 555.867.5309", "867.5309"),
        ("date of birth 1984-03-12 did not match", "1984-03-12"),
        ("born 03/12/1984 per caller", "03/12/1984"),
        ("dob 3-12-84", "3-12-84"),
        ("I was born on March 12, 1984", "March 12, 1984"),
        ("born the 12th of March 1984", "12th of March"),
        ("send it to jane.doe+clinic@example.com please", "jane.doe+clinic@example.com"),
        ("member id XJ 123456789 not found", "123456789"),
        ("zip 02139 outside service area", "02139"),
    ],
)
def test_phi_shaped_text_is_masked(line: str, secret: str) -> None:
    redacted = redact_text(line)
    assert secret not in redacted
    assert MASK in redacted


@pytest.mark.parametrize(
    "line",
    [
        "turn 3 took 412.5 ms in phase scheduling",
        "slot 12 booked for appointment 9876",
        "GET /admin/clinic/slot/?page=2 200",
        "retry 2 of 3 after 1.5 s",
    ],
)
def test_ordinary_operational_lines_are_left_readable(line: str) -> None:
    assert redact_text(line) == line


def test_event_values_are_masked_recursively_but_ids_are_kept() -> None:
    event = {
        "event": "lookup failed for 555-867-5309",
        "call_sid": "CA1234567890abcdef1234567890abcdef",
        "request_id": "5f1c2d3e4b5a69788796a5b4c3d2e1f0",
        "details": {"dob": "1984-03-12", "attempts": 2},
        "tries": ["jane@example.com"],
    }
    redacted = redact_event(None, "info", dict(event))
    assert redacted["event"] == f"lookup failed for {MASK}"
    assert redacted["call_sid"] == event["call_sid"]
    assert redacted["request_id"] == event["request_id"]
    assert redacted["details"] == {"dob": MASK, "attempts": 2}
    assert redacted["tries"] == [MASK]
