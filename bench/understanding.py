"""Understanding benchmark: the rules engine's time per caller turn, and red-flag screening's.

Run:  .venv/bin/python -m bench.understanding [--rounds 20]

It replays every caller line of the test corpus (tests/intake/understanding/corpus.json,
each with its own expectation and context) through ``RulesEngine.parse`` and through
``screen``, which the conversation runs on every utterance, after a warm-up that loads
dateparser's and usaddress's data. No database, no network, no Django setup. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

from intake.understanding import RulesEngine, screen
from tests.intake.understanding.corpus import Case, load_corpus


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(label: str, millis: list[float]) -> str:
    total_seconds = sum(millis) / 1000
    return (
        f"{label:<22} turns={len(millis):>6}  p50={percentile(millis, 0.50):7.3f} ms  "
        f"p99={percentile(millis, 0.99):7.3f} ms  mean={statistics.fmean(millis):7.3f} ms  "
        f"max={max(millis):7.3f} ms  {len(millis) / total_seconds:9.0f} turns/s"
    )


def time_rules(engine: RulesEngine, cases: list[Case], rounds: int) -> dict[str, list[float]]:
    by_expectation: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for case in cases:
            start = time.perf_counter_ns()
            engine.parse(case.text, case.expect, case.context)
            by_expectation[case.expect.value].append((time.perf_counter_ns() - start) / 1e6)
    return by_expectation


def time_screen(cases: list[Case], rounds: int) -> list[float]:
    millis: list[float] = []
    for _ in range(rounds):
        for case in cases:
            start = time.perf_counter_ns()
            screen(case.text)
            millis.append((time.perf_counter_ns() - start) / 1e6)
    return millis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="passes over the corpus")
    rounds = parser.parse_args().rounds

    _, cases = load_corpus()
    engine = RulesEngine()
    start = time.perf_counter()
    engine.warm_up()
    print(f"warm-up (first parse loads dateparser, usaddress): {time.perf_counter() - start:.3f} s")
    print(f"corpus: {len(cases)} caller lines x {rounds} rounds\n")

    by_expectation = time_rules(engine, cases, rounds)
    every_turn = [ms for values in by_expectation.values() for ms in values]
    print(summary("rules engine, all", every_turn))
    print(summary("red-flag screen", time_screen(cases, rounds)))
    print("\nby expectation:")
    for expectation, millis in sorted(by_expectation.items()):
        print(summary(f"  {expectation}", millis))


if __name__ == "__main__":
    main()
