"""The product as deployed, on real processes, for live tests, fault tests and the soak.

Two deployments, each started on free loopback ports with every process's log in a file
under a temporary directory (:meth:`Deployment.dump_logs` prints them when a test fails):

:class:`EmbeddedServer`
    Exactly the README's run path: ``make run HOST=127.0.0.1 PORT=<free>`` on a fresh SQLite
    file (``DATABASE_URL``), so the test follows whatever server command the Makefile's
    ``run`` target has. The only other settings: opening hours always open and a front-desk
    number, so that transfer scenarios behave the same at any hour of a CI run.

:class:`ProductionTopology`
    ``APP_ENV=production`` with throwaway secrets: a fresh PostgreSQL database
    ``live_<random>`` on 127.0.0.1:5432 (reached by the product through a :class:`TcpProxy`
    the test can cut), a throwaway ``redis-server`` on a free port (channel layer, cache and
    Celery broker; :meth:`stop_redis` / :meth:`start_redis` without touching the machine's
    Redis), a Celery worker and beat (the Makefile's ``worker`` and ``beat`` commands), two
    servers (the Makefile's ``run`` server command) and nginx terminating TLS with a
    throwaway certificate and proxying HTTP and WebSockets with ``X-Forwarded-For/Proto/
    Host``. ``PUBLIC_BASE_URL`` is nginx's ``https://`` origin, so Twilio signatures are
    checked against the public URL; ``/voice/answer`` (and everything else) goes to server
    ``a``, ``/voice/stream/`` to server ``b``. Booking confirmations go to an SMTP sink, and
    the REST request that hangs a call up to a loopback Twilio (:class:`TwilioRest`). It
    runs Whisper (``topology.TOPOLOGY_RECOGNISER``: these tests are about the shape of
    the deployment; the embedded tests run the default recogniser).

Calls are placed by :mod:`tests.live.caller` in its own process with the deployment's
environment (the simulator's espeak-ng voice, real-time pacing, the product's own timeouts),
and rows are read by :mod:`tests.live.probe` the same way, so the test process never shares
a database connection or settings with the product. Typical use::

    with EmbeddedServer(tmp_path) as server:
        call = server.place_call("person_requested")
        assert call["problems"] == []

    with ProductionTopology(tmp_path) as topology:
        batch = topology.start_calls(["long_call_with_pauses"] * 8)
        batch.wait_prepared()
        topology.stop_redis(); time.sleep(10); topology.start_redis()
        results = batch.results()
        topology.wait_for_rows(lambda rows: all(c["finished"] for c in rows["calls"]))

Each call comes from its own caller number unless ``distinct_callers=False`` (the product
limits calls per number, 5 in 10 minutes; returning patients get a copy per number).
Records (:mod:`tests.live.caller`) carry the scenario check's ``problems``, the close code,
``server_closed``, the ``<Dial>`` number, what was heard and line timings;
:mod:`tests.live.expect` turns records and rows into lists of problems (``call_problems``,
``staff_view_problems``: rows finished, follow-ups, the active-calls gauge).

Also: :meth:`Deployment.rows` (``phrases=`` says which fixed prompts each call's agent
said), :meth:`Deployment.wait_for_rows`, :meth:`Deployment.metric_value` and
:meth:`Deployment.active_calls` (a server's ``/metrics``), :meth:`Deployment.post_answer`
(a signed ``/voice/answer``), :meth:`ProductionTopology.restart_server`.

Faults: :meth:`ProductionTopology.stop_redis` / :meth:`start_redis`,
:meth:`ProductionTopology.cut_database` / :meth:`restore_database`, and on either deployment
:meth:`Deployment.sigterm` / :meth:`Deployment.kill9` of a server process. The session
fixture ``topology`` (``tests/live/conftest.py``) shares one production topology between
tests.
"""

from __future__ import annotations

from pathlib import Path

from tests.live.deployment import (
    ALWAYS_OPEN,
    CALL_TIMEOUT_S,
    DEMO_SCENARIO,
    FRONT_DESK,
    PYTHON,
    REPO,
    CallBatch,
    CallRecord,
    Deployment,
    Rows,
    clean_environment,
    gone,
    makefile_command,
)
from tests.live.netfaults import SmtpSink, TcpProxy, TwilioRest
from tests.live.processes import (
    START_TIMEOUT_S,
    HarnessError,
    ManagedProcess,
    free_port,
    http_get,
    wait_until,
)
from tests.live.topology import ProductionTopology, ensure_nginx, ensure_postgres

__all__ = [
    "CALL_TIMEOUT_S",
    "DEMO_SCENARIO",
    "FRONT_DESK",
    "PYTHON",
    "REPO",
    "CallBatch",
    "CallRecord",
    "Deployment",
    "EmbeddedServer",
    "HarnessError",
    "ProductionTopology",
    "Rows",
    "SmtpSink",
    "TcpProxy",
    "TwilioRest",
    "ensure_nginx",
    "ensure_postgres",
    "gone",
    "makefile_command",
]


class EmbeddedServer(Deployment):
    """``make run HOST=127.0.0.1 PORT=<free>`` on a fresh SQLite file: the README's path."""

    def __init__(self, tmp: Path, **extra_env: str) -> None:
        super().__init__(tmp)
        self.port = free_port()
        self.env = clean_environment(
            DATABASE_URL=f"sqlite:///{tmp / 'clinic.sqlite3'}",
            CLINIC_OPENING_HOURS=ALWAYS_OPEN,
            FRONT_DESK_NUMBER=FRONT_DESK,
            **extra_env,
        )
        self.base_url = f"http://127.0.0.1:{self.port}"
        # The development defaults the server and the caller both fall back to.
        from clinic.config import DEV_TWILIO_AUTH_TOKEN

        self.auth_token = extra_env.get("TWILIO_AUTH_TOKEN", DEV_TWILIO_AUTH_TOKEN)
        self.public_base_url = extra_env.get("PUBLIC_BASE_URL", "http://localhost:8000")
        self.make: ManagedProcess | None = None

    def start(self) -> None:
        self.make = self.spawn(
            "make-run",
            ["make", "run", "HOST=127.0.0.1", f"PORT={self.port}"],
            self.env,
        )
        make = self.make

        def up() -> bool:
            if not make.running():
                raise HarnessError(f"`make run` exited {make.process.returncode}")
            return http_get(self.base_url + "/health/live", timeout_s=2)[0] == 200

        wait_until(up, timeout_s=START_TIMEOUT_S, what="`make run` to serve /health/live")

    def server_ports(self) -> dict[str, int]:
        return {"server": self.port}
