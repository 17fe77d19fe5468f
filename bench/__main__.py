"""Run every benchmark: `make bench` (or `.venv/bin/python -m bench`)."""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = (
    "bench.understanding",
    "bench.audio",
    "bench.calendar",
    "bench.calls",
    "bench.stt",
    "bench.tts",
    "bench.outbox",
    "bench.provider_outage",
    "bench.spoken_calls",
    "bench.soak",
)
# Arguments each benchmark gets here; run a module by itself for its full form (the whole
# spoken-call evaluation takes about two hours in real time).
ARGUMENTS = {
    "bench.stt": ["--quick"],
    "bench.spoken_calls": ["--quick"],
    "bench.soak": ["--calls", "2", "--minutes", "2"],
}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(BENCHMARKS)
    for module in chosen:
        print(f"\n##### {module}", flush=True)
        sys.argv = [module, *ARGUMENTS.get(module, [])]
        runpy.run_module(module, run_name="__main__")
