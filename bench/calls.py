"""Concurrent calls against one Daphne process: latency the server adds, CPU per call, and how
many calls it carries before the caller hears gaps.

Run:  .venv/bin/python -m bench.calls                 (levels 1 2 4 8 16, about 4 minutes)
      .venv/bin/python -m bench.calls --levels 1 4 --speed 2

What runs (all on 127.0.0.1, in processes of their own so that none steals the other's CPU):

- Daphne serving ``clinic.asgi:application`` on a free port, with its own SQLite file, Deepgram
  for STT and TTS and the rules engine for understanding;
- the loopback Deepgram of ``tests/fakes/deepgram_server.py`` at fixed latencies: the final
  transcript comes ``--stt-latency`` after the 300 ms endpointing window; speech starts
  streaming at once (no first-byte delay, so that prompts served from the server's prompt
  cache and prompts synthesised live cost the fake the same and nothing is subtracted that
  did not happen);
- a bare relay: an aiohttp server that answers the same webhook and the same message pattern
  (a greeting, then per caller utterance the same amount of audio the server sent, after the
  same fixed delay, each followed by a mark) with no speech, database or conversation. It is
  the floor: what the transport, the bench's own callers and this machine cost;
- N callers (:class:`voice.simulator.TwilioCaller`, tone voice) in this process, started
  100 ms apart, each playing a short intake and hanging up.

Figures per level of N: server-added latency per turn, i.e. end of the caller's speech to
the first agent frame minus the fakes' fixed part (endpointing + STT latency), at p50, p95 and
p99; CPU seconds per call of the Daphne (or relay) process, from /proc; late frames: an agent
frame is late when it arrives after its playback deadline (the utterance's first frame's
arrival + 20 ms per frame before it, plus ``--tolerance``), i.e. when a caller would have heard
a gap. The largest N without a late frame is reported for both, and the server/relay ratios.
Synthesis streams faster than real time, so an overloaded server shows first as slower
answers, not as late frames: the largest N whose server-added p95 stays under
``--latency-budget`` is reported too.

Daphne runs with the answer webhook's rate limits off (a settings module written to the
bench's temporary directory): one address placing dozens of calls a minute is the flood the
limits exist to refuse. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import django

# Everything (this process, Daphne, the fakes) uses a throwaway SQLite file: your data is
# never touched. Children inherit the directory through the environment.
_OWN_DIR = "BENCH_CALLS_DIR" not in os.environ
if _OWN_DIR:
    os.environ["BENCH_CALLS_DIR"] = tempfile.mkdtemp(prefix="bench-calls-")
BENCH_DIR = Path(os.environ["BENCH_CALLS_DIR"])
DATABASE_URL = f"sqlite:///{BENCH_DIR / 'bench.sqlite3'}"
AUTH_TOKEN = "bench-twilio-auth-token"  # noqa: S105 (the throwaway bench server's)
DEEPGRAM_KEY = "bench-deepgram-key"
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
os.environ["LOG_LEVEL"] = "warning"
django.setup()

from aiohttp import web  # noqa: E402

from clinic.config import KNOWN_VARIABLES  # noqa: E402
from intake.scenario import Line, Scenario  # noqa: E402
from tests.fakes.deepgram_server import FakeDeepgram  # noqa: E402
from voice import twilio_wire, twiml  # noqa: E402
from voice.simulator import (  # noqa: E402
    SILENCE_FRAME,
    CallResult,
    TwilioCaller,
    tone_frames,
)
from voice.stt.deepgram import DeepgramSttOptions  # noqa: E402

LEVELS = (1, 2, 4, 8, 16)
ENDPOINTING_MS = DeepgramSttOptions().endpointing_ms
START_GAP_S = 0.1
LEVEL_TIMEOUT_S = 150.0

BENCH_SCENARIO = Scenario(
    name="bench: a new patient starts intake and hangs up",
    slug="bench",
    caller_number="+16175550000",
    lines=[
        Line(caller="I'd like to book an appointment"),
        Line(caller="no"),
        Line(caller="Priya Raman"),
        Line(caller="yes"),
        Line(caller="august 9 1988"),
        Line(hangup=True),
    ],
    expect={},
)
SPOKEN = [line.caller for line in BENCH_SCENARIO.lines if line.caller]


# --- the fakes, each run in a child process ("--serve ...") ---------------------------------


class PerCallDeepgram(FakeDeepgram):
    """The loopback Deepgram with the scenario's script per connection, not per server.

    ``FakeDeepgram`` keeps one queue of transcripts for every connection; with concurrent
    calls, whichever call finishes an utterance first would take another call's words. Each
    ``/v1/listen`` connection is handled in one task, so the queue is kept per task: every
    call hears the scenario from its first line. (Better as an option of the fake itself.)
    """

    def __init__(self, *, lines: Sequence[str], **kwargs: Any) -> None:
        self._lines = list(lines)
        self._scripts: weakref.WeakKeyDictionary[asyncio.Task[Any], deque[str]] = (
            weakref.WeakKeyDictionary()
        )
        super().__init__(**kwargs)

    @property
    def script(self) -> deque[str]:
        task = asyncio.current_task()
        if task is None:
            return deque()
        if task not in self._scripts:
            self._scripts[task] = deque(self._lines)
        return self._scripts[task]

    @script.setter
    def script(self, value: Any) -> None:
        """The base class's single script is ignored: each connection gets its own."""


class Relay:
    """The reference: Twilio's message pattern answered with no processing behind it."""

    def __init__(self, *, greeting_ms: float, reply_ms: Sequence[float], delay_s: float) -> None:
        self.greeting_frames = int(greeting_ms // 20)
        self.reply_frames = [int(ms // 20) for ms in reply_ms]
        self.delay_s = delay_s
        self.silence = base64.b64encode(SILENCE_FRAME).decode("ascii")
        self.frame = tone_frames("relay")[0]
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/voice/answer", self.answer)
        app.router.add_get("/voice/stream/", self.stream)
        return app

    async def answer(self, request: web.Request) -> web.Response:
        document = twiml.answer_with_stream(
            stream_url=f"ws://127.0.0.1:{self.port}/voice/stream/", token="relay"
        )
        return web.Response(text=document, content_type="text/xml")

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        stream_sid = ""
        answers = 0
        in_speech = False
        pending: set[asyncio.Task[None]] = set()

        async def say(frames: int, name: str, delay_s: float) -> None:
            await asyncio.sleep(delay_s)
            for _ in range(frames):
                await ws.send_str(twilio_wire.media_message(stream_sid, self.frame))
            await ws.send_str(twilio_wire.mark_message(stream_sid, name))

        def later(frames: int, name: str, delay_s: float) -> None:
            task = asyncio.create_task(say(frames, name, delay_s))
            pending.add(task)
            task.add_done_callback(pending.discard)

        async for message in ws:
            data = json.loads(message.data)
            event = data.get("event")
            if event == "start":
                stream_sid = data["start"]["streamSid"]
                later(self.greeting_frames, "greeting", 0.0)
            elif event == "media":
                # Speech or not by comparing text: the relay does not even decode the audio.
                voiced = data["media"]["payload"] != self.silence
                if voiced:
                    in_speech = True
                elif in_speech:
                    in_speech = False
                    frames = self.reply_frames[min(answers, len(self.reply_frames) - 1)]
                    answers += 1
                    later(frames, f"u{answers}", self.delay_s)
            elif event == "stop":
                break
        for task in list(pending):
            task.cancel()
        await ws.close()
        return ws


async def serve(kind: str, options: argparse.Namespace) -> None:
    """Run one fake until SIGTERM; print ``ready <port>`` once listening."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if kind == "fake-deepgram":
        async with PerCallDeepgram(
            lines=SPOKEN,
            api_key=DEEPGRAM_KEY,
            latency_s=options.stt_latency,
            speak_first_byte_s=0.0,
            speak_ms_per_character=options.speak_ms_per_character,
        ) as fake:
            print(f"ready {fake.port}", flush=True)
            await stop.wait()
        return
    relay = Relay(
        greeting_ms=options.greeting_ms,
        reply_ms=[float(ms) for ms in options.reply_ms.split(",")],
        delay_s=fixed_latency_s(options),
    )
    runner = web.AppRunner(relay.app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    relay.port = int(runner.addresses[0][1])
    print(f"ready {relay.port}", flush=True)
    await stop.wait()
    await runner.cleanup()


# --- processes ---------------------------------------------------------------------------------


def fixed_latency_s(options: argparse.Namespace) -> float:
    """What the fakes add to every turn: the endpointing window (audio time) and STT latency."""
    return float(ENDPOINTING_MS / 1000 / options.speed + options.stt_latency)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


# --- one level -------------------------------------------------------------------------------


@dataclasses.dataclass
class Level:
    n: int
    calls_ok: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    added_ms: list[float] = dataclasses.field(default_factory=list)
    reply_ms: list[float] = dataclasses.field(default_factory=list)
    frames: int = 0
    late_frames: int = 0
    max_lateness_ms: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    call_s: float = 0.0
    """Mean length of one call (wall clock)."""

    @property
    def cpu_per_call(self) -> float:
        return self.cpu_s / max(1, self.n)

    @property
    def smooth(self) -> bool:
        return self.late_frames == 0 and not self.failures


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def one_call(
    base_url: str, number: int, delay_s: float, options: argparse.Namespace
) -> CallResult:
    await asyncio.sleep(delay_s)
    scenario = dataclasses.replace(BENCH_SCENARIO, caller_number=f"+1617555{number:04d}")
    return await TwilioCaller.over_network(
        base_url,
        scenario,
        speed=options.speed,
        voice="tone",
        auth_token=AUTH_TOKEN,
        account_sid="",
        public_base_url=base_url,
        reply_timeout_s=20.0,
        hangup_timeout_s=5.0,
        late_tolerance_s=options.tolerance,
        load_from_db=False,
    )


async def run_level(
    base_url: str, pid: int, n: int, first_number: int, options: argparse.Namespace
) -> tuple[Level, list[CallResult]]:
    level = Level(n)
    fixed_ms = fixed_latency_s(options) * 1000
    cpu_before = cpu_seconds(pid)
    started = time.monotonic()
    async with asyncio.timeout(LEVEL_TIMEOUT_S):
        outcomes = await asyncio.gather(
            *(one_call(base_url, first_number + i, i * START_GAP_S, options) for i in range(n)),
            return_exceptions=True,
        )
    level.wall_s = time.monotonic() - started
    level.cpu_s = cpu_seconds(pid) - cpu_before
    results = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            level.failures.append(f"{type(outcome).__name__}: {outcome}")
            continue
        results.append(outcome)
        if outcome.warnings:
            level.failures.extend(outcome.warnings)
        else:
            level.calls_ok += 1
        level.reply_ms += outcome.reply_latencies_ms
        level.added_ms += [ms - fixed_ms for ms in outcome.reply_latencies_ms]
        level.late_frames += outcome.frames_late
        level.max_lateness_ms = max(level.max_lateness_ms, outcome.max_lateness_ms)
        level.frames += outcome.received["media"]
    if results:
        level.call_s = sum(result.duration_s for result in results) / len(results)
    return level, results


# --- the run -------------------------------------------------------------------------------


def row(label: str, level: Level) -> str:
    added = level.added_ms
    return (
        f"{label:<7}{level.n:>4}{f'{level.calls_ok}/{level.n}':>8}"
        f"{percentile(added, 0.5):>10.0f}{percentile(added, 0.95):>8.0f}"
        f"{percentile(added, 0.99):>8.0f}{percentile(level.reply_ms, 0.5):>11.0f}"
        f"{level.cpu_per_call:>12.3f}{f'{level.late_frames}/{level.frames}':>14}"
        f"{level.max_lateness_ms:>10.0f}"
    )


async def bench(options: argparse.Namespace) -> None:
    started = time.monotonic()
    print(f"bench.calls: Daphne + loopback Deepgram + rules, one process each; in {BENCH_DIR}")
    await asyncio.to_thread(prepare_database)
    deepgram, deepgram_port = await start_child(
        "--serve", "fake-deepgram", "--levels", "1", options=options
    )
    relay = daphne = None
    try:
        port = free_port()
        daphne = await start_daphne(port, deepgram_port)
        server_url = f"http://127.0.0.1:{port}"
        # A first call warms the server (imports, the prompt cache) and measures how much
        # audio it sends per turn, which the relay then sends too.
        warm, results = await run_level(server_url, daphne.pid, 1, 9000, options)
        if not results or warm.failures:
            raise RuntimeError(f"the warm-up call failed: {warm.failures}")
        first = results[0]
        greeting_ms = sum(s.audio_ms for s in first.agent_speech if s.line == 0)
        reply_ms = [line.agent_ms for line in first.lines if line.line.caller]
        relay, relay_port = await start_child(
            "--serve",
            "relay",
            "--greeting-ms",
            str(greeting_ms),
            "--reply-ms",
            ",".join(f"{ms:.0f}" for ms in reply_ms),
            options=options,
        )
        relay_url = f"http://127.0.0.1:{relay_port}"
        print(
            f"per call: {len(SPOKEN)} caller turns, greeting {greeting_ms / 1000:.1f} s, "
            f"replies {sum(reply_ms) / 1000:.1f} s of audio; speed {options.speed:g}; fixed fake "
            f"latency {fixed_latency_s(options) * 1000:.0f} ms (endpointing {ENDPOINTING_MS} ms"
            f" + STT {options.stt_latency * 1000:.0f} ms); late tolerance "
            f"{options.tolerance * 1000:.0f} ms"
        )
        print()
        print(
            f"{'':<7}{'N':>4}{'ok':>8}{'added p50':>10}{'p95':>8}{'p99':>8}"
            f"{'reply p50':>11}{'CPU s/call':>12}{'late/frames':>14}{'max late':>10}"
        )
        print(f"{'':<19}{'(ms)':>10}{'':16}{'(ms)':>11}{'':26}{'(ms)':>10}")
        levels: list[tuple[Level, Level]] = []
        number = 0
        for n in options.levels:
            if time.monotonic() - started > options.budget:
                print(f"(stopped before N={n}: over the {options.budget:.0f} s budget)")
                break
            server, _ = await run_level(server_url, daphne.pid, n, number, options)
            number += n
            reference, _ = await run_level(relay_url, relay.pid, n, number, options)
            number += n
            levels.append((server, reference))
            print(row("server", server))
            print(row("relay", reference))
            for failure in sorted(set(server.failures))[:3]:
                print(f"         server: {failure}")
        print()
        summarise(levels, options)
    finally:
        for process in (relay, daphne, deepgram):
            if process is not None:
                await stop_child(process)
    print(f"\n{time.monotonic() - started:.0f} s in all.")


def summarise(levels: list[tuple[Level, Level]], options: argparse.Namespace) -> None:
    if not levels:
        return
    smooth_server = [server.n for server, _ in levels if server.smooth]
    smooth_relay = [relay.n for _, relay in levels if relay.smooth]
    tried = max(server.n for server, _ in levels)
    print(
        f"largest N without a late frame: server {max(smooth_server, default=0)}, "
        f"relay {max(smooth_relay, default=0)} (tried up to {tried})"
    )
    # Synthesis streams faster than real time, so an overloaded server shows first as a
    # slower answer, long before frames come late.
    budget = options.latency_budget
    prompt = [
        server.n
        for server, _ in levels
        if not server.failures and percentile(server.added_ms, 0.95) <= budget
    ]
    print(
        f"largest N with server-added p95 <= {budget:.0f} ms: {max(prompt, default=0)} "
        f"(tried up to {tried})"
    )
    # The length of a call nobody waited on: at high load calls last longer because every
    # answer is late, which would flatter the calls-per-core figure.
    call_s = min((server.call_s for server, _ in levels if server.call_s), default=1.0)
    for server, relay in levels:
        latency_ratio = percentile(server.reply_ms, 0.5) / max(
            1e-9, percentile(relay.reply_ms, 0.5)
        )
        cpu_ratio = server.cpu_per_call / max(1e-9, relay.cpu_per_call)
        # One call keeps this share of a core busy for its length; its inverse is how many
        # such calls one core could carry, were nothing else the limit.
        per_core = call_s / max(1e-9, server.cpu_per_call)
        print(
            f"N={server.n:<3} server/relay: reply p50 x{latency_ratio:.2f}, "
            f"CPU per call x{cpu_ratio:.1f} ({server.cpu_per_call:.3f} s vs "
            f"{relay.cpu_per_call:.3f} s; a {call_s:.0f} s call: ~{per_core:.0f} calls per core)"
        )


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__)
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--speed", type=float, default=1.0, help="caller/playback speed-up")
    parser.add_argument("--stt-latency", type=float, default=0.1, help="fake STT latency (s)")
    parser.add_argument(
        "--speak-ms-per-character",
        type=float,
        default=15.0,
        help="length of the fake TTS audio per character of text (ms)",
    )
    parser.add_argument("--tolerance", type=float, default=0.02, help="late-frame tolerance (s)")
    parser.add_argument("--budget", type=float, default=300.0, help="stop escalating after (s)")
    parser.add_argument(
        "--latency-budget",
        type=float,
        default=250.0,
        help="server-added p95 (ms) a level must stay under to count as keeping up",
    )
    parser.add_argument("--serve", choices=("fake-deepgram", "relay"), help=argparse.SUPPRESS)
    parser.add_argument("--greeting-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--reply-ms", default="0", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    options = parse_options()
    try:
        if options.serve:
            asyncio.run(serve(options.serve, options))
        else:
            asyncio.run(bench(options))
    finally:
        if _OWN_DIR:
            shutil.rmtree(BENCH_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
