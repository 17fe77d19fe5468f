"""The load bench's throwaway world, set up before Django loads: its own SQLite file and
credentials (inherited by every child process through the environment), and the one short intake
every simulated caller plays. Imported first by the other ``bench.calls*`` modules.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import django

# Everything (this process, Daphne, the fakes) uses a throwaway SQLite file: your data is
# never touched. Children inherit the directory through the environment.
OWN_DIR = "BENCH_CALLS_DIR" not in os.environ
if OWN_DIR:
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

from intake.scenario import Line, Scenario  # noqa: E402
from voice.stt.deepgram import DeepgramSttOptions  # noqa: E402

ENDPOINTING_MS = DeepgramSttOptions().endpointing_ms

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


def fixed_latency_s(options: argparse.Namespace) -> float:
    """What the fakes add to every turn: the endpointing window (audio time) and STT latency."""
    return float(ENDPOINTING_MS / 1000 / options.speed + options.stt_latency)
