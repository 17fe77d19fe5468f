"""What the simulator's test modules share: the call's identifiers and a one-off scenario."""

from __future__ import annotations

from intake.scenario import Line, Scenario

STREAM_SID = "MZ" + "1" * 32
CALL_SID = "CA" + "2" * 32
ACCOUNT_SID = "AC" + "3" * 32


def scenario(*lines: Line) -> Scenario:
    return Scenario(
        name="stand-in", slug="stand-in", caller_number="+16175550142", lines=list(lines), expect={}
    )
