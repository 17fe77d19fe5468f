"""The calls of the spoken-call evaluation (:mod:`bench.spoken_calls`), played in its child.

Runs in a child process whose database is the server's fresh SQLite file: each scenario is
prepared here (returning patients, calendar set-up), played over the network in real time,
checked against the database, and reported on stdout as one ``CALL {json}`` line, so that the
parent can print progress and a table without touching this server's database.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from intake import scenario as scenarios
from voice.simulator import CallResult, SimulatorError, TwilioCaller, check


def play_all(
    base_url: str,
    slugs: Sequence[str],
    voices: Sequence[str],
    *,
    call_timeout_s: float,
    budget_s: float,
) -> None:
    """Play every scenario in every voice, one call at a time; one line on stdout per call."""
    deadline = time.monotonic() + budget_s
    for slug in slugs:
        scenario = scenarios.load(slug)
        for voice in voices:
            if time.monotonic() >= deadline:
                emit({"scenario": slug, "voice": voice, "status": "skipped", "why": "time"})
                continue
            emit(play_one(base_url, scenario, voice, call_timeout_s))


def play_one(
    base_url: str, scenario: scenarios.Scenario, voice: str, call_timeout_s: float
) -> dict[str, Any]:
    record: dict[str, Any] = {"scenario": scenario.slug, "voice": voice}
    try:
        scenarios.prepare(scenario)
        result = asyncio.run(_play(base_url, scenario, voice, call_timeout_s))
    except (SimulatorError, TimeoutError, AssertionError, IndexError) as exc:
        # AssertionError/IndexError: prepare() found no open slot for a returning patient.
        return record | {"status": "error", "why": f"{type(exc).__name__}: {exc}"[:300]}
    problems = check(scenario, result)
    return record | {
        "status": "failed" if problems else "ok",
        "problems": problems,
        "turns": spoken_turns(result),
        "greeting_ms": result.greeting_ms,
        "duration_s": round(result.duration_s, 1),
        "outcome": result.call.outcome if result.call is not None else None,
    }


async def _play(
    base_url: str, scenario: scenarios.Scenario, voice: str, call_timeout_s: float
) -> CallResult:
    async with asyncio.timeout(call_timeout_s):
        return await TwilioCaller.over_network(base_url, scenario, voice=voice)


def spoken_turns(result: CallResult) -> list[dict[str, Any]]:
    """Each spoken line: what the caller said, what the agent stored as heard, how fast."""
    turns = []
    for line in result.lines:
        if line.kind != "say":
            continue
        heard = " ".join(
            turn.text for turn in result.turns_for_line(line.index) if turn.speaker == "caller"
        )
        turns.append(
            {
                "line": line.index,
                "said": line.line.caller,
                "heard": heard,
                "reply_ms": None if line.reply_ms is None else round(line.reply_ms),
                "barge_in": line.interrupted_agent,
            }
        )
    return turns


def emit(record: dict[str, Any]) -> None:
    print("CALL " + json.dumps(record), flush=True)
