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
import dataclasses
import shutil
import time
from collections.abc import Sequence

from bench.calls_env import (
    AUTH_TOKEN,
    BENCH_DIR,
    BENCH_SCENARIO,
    ENDPOINTING_MS,
    OWN_DIR,
    SPOKEN,
    fixed_latency_s,
)
from bench.calls_fakes import serve
from bench.calls_processes import (
    cpu_seconds,
    prepare_database,
    start_child,
    start_daphne,
    stop_child,
)
from tests.conftest import free_port
from voice.simulator import CallResult, TwilioCaller

LEVELS = (1, 2, 4, 8, 16)
START_GAP_S = 0.1
LEVEL_TIMEOUT_S = 150.0


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
        if OWN_DIR:
            shutil.rmtree(BENCH_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
