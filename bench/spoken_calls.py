"""Spoken-call evaluation: every scenario, spoken by callers who are not the agent, over a live
server on the embedded (offline) defaults, in real time.

Run:  .venv/bin/python -m bench.spoken_calls              (every scenario x every caller voice)
      .venv/bin/python -m bench.spoken_calls --quick      (3 scenarios x 2 voices, ~5 minutes)
      .venv/bin/python -m bench.spoken_calls --scenarios cancel reschedule --voices piper-joe

What runs: the server as the README starts it, on a fresh SQLite file: ``migrate``,
``seed_demo``, then the Makefile's ``run`` server command (read with ``make -n``, so a change
of server command there is what this runs) on a free loopback port, with no configuration
but the database, the opening hours and front-desk number the scenarios assume, and the
answer webhook's flood limits off (one address placing a hundred calls is what they refuse).
Scenarios whose ``[setup]`` needs another server (after-hours, a fully booked calendar) get a
server and database of their own. Each server runs in a child of this process that plays its
scenarios with :class:`voice.simulator.TwilioCaller` at speed 1, one call at a time, in every
voice of :data:`voice.simulator.CALLER_VOICES` (espeak-ng variants and a Piper voice, through
a 300-3400 Hz mu-law telephone channel), and reports each call as one JSON line.

Printed: per scenario x voice, whether the database ended as the scenario says; the misheard
turns (what the caller said against what the agent stored as heard, compared after a light
normalisation: lower case, no punctuation, numbers as digits, spelled letters and digits run
together, so "March 12, 1984" matches "march twelfth nineteen eighty four"); the success rate
overall and per voice; and end of caller speech to the first agent audio at p50 and p90, per
voice and overall. The scenario text is synthetic, so showing it is fine; nothing a real
caller said is involved. Figures are printed, never asserted.

Bounded: each call by ``--call-timeout``, the whole run by ``--max-minutes`` (calls not
started by then are reported as skipped). ``--save FILE`` keeps every call's record (said and
heard text included: synthetic) and ``--replay FILE`` prints their summary again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.live.deployment import makefile_command

REPO = Path(__file__).resolve().parent.parent
ALWAYS_OPEN = "mon-sun 00:00-23:59"
FRONT_DESK = "+16175550000"
QUICK_SCENARIOS = ("person_requested", "cancel", "returning_patient_booked")
QUICK_VOICES = ("espeak-f2", "piper-joe")
SERVER_START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
BENCH_SETTINGS = """\
# Written by bench.spoken_calls: the clinic's settings with the answer webhook's flood guard
# off. One address placing a hundred calls is what the limits exist to refuse.
from clinic.settings import *  # noqa: F403

VOICE_ANSWER_IP_RATE = ""
VOICE_ANSWER_CALLER_RATE = ""
"""


def server_command(host: str, port: int) -> list[str]:
    """The README's server command: the last command of the Makefile's ``run`` target, read
    with ``make -n`` (nothing runs) the same way the live tests read it, so that the bench
    follows the Makefile when the command changes."""
    return makefile_command("run", HOST=host, PORT=str(port))


def server_setup(setup: dict[str, Any]) -> dict[str, Any]:
    """What a scenario needs of its server (and of its database): the group it runs in."""
    return {
        "opening_hours": setup.get("opening_hours", ALWAYS_OPEN),
        "front_desk_number": setup.get("front_desk_number", FRONT_DESK),
        "own_calendar": bool(setup.get("no_open_slots")),
    }


def clean_environment(workdir: Path, group: dict[str, Any]) -> dict[str, str]:
    """This process's environment without the clinic's settings, plus the group's own."""
    from clinic.config import KNOWN_VARIABLES

    env = {
        name: value
        for name, value in os.environ.items()
        if name not in KNOWN_VARIABLES and name not in ("DJANGO_SETTINGS_MODULE", "DEBUG")
    }
    (workdir / "bench_spoken_settings.py").write_text(BENCH_SETTINGS)
    paths = [str(workdir), str(REPO), env.get("PYTHONPATH", "")]
    env.update(
        PYTHONPATH=os.pathsep.join(path for path in paths if path),
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="bench_spoken_settings",
        DATABASE_URL=f"sqlite:///{workdir / 'clinic.sqlite3'}",
        CLINIC_OPENING_HOURS=group["opening_hours"],
        FRONT_DESK_NUMBER=group["front_desk_number"],
    )
    return env


# --- the parent: groups, children, the report ---------------------------------------------------


def run(options: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
    import django

    django.setup()
    from bench.spoken_report import Report
    from intake import scenario as scenarios
    from voice.simulator import CALLER_VOICES, VOICES

    voices = list(options.voices or (QUICK_VOICES if options.quick else CALLER_VOICES))
    unknown = [voice for voice in voices if voice not in VOICES]
    if unknown:
        sys.exit(f"unknown voices {unknown}; known: {', '.join(VOICES)}")
    slugs = options.scenarios or (
        list(QUICK_SCENARIOS) if options.quick else [s.slug for s in scenarios.all_scenarios()]
    )
    groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for slug in slugs:
        group = server_setup(scenarios.load(slug).setup)
        key = json.dumps(group, sort_keys=True) + (slug if group["own_calendar"] else "")
        groups.setdefault(key, (group, []))[1].append(slug)
    report = Report(voices)
    if options.replay:
        # Print the summary of a saved run again (after a change to the report, say).
        lines = Path(options.replay).read_text().splitlines()
        for record in (json.loads(line) for line in lines if line.strip()):
            if record["scenario"] in slugs and record["voice"] in voices:
                report.add(record)
        report.print_summary(slugs)
        return 0
    print(
        f"{len(slugs)} scenarios x {len(voices)} voices ({', '.join(voices)}) = "
        f"{len(slugs) * len(voices)} calls in real time on {len(groups)} server(s); "
        f"at most {options.max_minutes:g} minutes",
        flush=True,
    )
    saved = Path(options.save).open("a") if options.save else None
    deadline = time.monotonic() + options.max_minutes * 60
    root = Path(tempfile.mkdtemp(prefix="bench-spoken-"))
    try:
        for number, (group, members) in enumerate(groups.values(), start=1):
            workdir = root / f"server{number}"
            workdir.mkdir()
            print(
                f"\nserver {number}: {len(members)} scenarios, hours {group['opening_hours']!r}",
                flush=True,
            )
            for record in run_group(workdir, group, members, voices, options, deadline):
                report.add(record)
                print(report.progress_line(record), flush=True)
                if saved is not None:
                    saved.write(json.dumps(record) + "\n")
                    saved.flush()
        report.print_summary(slugs)
    finally:
        if saved is not None:
            saved.close()
        if options.keep:
            print(f"\nlogs and databases kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def run_group(
    workdir: Path,
    group: dict[str, Any],
    slugs: Sequence[str],
    voices: Sequence[str],
    options: argparse.Namespace,
    deadline: float,
) -> Iterator[dict[str, Any]]:
    """Start a child that serves and plays ``slugs`` x ``voices``; yield its records as they
    come, then a skipped record for every call it did not report."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        for slug in slugs:
            for voice in voices:
                yield skipped(slug, voice, "the run's time budget was spent")
        return
    argv = [sys.executable, "-m", "bench.spoken_calls", "--child", str(workdir)]
    argv += ["--scenarios", *slugs, "--voices", *voices]
    argv += ["--call-timeout", str(options.call_timeout), "--budget-seconds", str(remaining)]
    done: set[tuple[str, str]] = set()
    with (workdir / "child.log").open("wb") as log:
        child = subprocess.Popen(  # noqa: S603 (our own module, argv built here)
            argv,
            cwd=REPO,
            env=clean_environment(workdir, group),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        assert child.stdout is not None
        try:
            for line in child.stdout:
                if line.startswith("CALL "):
                    record: dict[str, Any] = json.loads(line[5:])
                    done.add((record["scenario"], record["voice"]))
                    yield record
                elif line.startswith("ERROR "):
                    print(f"  {workdir.name}: {line[6:].strip()}", flush=True)
            child.wait(timeout=STOP_TIMEOUT_S)
        finally:
            if child.poll() is None:  # interrupted: the child takes its server down with it
                os.killpg(child.pid, signal.SIGTERM)
                child.wait(timeout=STOP_TIMEOUT_S)
    why = f"not played (the child exited {child.returncode}; {workdir / 'child.log'})"
    for slug in slugs:
        for voice in voices:
            if (slug, voice) not in done:
                yield skipped(slug, voice, why)


def skipped(slug: str, voice: str, why: str) -> dict[str, Any]:
    return {"scenario": slug, "voice": voice, "status": "skipped", "why": why}


# --- the child: one server, its database, its calls ------------------------------------------


def child(options: argparse.Namespace) -> int:
    """Migrate and seed a fresh database, start the server, play the calls, stop the server."""
    workdir = Path(options.child)
    import django

    django.setup()
    from django.core.management import call_command

    from bench.spoken_play import play_all

    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed_demo", verbosity=0)
    port = free_port()
    command = server_command("127.0.0.1", port)
    server_log = (workdir / "server.log").open("wb")
    server = subprocess.Popen(  # noqa: S603 (the Makefile's own command)
        command,
        cwd=REPO,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=server_log,
        stderr=server_log,
        start_new_session=True,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        if not wait_for_server(server, base_url):
            tail = (workdir / "server.log").read_text(errors="replace")[-1500:]
            print("ERROR the server did not start: " + " | ".join(tail.splitlines()[-8:]))
            return 1
        play_all(
            base_url,
            options.scenarios,
            options.voices,
            call_timeout_s=options.call_timeout,
            budget_s=options.budget_seconds,
        )
    finally:
        stop(server)
        server_log.close()
    return 0


def wait_for_server(server: subprocess.Popen[bytes], base_url: str) -> bool:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with opener.open(base_url + "/health/live", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (it drains), SIGKILL if it outstays the timeout."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--scenarios", nargs="+", metavar="SLUG", help="default: every scenario")
    parser.add_argument("--voices", nargs="+", metavar="NAME", help="default: every caller voice")
    parser.add_argument("--quick", action="store_true", help="3 scenarios x 2 voices")
    parser.add_argument(
        "--max-minutes", type=float, default=150.0, help="time budget (default 150)"
    )
    parser.add_argument(
        "--call-timeout", type=float, default=600.0, help="seconds per call (default 600)"
    )
    parser.add_argument("--keep", action="store_true", help="keep server logs and databases")
    parser.add_argument("--save", metavar="FILE", help="append each call's record (JSON lines)")
    parser.add_argument(
        "--replay", metavar="FILE", help="print the summary of records saved with --save"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--budget-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    options = parse_options()
    sys.exit(child(options) if options.child else run(options))


if __name__ == "__main__":
    main()
