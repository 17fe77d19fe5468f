"""Live-test plumbing: the shared production topology, and every process's log printed when a
live test fails."""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator

import pytest

from tests.live.deployment import RUNNING
from tests.live.topology import ProductionTopology


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"live_report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def dump_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """On failure, the tail of every running deployment's logs goes to the test's report."""
    yield
    report = getattr(request.node, "live_report_call", None)
    if report is not None and report.failed:
        for deployment in list(RUNNING):
            sys.stderr.write(deployment.dump_logs(lines=80))


@pytest.fixture(scope="session")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionTopology]:
    """One production topology for the session's production-topology tests (it takes half a
    minute to start). Fault tests put back what they break (Redis restarted, the database
    link restored) and assert that the next call works, so the tests after them see a
    healthy deployment, or fail saying why."""
    with ProductionTopology(tmp_path_factory.mktemp("production")) as deployment:
        yield deployment
