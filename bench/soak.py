"""Soak: the production topology carrying N concurrent calls for M minutes.

    .venv/bin/python -m bench.soak --calls 4 --minutes 5

Starts the live harness's :class:`~tests.live.harness.ProductionTopology` (PostgreSQL, a
throwaway Redis, Celery worker and beat, two servers behind nginx with TLS, production
settings), then keeps ``--calls`` callers on the line for ``--minutes``: each caller places
one call after another (the simulator's espeak-ng voice, real time) until the time is up and
its last call has ended. Prints each process's resident memory (with its children) at the
start and the end, the calls placed and how many went as their scenario says, the
follow-ups staff were left, rows left in progress and the active-calls gauge afterwards.
Figures are printed, never asserted: a growing RSS over a long soak is the thing to look at.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.live.expect import call_problems
from tests.live.harness import CallRecord, HarnessError, ProductionTopology
from tests.live.processes import rss_kib

MAX_CALLS = 16
MAX_MINUTES = 120.0


def bounded(low: float, high: float, kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def memory(topology: ProductionTopology) -> dict[str, int]:
    """KiB resident per started process, its children included (Celery's pool, decoders)."""
    return {
        managed.name: sum(rss_kib(pid) for pid in managed.tree())
        for managed in topology.processes
        if managed.running()
    }


def caller_loop(
    topology: ProductionTopology, scenario: str, until: float, out: list[CallRecord]
) -> None:
    while time.monotonic() < until:
        try:
            out.extend(topology.place_calls([scenario]))
        except HarnessError as exc:
            out.append({"scenario": scenario, "error": str(exc)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=bounded(1, MAX_CALLS, int), default=4)
    parser.add_argument("--minutes", type=bounded(0.5, MAX_MINUTES, float), default=3.0)
    parser.add_argument("--scenario", default="long_call_with_pauses")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        started = time.monotonic()
        with ProductionTopology(Path(tmp)) as topology:
            print(f"topology up in {time.monotonic() - started:.1f} s", flush=True)
            before = memory(topology)
            until = time.monotonic() + options.minutes * 60
            slots: list[list[CallRecord]] = [[] for _ in range(options.calls)]
            threads = [
                threading.Thread(target=caller_loop, args=(topology, options.scenario, until, slot))
                for slot in slots
            ]
            for thread in threads:
                thread.start()
                time.sleep(1.0)  # callers ring a second apart, then overlap
            for thread in threads:
                thread.join()
            soaked = time.monotonic() - (until - options.minutes * 60)
            after = memory(topology)
            records = [record for slot in slots for record in slot]
            rows = topology.rows()
            active = topology.active_calls()

    failed = call_problems(records)
    bad_calls = {line.split(" (", 1)[0] for line in failed}
    outcomes = Counter(call["outcome"] for call in rows["calls"])
    followups = Counter(reason for call in rows["calls"] for reason in call["followups"])
    print(
        f"\nsoak: {options.calls} concurrent callers for {soaked / 60:.1f} min ({options.scenario})"
    )
    print(f"{'process':<16}{'RSS start MiB':>14}{'RSS end MiB':>13}{'change':>9}")
    for name in sorted(before):
        start, end = before[name] / 1024, after.get(name, 0) / 1024
        print(f"{name:<16}{start:>14.1f}{end:>13.1f}{end - start:>+9.1f}")
    print(
        f"calls placed: {len(records)}; went as the scenario says: {len(records) - len(bad_calls)}"
    )
    print(f"outcomes: {dict(outcomes)}")
    print(f"follow-ups: {sum(followups.values())} {dict(followups)}")
    in_progress = sum(1 for call in rows["calls"] if not call["finished"])
    print(f"rows left in progress: {in_progress}; voice_active_calls after: {active:g}")
    for line in failed[:10]:
        print(f"  problem: {line}")


if __name__ == "__main__":
    main()
