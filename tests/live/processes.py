"""Real processes for the live tests: started on free loopback ports, logs kept in files.

Each :class:`ManagedProcess` runs in its own session (process group), writes stdout and
stderr to one log file under the harness's temporary directory, and is stopped with SIGTERM
then SIGKILL after a timeout, group and all, so that no server, worker or decoder child
outlives a test. When a test fails, :func:`dump_logs` prints the tail of every log so that
the failure report shows what the processes said.

Linux only (``/proc`` for the process tree), which is where the product is deployed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

START_TIMEOUT_S = 90.0
"""How long a process may take to listen (``make run`` migrates and seeds first)."""
STOP_TIMEOUT_S = 30.0
"""SIGTERM to SIGKILL: a draining server may take its grace period to exit."""


class HarnessError(RuntimeError):
    """A live process could not be started or did not behave; the message says which."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.2, what: str
) -> None:
    """Poll ``condition`` until it holds; :class:`HarnessError` naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise HarnessError(f"timed out after {timeout_s:g} s waiting for {what}")


def http_get(url: str, *, timeout_s: float = 5.0) -> tuple[int, str]:
    """GET ``url`` without proxies; (status, body), status 0 when nothing answered."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from ``/proc``)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before their children."""
    out: list[int] = []
    queue = [pid]
    while queue:
        for child in children(queue.pop(0)):
            out.append(child)
            queue.append(child)
    return out


def listening_pid(port: int, candidates: Sequence[int]) -> int | None:
    """Which of ``candidates`` holds the listening socket on ``port`` (``/proc/net/tcp``)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                # local address is hex ip:port; state 0A is LISTEN
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    for pid in candidates:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        return pid
    return None


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (0 when it is gone)."""
    with contextlib.suppress(OSError):
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    return 0


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


class ManagedProcess:
    """One started process (and its process group), its log file and how to stop it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_dir: Path,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 (argv built by the harness)
            self.argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def tree(self) -> list[int]:
        """This process and everything below it that is still alive."""
        return [pid for pid in [self.pid, *descendants(self.pid)] if alive(pid)]

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the process group, SIGKILL what is left after ``timeout_s``; exit code."""
        pids = self.tree()
        if self.running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill_all(pids)
        self._log.close()
        return self.process.returncode

    def kill_all(self, pids: Sequence[int] = ()) -> None:
        """SIGKILL the group and any listed process still alive (children that left it)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def dump_logs(processes: Sequence[ManagedProcess], lines: int = 60) -> str:
    """The tail of every process's log, headed by its name and state (for failure reports)."""
    parts = []
    for managed in processes:
        state = "running" if managed.running() else f"exited {managed.process.returncode}"
        parts.append(f"===== {managed.name} ({state}) {managed.log_path}\n{managed.tail(lines)}")
    return "\n".join(parts)
