"""Fixtures shared by every test: loopback services started on demand."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ThrowawayRedis:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A private redis-server on a spare loopback port, stopped by the test or at teardown."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server must be installed (Debian package redis-server)"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = ThrowawayRedis(port, process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        server.stop()
        raise RuntimeError("throwaway redis-server did not start")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Staff users are created in many tests; PBKDF2's deliberate slowness is not under test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def closed_circuit_breakers() -> Iterator[None]:
    """Each test starts with the hosted providers' breakers closed: they live for a process,
    and one test's outage must not send the next test's calls to the fallback."""
    from clinic.circuit import reset_breakers

    reset_breakers()
    yield
    reset_breakers()
