"""Run every benchmark: `make bench` (or `.venv/bin/python -m bench`)."""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = ("bench.understanding", "bench.audio", "bench.calendar", "bench.calls")

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(BENCHMARKS)
    for module in chosen:
        print(f"\n##### {module}", flush=True)
        runpy.run_module(module, run_name="__main__")
