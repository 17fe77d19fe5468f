"""Stopping the server mid-call, politely (SIGTERM) and not (kill -9), on real processes.

The server is the README's (``make run``, which runs ``manage.py serve``) on a fresh SQLite
file; the caller is the call simulator in its own process, in real time, with the espeak-ng
voice. What the caller hears and what staff find afterwards:

- SIGTERM: while the server drains, readiness says 503 and a new caller is put through to
  the front desk; the caller on the line hears the hand-over line at a safe point and is
  put through (the stream closes, Twilio runs the ``<Dial>``); the call is finished as
  transferred with a follow-up; the process exits 0, and only after those rows are written.
- kill -9: nothing of the dead process survives it (no orphaned children); a second server
  on the same database finishes the call within a minute of the death, as abandoned with a
  "call dropped" follow-up and a duration that ends at its last heartbeat. On the
  production topology (marker ``production_topology``) the survivors are the other server
  and Celery beat, on PostgreSQL.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.live.harness import (
    DEMO_SCENARIO,
    FRONT_DESK,
    Deployment,
    EmbeddedServer,
    ProductionTopology,
    Rows,
)
from tests.live.processes import ManagedProcess, alive, descendants, http_get, wait_until
from voice.drain import HANDOVER_TRANSFER_LINE

GRACE_S = 30
"""DRAIN_GRACE_SECONDS for the SIGTERM test: long enough to reach a safe point (the end of
the greeting, before the caller answers) rather than be forced."""
SWEEP_DEADLINE_S = 60.0
"""A call whose process died is finished within a minute of the death (issue 9)."""


def _live_call(server: Deployment) -> dict[str, object]:
    """The call in progress once the agent has said something (the greeting is stored)."""

    def live(rows: Rows) -> bool:
        return any(not call["finished"] and call["agent_turns"] >= 1 for call in rows["calls"])

    rows = server.wait_for_rows(live, timeout_s=120, what="a live call")
    return next(call for call in rows["calls"] if not call["finished"])


def _swept(managed: ManagedProcess, call: dict[str, object]) -> bool:
    """The process logged the sweep of ``call`` (console, JSON or Celery's log lines)."""
    mentions = re.compile(rf"""call_id['"]?(=|: ){call["id"]}\b""")
    return any(
        "call_swept" in line and mentions.search(line) for line in managed.log_text().splitlines()
    )


def _twiml_tags(body: str) -> list[str]:
    root = ET.fromstring(body)  # noqa: S314 - our own server's TwiML
    return [child.tag for child in root]


@pytest.mark.live
def test_sigterm_mid_call_hands_the_caller_over_and_exits_after_the_writes(
    tmp_path: Path,
) -> None:
    with EmbeddedServer(tmp_path, DRAIN_GRACE_SECONDS=str(GRACE_S)) as server:
        assert server.make is not None
        batch = server.start_calls([DEMO_SCENARIO])
        batch.wait_prepared()
        live = _live_call(server)

        pid = server.sigterm()
        # Draining: out of the load balancer's rotation, and new callers go to people.
        ready_status, ready_body = http_get(server.base_url + "/health/ready")
        answer_status, answer_body = server.post_answer()
        [record] = batch.results()
        exit_code = server.make.process.wait(timeout=GRACE_S + 60)
        # Read at once: the process is gone, so whatever it wrote is all there will be.
        rows = server.rows([HANDOVER_TRANSFER_LINE])
        log = server.make.log_text()

    assert ready_status == 503, ready_body
    assert json.loads(ready_body)["checks"]["process"]["detail"] == "Draining"
    assert answer_status == 200 and _twiml_tags(answer_body) == ["Dial"], answer_body
    assert FRONT_DESK in answer_body

    # The caller heard the hand-over line, then the agent closed the stream (1000), after
    # which Twilio dials the front desk.
    assert record.get("error") is None, record
    assert record["server_closed"] and record["close_code"] == 1000, record
    assert record["agent_said"][-1] == HANDOVER_TRANSFER_LINE, record["agent_said"]

    assert exit_code == 0, log[-3000:]
    assert not alive(pid)
    by_sid = {call["call_sid"]: call for call in rows["calls"]}
    handed = by_sid[live["call_sid"]]
    assert handed["outcome"] == "transferred", handed
    assert handed["followups"] == ["handed_over"], handed
    assert handed["agent_phrases"] == [HANDOVER_TRANSFER_LINE]
    others = [call for sid, call in by_sid.items() if sid != live["call_sid"]]
    assert [call["outcome"] for call in others] == ["transferred"], others  # the new caller
    assert [call for call in rows["calls"] if not call["finished"]] == []
    assert "drain_finished" in log and "unfinished=[]" in log
    assert "server_exited" in log


@pytest.mark.live
def test_kill9_mid_call_leaves_no_orphans_and_a_survivor_sweeps_the_call(
    tmp_path: Path,
) -> None:
    with EmbeddedServer(tmp_path) as first:
        batch = first.start_calls([DEMO_SCENARIO])
        batch.wait_prepared()
        placed_at = time.monotonic()
        live = _live_call(first)
        pid = first.server_pid()
        children = descendants(pid)

        first.kill9()
        killed_at = time.monotonic()
        wait_until(
            lambda: not any(alive(p) for p in [pid, *children]),
            timeout_s=10,
            what=f"the killed server and its children {children} to be gone",
        )
        [record] = batch.results()

    # A second server on the same database (the survivor), as a process manager restarts it.
    with EmbeddedServer(tmp_path) as survivor:
        rows = survivor.wait_for_rows(
            lambda rows: all(call["finished"] for call in rows["calls"]),
            timeout_s=SWEEP_DEADLINE_S + 30,
            what="the dead process's call to be swept",
        )
        swept_after = time.monotonic() - killed_at
        active = survivor.active_calls()

    # The line went dead: the socket dropped without a closing handshake (1006).
    assert record.get("error") is None and record["close_code"] == 1006, record
    [call] = [c for c in rows["calls"] if c["call_sid"] == live["call_sid"]]
    assert call["outcome"] == "abandoned", call
    assert call["followups"] == ["call_dropped"], call
    # Finished within a minute of the death, with the duration to the last heartbeat (not
    # to the sweep, which came 20 s or more after the death).
    assert swept_after <= SWEEP_DEADLINE_S, swept_after
    assert call["duration_seconds"] <= killed_at - placed_at + 1, call
    assert active == 0


@pytest.mark.production_topology
def test_kill9_of_the_stream_server_is_swept_by_the_survivors(tmp_path: Path) -> None:
    """Production: the stream's server dies; server a (its periodic sweep) and Celery beat
    are still running, and one of them finishes the call on PostgreSQL within a minute."""
    with ProductionTopology(tmp_path) as topology:
        batch = topology.start_calls([DEMO_SCENARIO])
        batch.wait_prepared()
        placed_at = time.monotonic()
        live = _live_call(topology)
        pid = topology.server_pid("b")
        children = descendants(pid)

        topology.kill9("b")
        killed_at = time.monotonic()
        wait_until(
            lambda: not any(alive(p) for p in [pid, *children]),
            timeout_s=10,
            what=f"the killed server and its children {children} to be gone",
        )
        [record] = batch.results()
        rows = topology.wait_for_rows(
            lambda rows: all(call["finished"] for call in rows["calls"]),
            timeout_s=SWEEP_DEADLINE_S + 30,
            what="the dead server's call to be swept",
        )
        swept_after = time.monotonic() - killed_at
        sweepers = [managed.name for managed in topology.processes if _swept(managed, live)]

    assert record.get("error") is None and record["close_code"] == 1006, record
    [call] = [c for c in rows["calls"] if c["call_sid"] == live["call_sid"]]
    assert call["outcome"] == "abandoned", call
    assert call["followups"] == ["call_dropped"], call
    assert swept_after <= SWEEP_DEADLINE_S, swept_after
    assert call["duration_seconds"] <= killed_at - placed_at + 1, call
    assert sweepers, "no surviving process logged the sweep"


@pytest.mark.production_topology
def test_sigterm_of_the_stream_server_hands_its_caller_over_through_nginx(
    tmp_path: Path,
) -> None:
    """Production: the stream's server is stopped (a deploy); its caller is handed over
    through nginx (TLS, WebSocket proxy) and the process exits 0 once PostgreSQL has it all."""
    with ProductionTopology(tmp_path, DRAIN_GRACE_SECONDS=str(GRACE_S)) as topology:
        batch = topology.start_calls([DEMO_SCENARIO])
        batch.wait_prepared()
        live = _live_call(topology)
        server = topology.servers["b"]

        topology.sigterm("b")
        [record] = batch.results()
        exit_code = server.process.wait(timeout=GRACE_S + 60)
        rows = topology.rows([HANDOVER_TRANSFER_LINE])
        log = server.log_text()

    assert record.get("error") is None, record
    assert record["server_closed"] and record["close_code"] == 1000, record
    assert record["dial"] == FRONT_DESK, record
    assert record["agent_said"][-1] == HANDOVER_TRANSFER_LINE, record["agent_said"]
    assert exit_code == 0, log[-3000:]
    [call] = [c for c in rows["calls"] if c["call_sid"] == live["call_sid"]]
    assert call["outcome"] == "transferred", call
    assert call["followups"] == ["handed_over"], call
    assert [c for c in rows["calls"] if not c["finished"]] == []
