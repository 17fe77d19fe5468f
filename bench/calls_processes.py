"""The processes of ``python -m bench.calls``: starting and stopping the fakes and Daphne,
reading their CPU time, and preparing the throwaway database they share.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.calls_env import AUTH_TOKEN, BENCH_DIR, DATABASE_URL, DEEPGRAM_KEY
from clinic.config import KNOWN_VARIABLES


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def start_child(*arguments: str, options: argparse.Namespace) -> tuple[Any, int]:
    command = [sys.executable, "-m", "bench.calls", *arguments]
    command += ["--stt-latency", str(options.stt_latency), "--speed", str(options.speed)]
    command += ["--speak-ms-per-character", str(options.speak_ms_per_character)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        line = (await process.stdout.readline()).decode()
    if not line.startswith("ready "):
        raise RuntimeError(f"{arguments[1]} did not start")
    return process, int(line.split()[1])


async def stop_child(process: Any) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


BENCH_SETTINGS = """\
# Written by bench.calls: the clinic's settings with the answer webhook's flood guard off.
# A load test is one address placing calls faster than a clinic's callers ever would.
from clinic.settings import *  # noqa: F403

VOICE_ANSWER_IP_RATE = ""
VOICE_ANSWER_CALLER_RATE = ""
"""


def daphne_environment(port: int, deepgram_port: int) -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in KNOWN_VARIABLES and name != "DEBUG"
    }
    (BENCH_DIR / "bench_calls_settings.py").write_text(BENCH_SETTINGS)
    paths = [str(BENCH_DIR), str(Path.cwd()), environment.get("PYTHONPATH", "")]
    environment.update(
        PYTHONPATH=os.pathsep.join(path for path in paths if path),
        DJANGO_SETTINGS_MODULE="bench_calls_settings",
        DATABASE_URL=DATABASE_URL,
        LOG_LEVEL="warning",
        STT_PROVIDER="deepgram",
        TTS_PROVIDER="deepgram",
        NLU_PROVIDER="rules",
        DEEPGRAM_API_KEY=DEEPGRAM_KEY,
        DEEPGRAM_BASE_URL=f"http://127.0.0.1:{deepgram_port}",
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
    )
    return environment


async def start_daphne(port: int, deepgram_port: int) -> Any:
    log_file = (BENCH_DIR / "daphne.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("daphne")),
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "clinic.asgi:application",
        env=daphne_environment(port, deepgram_port),
        stdout=log_file,
        stderr=log_file,
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.returncode is not None:
            break
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{port}/health/live"
            with await asyncio.to_thread(opener.open, url, timeout=1) as response:
                if response.status == 200:
                    return process
        await asyncio.sleep(0.2)
    await stop_child(process)
    tail = (BENCH_DIR / "daphne.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"Daphne did not start:\n{tail}")


def prepare_database() -> None:
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed_demo", stdout=io.StringIO())
    connections.close_all()
