"""The life of this server process: who it is, and whether it is stopping.

A process told to stop (SIGTERM) drains: it refuses new media streams, sends new callers to
the front desk, hands its live calls over, and only then exits. The flag lives here, in the
clinic package, so that everything that must answer differently while draining (readiness,
the answer webhook, the media-stream guard) can read it without importing the phone line.

The process identity is written on every call a process serves (``Call.served_by``), so that
staff and the sweep can tell which process held a call when it went quiet. Host, pid and
start time together are unique even when a restarted container reuses pid 1.
"""

from __future__ import annotations

import os
import socket
import threading
import time

_draining = threading.Event()
_identity: tuple[int, str] | None = None


def draining() -> bool:
    """True once this process has been told to stop (readiness says 503 from then on)."""
    return _draining.is_set()


def begin_draining() -> None:
    """Mark the process as stopping. Idempotent; there is no way back short of a restart."""
    _draining.set()


def reset_for_tests() -> None:
    """Clear the flag. Only tests call this: a real process never stops draining."""
    _draining.clear()


def process_identity() -> str:
    """``host:pid:start`` of this process, at most 200 characters (``Call.served_by``).

    Computed once per process; a forked child (a pool worker) gets its own.
    """
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        started = int(time.time())
        _identity = (pid, f"{socket.gethostname()[:150]}:{pid}:{started}")
    return _identity[1]
