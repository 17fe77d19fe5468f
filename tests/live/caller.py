"""Place calls against a running deployment; one JSON line per call on stdout.

    python -m tests.live.caller --base-url https://127.0.0.1:8443 person_requested cancel

Run by the live harness as a separate process with the deployment's own environment (its
``DATABASE_URL``, ``TWILIO_AUTH_TOKEN``, ``PUBLIC_BASE_URL``), exactly as an operator runs
``manage.py simulate_call``: the scenario's patients are created in the deployment's
database, the calls are placed with :class:`voice.simulator.TwilioCaller` (espeak-ng voice,
real-time pacing), and each call is checked with :func:`voice.simulator.check`. Several
scenarios run at once (``--stagger`` seconds apart), or one after another (``--sequential``).
The pytest process never shares a database connection with the deployment, so the harness
works the same on SQLite and PostgreSQL, and while a fault is being injected.

Output: ``{"live": "prepared", ...}`` once the patients exist (the harness may start
injecting faults after it), then ``{"live": "call", ...}`` for each call in order.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import json
import os
import secrets
import sys
from typing import Any

import django


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def _play(index: int, scenario: Any, options: argparse.Namespace) -> dict[str, Any]:
    from voice.simulator import SimulatorError, TwilioCaller

    await asyncio.sleep(index * options.stagger)
    try:
        result = await TwilioCaller.over_network(
            options.base_url,
            scenario,
            speed=1.0,
            voice="espeak",
            barge_in=options.barge_in,
            reply_timeout_s=options.reply_timeout,
            hangup_timeout_s=options.hangup_timeout,
        )
    except SimulatorError as exc:
        return {"scenario": scenario.slug, "error": str(exc)}
    return {"scenario": scenario.slug, "result": result}


def _describe(scenario: Any, played: dict[str, Any]) -> dict[str, Any]:
    from voice.simulator import check

    if "error" in played:
        return {"live": "call", "scenario": played["scenario"], "error": played["error"]}
    result = played["result"]
    call = result.call
    followups = sorted(call.followups.values_list("reason", flat=True)) if call else []
    return {
        "live": "call",
        "scenario": scenario.slug,
        "error": None,
        "call_sid": result.call_sid,
        "problems": check(scenario, result),
        "warnings": list(result.warnings),
        "close_code": result.close_code,
        "server_closed": result.server_closed,
        "dial": result.dial,
        "duration_s": round(result.duration_s, 2),
        "outcome": call.outcome if call else None,
        "phase": call.phase if call else None,
        "followups": followups,
        "agent_said": [t.text for t in result.transcript if t.speaker == "agent"],
        "caller_heard_as": [t.text for t in result.transcript if t.speaker == "caller"],
        "reply_ms": [round(ms) for ms in result.reply_latencies_ms],
        "lines": [
            {
                "kind": line.kind,
                "start_s": round(line.started_at - result.started_at, 2),
                "end_s": (
                    round(line.action_ended_at - result.started_at, 2)
                    if line.action_ended_at is not None
                    else None
                ),
            }
            for line in result.lines
        ],
        "received": dict(result.received),
        "sent": dict(result.sent),
    }


def distinct_caller(scenario: Any, number: int) -> Any:
    """``scenario`` as rung from its own number: the product limits calls per caller number
    (5 in 10 minutes), as it should, and finds returning patients by that number, so a test
    that places many calls gives each its own number, and its own copy of the returning
    patients whose phone it is (a last name with a letter suffix, so that the copy is a
    patient of its own), with ``[expect]`` renamed to match."""
    original = scenario.caller_number
    phone = f"+1617555{number % 10000:04d}"
    suffix = "".join(chr(ord("a") + int(digit)) for digit in f"{number:04d}")
    renamed: dict[str, str] = {}
    patients = []
    for spec in scenario.patients:
        if spec.get("phone") == original:
            renamed[spec["last_name"]] = spec["last_name"] + suffix
            spec = {**spec, "phone": phone, "last_name": renamed[spec["last_name"]]}
        patients.append(spec)
    expect = copy.deepcopy(scenario.expect)
    wanted = expect.get("patient")
    if isinstance(wanted, dict) and wanted.get("last_name") in renamed:
        wanted["last_name"] = renamed[wanted["last_name"]]
    return dataclasses.replace(scenario, caller_number=phone, patients=patients, expect=expect)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenarios", nargs="+", help="scenario slugs or .toml paths")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--stagger", type=float, default=0.5)
    parser.add_argument("--barge-in", action="store_true", help="talk over every prompt")
    parser.add_argument("--sequential", action="store_true", help="one call after another")
    parser.add_argument(
        "--distinct-callers",
        action="store_true",
        help="each call from its own number (and its own copy of the scenario's patients)",
    )
    parser.add_argument("--reply-timeout", type=float, default=30.0)
    parser.add_argument("--hangup-timeout", type=float, default=10.0)
    options = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
    django.setup()
    from intake import scenario as scenarios

    loaded = [scenarios.load(name) for name in options.scenarios]
    if options.distinct_callers:
        first = secrets.randbelow(9000)
        loaded = [distinct_caller(s, first + index) for index, s in enumerate(loaded)]
    prepared: set[tuple[str, str]] = set()
    for scenario in loaded:
        if (scenario.slug, scenario.caller_number) not in prepared:
            scenarios.prepare(scenario)
            prepared.add((scenario.slug, scenario.caller_number))
    _emit({"live": "prepared", "calls": len(loaded)})

    async def play_all() -> list[dict[str, Any]]:
        if options.sequential:
            options.stagger = 0.0
            return [await _play(0, scenario, options) for scenario in loaded]
        return list(
            await asyncio.gather(
                *(_play(index, scenario, options) for index, scenario in enumerate(loaded))
            )
        )

    for scenario, played in zip(loaded, asyncio.run(play_all()), strict=True):
        _emit(_describe(scenario, played))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
