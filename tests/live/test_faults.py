"""Faults on the production topology's real processes, while callers are on the line.

Each test asserts what the caller hears (the call goes on, or an apology and a hand-over to
the front desk, never a dropped line or Twilio's application-error message) and what staff
find afterwards (every call finished with an outcome, a follow-up for every call that did
not complete, no row left in progress, ``voice_active_calls`` back where it was).

Redis is a throwaway ``redis-server`` the harness stops and restarts; PostgreSQL is cut by a
TCP proxy between the product and the machine's PostgreSQL (connections reset, new ones
refused). The SIGTERM and kill -9 faults are in ``test_shutdown.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.live.expect import assert_none, call_problems, staff_view_problems
from tests.live.harness import FRONT_DESK, ProductionTopology, Rows
from tests.live.processes import http_get, wait_until

pytestmark = pytest.mark.production_topology

LONG_CALL = "long_call_with_pauses"
QUICK = str(Path(__file__).parent / "scenarios" / "quick_book_then_person.toml")
REDIS_OUTAGE_S = 10.0
DATABASE_OUTAGE_S = 25.0
"""Longer than CALL_DATABASE_RETRY_SECONDS (6 s by default) plus the next prompt: the call
must give up waiting, apologise and hand over, and write what it kept once the database is
back. The cut starts once the first "are you still there?" is stored, so the second one
(about 13 s later) is written into the outage."""
ONE_MOMENT = "One moment, please."
TROUBLE = "having trouble with our system"


def _sids(rows: Rows) -> set[str]:
    return {call["call_sid"] for call in rows["calls"]}


def _wait_for_new_live_call(
    topology: ProductionTopology, known: set[str], *, agent_turns: int = 1
) -> dict[str, object]:
    """The call that has just been answered (a row in progress, not in ``known``) once it
    has ``agent_turns`` agent turns stored (1: the greeting)."""

    def live(rows: Rows) -> bool:
        return any(
            call["call_sid"] not in known
            and not call["finished"]
            and call["agent_turns"] >= agent_turns
            for call in rows["calls"]
        )

    rows = topology.wait_for_rows(live, timeout_s=90, what="a live call")
    return next(c for c in rows["calls"] if c["call_sid"] not in known and not c["finished"])


def _ready(topology: ProductionTopology, name: str) -> int:
    return http_get(topology.server_url(name) + "/health/ready", timeout_s=5)[0]


def _readiness(topology: ProductionTopology, name: str) -> str:
    body = http_get(topology.server_url(name) + "/health/ready", timeout_s=5)[1]
    return str(json.loads(body)["status"])


def test_redis_stopped_mid_call_the_call_goes_on_and_the_next_call_works(
    topology: ProductionTopology,
) -> None:
    before = topology.active_calls()
    known = _sids(topology.rows())
    live = topology.start_calls([LONG_CALL])
    live.wait_prepared()
    _wait_for_new_live_call(topology, known)
    time.sleep(3.0)

    topology.stop_redis()
    stopped_at = time.monotonic()
    # A caller who rings during the outage gets a stream that works, or a person; never a
    # stream that cannot work.
    during = topology.start_calls([QUICK])
    ready_during = {name: _ready(topology, name) for name in ("a", "b")}
    assert {_readiness(topology, name) for name in ("a", "b")} == {"degraded"}
    time.sleep(max(0.0, REDIS_OUTAGE_S - (time.monotonic() - stopped_at)))
    topology.start_redis()

    [on_the_line] = live.results()
    [rang_during] = during.results()
    assert_none(call_problems([on_the_line]), "the call on the line did not go on")
    assert on_the_line["close_code"] != 1011
    if rang_during["error"] is not None:
        assert "no <Connect><Stream" in rang_during["error"], rang_during
    else:
        assert_none(call_problems([rang_during]), "a stream handed out during the outage failed")
    # Calls do not need Redis: both servers stay in rotation (200) and report "degraded".
    assert ready_during == {"a": 200, "b": 200}, "an outage of Redis took servers out"

    wait_until(
        lambda: {_readiness(topology, name) for name in ("a", "b")} == {"ok"},
        timeout_s=60,
        what="both servers report every dependency ok again after Redis came back",
    )
    after = topology.place_call(QUICK)
    assert_none(call_problems([after]), "the next call after Redis came back failed")
    records = [on_the_line, after] + ([rang_during] if rang_during["error"] is None else [])
    assert_none(staff_view_problems(topology, records, active_before=before))


def test_database_unreachable_the_answer_webhook_puts_callers_through_to_people(
    topology: ProductionTopology,
) -> None:
    before = topology.active_calls()
    topology.cut_database()
    try:
        answers = [topology.post_answer() for _ in range(3)]
    finally:
        topology.restore_database()

    for status, body in answers:
        assert status == 200, f"/voice/answer answered {status} without its database: {body}"
        assert "<Stream" not in body, body
        assert "<Dial" in body and FRONT_DESK in body, body

    wait_until(
        lambda: _ready(topology, "a") == 200,
        timeout_s=60,
        what="server a ready again after the database came back",
    )
    after = topology.place_call(QUICK)
    assert_none(call_problems([after]), "the next call after the database came back failed")
    assert_none(staff_view_problems(topology, [after], active_before=before))


def test_database_unreachable_mid_call_the_caller_is_apologised_to_and_handed_over(
    topology: ProductionTopology,
) -> None:
    before = topology.active_calls()
    known = _sids(topology.rows())
    live = topology.start_calls([LONG_CALL])
    live.wait_prepared()
    _wait_for_new_live_call(topology, known, agent_turns=2)

    topology.cut_database()
    try:
        time.sleep(DATABASE_OUTAGE_S)
    finally:
        topology.restore_database()
    [record] = live.results()

    # What the caller heard: the agent kept talking, then put them through to a person.
    assert record["close_code"] != 1011, record
    assert record["server_closed"], "the agent never handed the caller over"
    assert record["dial"] == FRONT_DESK

    # What staff find once the database is back: the whole call, finished, with a follow-up.
    rows = topology.wait_for_rows(
        lambda rows: any(
            call["call_sid"] == record["call_sid"] and call["finished"] for call in rows["calls"]
        ),
        timeout_s=90,
        what="the call to be finished once the database is back",
        phrases=[ONE_MOMENT, TROUBLE],
    )
    [row] = [call for call in rows["calls"] if call["call_sid"] == record["call_sid"]]
    assert row["followups"], f"no follow-up for a call that did not complete: {row}"
    said = [line for line in record["lines"] if line["kind"] in ("say", "press")]
    assert row["caller_turns"] >= len(said), "something the caller said was lost"
    # The apology and hand-over the caller heard is in the transcript ("One moment, please",
    # said while the turn was retried, is a filler and is not stored).
    assert TROUBLE in row["agent_phrases"], f"apology or hand-over not stored: {row}"
    assert_none(staff_view_problems(topology, [record], active_before=before))
