"""The README's way to run it, as a new user would: `make run`, then calls over the network.

One server process started by ``make run`` on a fresh SQLite file (the embedded defaults:
offline recogniser, espeak-ng, rules, in-memory channel layer, eager Celery), driven in
real time by the call simulator with the espeak-ng caller voice. The README's demo call
first, with the README's own command; then many calls in a row on the same process (the
recogniser must not go deaf after the first call); then several at once. After each group,
staff must find every call finished, a follow-up for any call that did not complete, and
``voice_active_calls`` back where it was.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live.expect import assert_none, call_problems, staff_view_problems
from tests.live.harness import DEMO_SCENARIO, PYTHON, REPO, EmbeddedServer

pytestmark = pytest.mark.live

QUICK = str(Path(__file__).parent / "scenarios" / "quick_book_then_person.toml")
"""Short, and still needs the recogniser (the caller's words over the greeting)."""
IN_A_ROW = 10
AT_ONCE = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(tmp_path_factory.mktemp("embedded")) as deployment:
        yield deployment


def test_the_readmes_demo_call_goes_as_its_scenario_says(server: EmbeddedServer) -> None:
    """`manage.py simulate_call <demo>` exactly as the README prints it, against `make run`."""
    before = server.active_calls()
    done = subprocess.run(  # noqa: S603 (our own command line)
        [PYTHON, "manage.py", "simulate_call", DEMO_SCENARIO, "--base-url", server.base_url],
        env=server.caller_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"simulate_call {DEMO_SCENARIO} failed:\n{done.stdout}"
    assert "The call went as the scenario says." in done.stdout
    assert_none(staff_view_problems(server, [], active_before=before))


def test_calls_in_a_row_on_one_process_are_each_understood(server: EmbeddedServer) -> None:
    """The same words on the tenth call of a process as on the first (it once went deaf)."""
    pid = server.server_pid()
    before = server.active_calls()
    records = server.place_calls([QUICK] * IN_A_ROW, sequential=True)
    assert_none(call_problems(records))
    assert server.server_pid() == pid, "the server process was replaced mid-test"
    assert_none(staff_view_problems(server, records, active_before=before))


def test_calls_at_once_each_end_as_their_scenario_says(server: EmbeddedServer) -> None:
    before = server.active_calls()
    records = server.place_calls([QUICK] * AT_ONCE, stagger_s=0.3)
    assert_none(call_problems(records))
    assert_none(staff_view_problems(server, records, active_before=before))
