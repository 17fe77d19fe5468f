"""Calls that last, on the production topology, the way it is deployed.

PostgreSQL, the Redis channel layer and broker, a Celery worker and beat, two server
processes behind nginx terminating TLS (``APP_ENV=production``, signatures checked against
the public ``https://`` URL). The answer webhook is served by server ``a`` and every media
stream lands on server ``b``. Eight callers at once each take well over a minute, with
stretches of twenty seconds and more in which they say nothing: the shape of call that
redis-py 8's 5 s default socket timeout used to close with 1011 after a few seconds.
"""

from __future__ import annotations

import pytest

from tests.live.expect import assert_none, call_problems, caller_idle_stretches, staff_view_problems
from tests.live.harness import ProductionTopology

pytestmark = pytest.mark.production_topology

LONG_CALL = "long_call_with_pauses"
AT_ONCE = 8
MIN_CALL_SECONDS = 60.0
MIN_IDLE_SECONDS = 20.0


def test_long_calls_at_once_behind_nginx_all_end_with_the_right_rows(
    topology: ProductionTopology,
) -> None:
    before = topology.active_calls()
    calls_before = {
        name: topology.metric_value("voice_calls_total", server=name) for name in ("a", "b")
    }

    records = topology.place_calls([LONG_CALL] * AT_ONCE, stagger_s=1.0)

    assert_none(call_problems(records))
    for record in records:
        assert record["close_code"] != 1011, record
        assert record["duration_s"] >= MIN_CALL_SECONDS, record["duration_s"]
        assert max(caller_idle_stretches(record)) >= MIN_IDLE_SECONDS, record["lines"]
    assert_none(staff_view_problems(topology, records, active_before=before))
    # The webhook went to server a and every stream to server b, through nginx.
    finished = {
        name: topology.metric_value("voice_calls_total", server=name) - calls_before[name]
        for name in ("a", "b")
    }
    assert finished == {"a": 0, "b": AT_ONCE}
