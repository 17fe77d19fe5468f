"""What the live tests assert after calls: what the caller heard and what staff find.

Each check returns a list of problems (empty when all is well) so that a test can assert
``== []`` and the failure shows every problem at once, with the rows that caused it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from tests.live.deployment import CallRecord, Deployment, Rows

GAUGE_TIMEOUT_S = 30.0
"""The active-calls gauge comes down when a session closes: seconds, never minutes."""


def assert_none(problems: Sequence[str], what: str = "") -> None:
    """Fail with every problem on its own line (pytest's list diff shows only the first)."""
    if problems:
        heading = f"{what}:\n" if what else ""
        raise AssertionError(heading + "\n".join(f"  - {problem}" for problem in problems))


def call_problems(records: Sequence[CallRecord]) -> list[str]:
    """Every call went as its scenario says (:func:`voice.simulator.check`), numbered."""
    problems = []
    for number, record in enumerate(records, start=1):
        if record.get("error"):
            problems.append(f"call {number} ({record['scenario']}): {record['error']}")
            continue
        for problem in record["problems"]:
            heard = record.get("caller_heard_as")
            problems.append(
                f"call {number} ({record['scenario']}, close {record['close_code']}): "
                f"{problem} [heard: {heard}]"
            )
    return problems


def caller_idle_stretches(record: CallRecord) -> list[float]:
    """Seconds between one thing the caller said or pressed and the next (the first from
    the start of the call): how long the line was quiet on the caller's side."""
    stretches = []
    previous_end = 0.0
    for line in record["lines"]:
        if line["kind"] not in ("say", "press"):
            continue
        stretches.append(line["start_s"] - previous_end)
        previous_end = line["end_s"] if line["end_s"] is not None else line["start_s"]
    return stretches


def staff_view_problems(
    deployment: Deployment,
    records: Sequence[CallRecord],
    *,
    active_before: float,
    timeout_s: float = 90.0,
) -> list[str]:
    """What staff would find wrong afterwards.

    Every call row is finished with an outcome (none left in progress, including rows of
    calls the caller never got a stream for); every call that did not go as its scenario
    says has a follow-up; ``voice_active_calls`` is back to ``active_before``.
    """
    problems: list[str] = []
    try:
        rows = deployment.wait_for_rows(
            lambda rows: all(call["finished"] for call in rows["calls"]),
            timeout_s=timeout_s,
            what="every call row to be finished",
        )
    except Exception as exc:  # the rows are in the message: report, then check the rest
        problems.append(str(exc))
        rows = deployment.rows()
    by_sid = {call["call_sid"]: call for call in rows["calls"]}
    for number, record in enumerate(records, start=1):
        sid = record.get("call_sid")
        if sid is None:
            continue
        row = by_sid.get(sid)
        if row is None:
            problems.append(f"call {number}: no row for {sid}")
            continue
        completed = not record["problems"]
        if not completed and not row["followups"]:
            problems.append(
                f"call {number} did not go as its scenario says and has no follow-up: "
                f"{json.dumps(row)}"
            )
    in_progress = [call for call in rows["calls"] if not call["finished"]]
    if in_progress:
        problems.append(f"rows left in progress: {json.dumps(in_progress)}")
    problems += gauge_problems(deployment, active_before)
    return problems


def gauge_problems(deployment: Deployment, active_before: float) -> list[str]:
    deadline = time.monotonic() + GAUGE_TIMEOUT_S
    while True:
        active = deployment.active_calls()
        if active == active_before:
            return []
        if time.monotonic() > deadline:
            return [f"voice_active_calls is {active:g}, was {active_before:g} before the calls"]
        time.sleep(1.0)


def rows_for(rows: Rows, records: Sequence[CallRecord]) -> list[dict[str, object]]:
    sids = {record.get("call_sid") for record in records}
    return [call for call in rows["calls"] if call["call_sid"] in sids]
