"""The deployment every live test drives: calls, rows, metrics, webhooks, signals, logs.

See :mod:`tests.live.harness` for the public API and how the two deployments are built.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from clinic.config import KNOWN_VARIABLES, OWN_PREFIXES
from tests.live.processes import (
    HarnessError,
    ManagedProcess,
    alive,
    descendants,
    dump_logs,
    http_get,
    listening_pid,
)

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CALL_TIMEOUT_S = 600.0
"""Ceiling for one batch of calls (a stuck caller process, never a pace expectation)."""
ALWAYS_OPEN = "mon-sun 00:00-23:59"
"""Opening hours for live servers, so that transfer scenarios behave the same at any hour."""
FRONT_DESK = "+16175550000"


RUNNING: list[Deployment] = []
"""Deployments started and not yet stopped (the live conftest prints their logs on failure)."""

Rows = dict[str, Any]
CallRecord = dict[str, Any]


def readme_demo_scenario() -> str:
    """The scenario the README tells a new user to try (``simulate_call <slug>``)."""
    text = (REPO / "README.md").read_text()
    section = text.split("Try a whole call", 1)[-1]
    match = re.search(r"manage\.py simulate_call (\w+)", section)
    if match is None:
        raise HarnessError("README.md shows no `manage.py simulate_call <scenario>` command")
    return match.group(1)


DEMO_SCENARIO = readme_demo_scenario()
"""The README's demo scenario: the one constant the live tests read it from."""


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any of the project's settings, plus ``extra``.

    CI's second pass exports ``DATABASE_URL`` and ``REDIS_URL``; a deployment under test
    gets only what its harness gives it.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in KNOWN_VARIABLES and not key.startswith(OWN_PREFIXES)
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def makefile_command(target: str, **variables: str) -> list[str]:
    """The last command of a Makefile target, as ``make -n`` prints it (not run).

    Live processes run the Makefile's own commands, so that a change of server command in
    the Makefile (``daphne`` to ``manage.py serve``) is what the live tests run too.
    """
    assigned = [f"{name}={value}" for name, value in variables.items()]
    printed = subprocess.run(
        ["make", "-s", "-n", target, *assigned],  # noqa: S607 (make from PATH, like a user)
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    lines = [line.strip() for line in printed.splitlines() if line.strip()]
    if not lines:
        raise HarnessError(f"`make -n {target}` printed no command")
    return shlex.split(lines[-1])


class CallBatch:
    """Calls being placed by one :mod:`tests.live.caller` process."""

    def __init__(self, deployment: Deployment, scenarios: Sequence[str], argv: list[str]) -> None:
        self.scenarios = list(scenarios)
        self._lines: list[dict[str, Any]] = []
        self._prepared = threading.Event()
        self._log = deployment.tmp / f"caller-{secrets.token_hex(3)}.log"
        self._stderr = self._log.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 (argv built by the harness)
            argv,
            env=deployment.caller_env(),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="caller-stdout", daemon=True)
        self._reader.start()
        deployment.batches.append(self)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not line.startswith("{"):
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("live") == "prepared":
                self._prepared.set()
            elif message.get("live") == "call":
                self._lines.append(message)

    def wait_prepared(self, timeout_s: float = 120.0) -> None:
        """Block until the caller has created its patients and starts dialling."""
        if not self._prepared.wait(timeout_s):
            raise HarnessError(f"the caller did not start within {timeout_s:g} s: {self.stderr()}")

    def results(self, timeout_s: float = CALL_TIMEOUT_S) -> list[CallRecord]:
        """One record per scenario, in order (see :mod:`tests.live.caller` for the keys)."""
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError(f"calls still running after {timeout_s:g} s") from None
        self._reader.join(timeout=10)
        self._stderr.close()
        if code != 0 or len(self._lines) != len(self.scenarios):
            raise HarnessError(
                f"the caller exited {code} with {len(self._lines)} of {len(self.scenarios)} "
                f"results: {self.stderr()}"
            )
        return list(self._lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stderr(self, lines: int = 30) -> str:
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Deployment:
    """What every live deployment offers: calls, rows, metrics, webhooks, signals, logs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.processes: list[ManagedProcess] = []
        self.batches: list[CallBatch] = []
        self.env: dict[str, str] = {}
        self.base_url = ""
        self.auth_token = ""
        self.public_base_url = ""

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every call batch and process, newest first (nginx before the servers)."""
        for batch in self.batches:
            batch.kill()
        for managed in reversed(self.processes):
            managed.stop()

    def __enter__(self) -> Self:
        RUNNING.append(self)
        try:
            self.start()
        except BaseException:
            sys.stderr.write(self.dump_logs())
            self.stop()
            RUNNING.remove(self)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            sys.stderr.write(self.dump_logs())
        self.stop()
        if self in RUNNING:
            RUNNING.remove(self)

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> ManagedProcess:
        managed = ManagedProcess(name, argv, env=env, cwd=REPO, log_dir=self.tmp)
        self.processes.append(managed)
        return managed

    def dump_logs(self, lines: int = 60) -> str:
        parts = [dump_logs(self.processes, lines)]
        parts += [f"===== caller\n{batch.stderr(lines)}" for batch in self.batches]
        return "\n".join(parts) + "\n"

    # --- servers --------------------------------------------------------------------------

    def server_ports(self) -> dict[str, int]:
        """Server name -> the loopback port it listens on directly (not through a proxy)."""
        raise NotImplementedError

    def server_pid(self, name: str | None = None) -> int:
        """The process that listens for server ``name`` (the only one when None)."""
        port = self._port(name)
        candidates: list[int] = []
        for managed in self.processes:
            candidates += [managed.pid, *descendants(managed.pid)]
        pid = listening_pid(port, candidates)
        if pid is None:
            raise HarnessError(f"no process of this deployment listens on {port}")
        return pid

    def sigterm(self, name: str | None = None) -> int:
        """SIGTERM the server process (what a process manager sends to stop it); its pid."""
        pid = self.server_pid(name)
        os.kill(pid, signal.SIGTERM)
        return pid

    def kill9(self, name: str | None = None) -> int:
        """SIGKILL the server process (a crash or power loss for that process); its pid."""
        pid = self.server_pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def _port(self, name: str | None) -> int:
        ports = self.server_ports()
        if name is None:
            if len(ports) != 1:
                raise HarnessError(f"name one of the servers {sorted(ports)}")
            return next(iter(ports.values()))
        return ports[name]

    def server_url(self, name: str | None = None) -> str:
        return f"http://127.0.0.1:{self._port(name)}"

    def metrics(self, name: str | None = None) -> str:
        status, body = http_get(self.server_url(name) + "/metrics")
        if status != 200:
            raise HarnessError(f"/metrics answered {status}")
        return body

    def metric_value(
        self, metric: str, labels: Mapping[str, str] | None = None, server: str | None = None
    ) -> float:
        """A sample's value from a server's ``/metrics`` (summed over samples matching
        ``labels``); 0 when the metric has no matching sample yet."""
        total = 0.0
        wanted = dict(labels or {})
        for family in text_string_to_metric_families(self.metrics(server)):
            for sample in family.samples:
                if sample.name == metric and all(
                    sample.labels.get(k) == v for k, v in wanted.items()
                ):
                    total += float(sample.value)
        return total

    def active_calls(self) -> float:
        """``voice_active_calls`` summed over every server process."""
        servers = self.server_ports()
        return sum(self.metric_value("voice_active_calls", server=name) for name in servers)

    # --- calls and rows -------------------------------------------------------------------

    def caller_env(self) -> dict[str, str]:
        """The environment of the caller and the probe (the deployment's, direct database)."""
        return dict(self.env)

    def start_calls(
        self,
        scenarios: Sequence[str],
        *,
        stagger_s: float = 0.5,
        reply_timeout_s: float = 30.0,
        hangup_timeout_s: float = 10.0,
        barge_in: bool = False,
        sequential: bool = False,
        distinct_callers: bool = True,
    ) -> CallBatch:
        """Start placing calls (all at once, ``stagger_s`` apart); returns at once.

        ``barge_in``: every spoken line talks over the agent's prompt (a caller who knows
        what they want and does not wait for the greeting to end). ``sequential``: one
        call after another, from one caller process. ``distinct_callers``: each call from
        its own number (the product rate-limits calls per number; see :mod:`caller`).
        """
        argv = [
            PYTHON,
            "-m",
            "tests.live.caller",
            "--base-url",
            self.base_url,
            "--stagger",
            str(stagger_s),
            "--reply-timeout",
            str(reply_timeout_s),
            "--hangup-timeout",
            str(hangup_timeout_s),
            *(["--barge-in"] if barge_in else []),
            *(["--sequential"] if sequential else []),
            *(["--distinct-callers"] if distinct_callers else []),
            *scenarios,
        ]
        return CallBatch(self, scenarios, argv)

    def place_calls(self, scenarios: Sequence[str], **options: Any) -> list[CallRecord]:
        """Place calls (concurrently when several) and return their records when all ended."""
        return self.start_calls(scenarios, **options).results()

    def place_call(self, scenario: str, **options: Any) -> CallRecord:
        [record] = self.place_calls([scenario], **options)
        return record

    def rows(self, phrases: Sequence[str] = ()) -> Rows:
        """Calls, follow-ups and confirmations as staff would find them (:mod:`probe`);
        each call's ``agent_phrases`` lists which of ``phrases`` the agent said."""
        asked = [argument for phrase in phrases for argument in ("--phrase", phrase)]
        done = subprocess.run(  # noqa: S603 (argv built by the harness)
            [PYTHON, "-m", "tests.live.probe", *asked],
            env=self.caller_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for line in done.stdout.splitlines():
            if line.startswith('{"calls"'):
                parsed: Rows = json.loads(line)
                return parsed
        raise HarnessError(f"the probe failed ({done.returncode}): {done.stderr[-2000:]}")

    def wait_for_rows(
        self,
        condition: Callable[[Rows], bool],
        *,
        timeout_s: float = 60.0,
        what: str = "rows",
        phrases: Sequence[str] = (),
    ) -> Rows:
        """Poll :meth:`rows` until ``condition`` holds; the rows, or HarnessError with them."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.rows(phrases)
            if condition(rows):
                return rows
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out waiting for {what}; rows: {json.dumps(rows)}")
            time.sleep(1.0)

    def post_answer(
        self, *, call_sid: str | None = None, caller: str = "+16175550199", timeout_s: float = 15
    ) -> tuple[int, str]:
        """POST a signed ``/voice/answer`` like Twilio; (HTTP status, body)."""
        params = {
            "CallSid": call_sid or "CA" + secrets.token_hex(16),
            "AccountSid": self.env.get("TWILIO_ACCOUNT_SID") or "AC" + secrets.token_hex(16),
            "From": caller,
            "To": "+16175550100",
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        url = self.public_base_url + "/voice/answer"
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        request = urllib.request.Request(  # noqa: S310 (our own loopback URL)
            self.base_url + "/voice/answer",
            data=urllib.parse.urlencode(params).encode("ascii"),
            headers={"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"},
            method="POST",
        )
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=self.ssl_context()),
        )
        try:
            with opener.open(request, timeout=timeout_s) as response:
                return int(response.status), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode("utf-8", "replace")

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context()


def gone(pid: int) -> bool:
    """The process has exited (or is a zombie waiting for its parent)."""
    return not alive(pid)
