"""Reading a call back: what went wrong against its scenario, and the transcript as text."""

from __future__ import annotations

from channels.db import database_sync_to_async

from intake import scenario as scenarios
from voice.simulator.results import CallResult


def check(scenario: scenarios.Scenario, result: CallResult) -> list[str]:
    """What went wrong: :func:`intake.scenario.check` on the call, each line's ``agent_says``
    against the turns stored in answer to it, and the caller's own warnings (no answer, no
    hang-up). Empty when the call went as the scenario says. Uses the ORM: call it from
    synchronous code, or await :func:`acheck`.
    """
    if result.call is None:
        return [f"no call with CallSid {result.call_sid} in the database"]
    problems = list(result.warnings)
    for line in result.lines:
        wanted = line.line.agent_says
        if not wanted:
            continue
        said = " ".join(
            turn.text for turn in result.turns_for_line(line.index) if turn.speaker == "agent"
        )
        if wanted.lower() not in said.lower():
            problems.append(f"line {line.index} {line.label!r}: expected {wanted!r} in {said!r}")
    problems += scenarios.check(scenario, result.call)
    return problems


async def acheck(scenario: scenarios.Scenario, result: CallResult) -> list[str]:
    """:func:`check` from async code (tests)."""
    problems: list[str] = await database_sync_to_async(check)(scenario, result)
    return problems


# --- the transcript ------------------------------------------------------------------------


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


def format_transcript(result: CallResult) -> list[str]:
    """The call as lines of text: what the caller did, what the agent said, how fast.

    ``reply`` is measured here (end of the caller's speech to the first agent frame
    received); ``server`` is the latency the server stored for the turn.
    """
    out = [f"{result.scenario.name} [{result.scenario.slug}]  CallSid {result.call_sid}"]
    if result.greeting_ms is not None:
        out.append(f"    greeting after {result.greeting_ms:.0f} ms")

    def agent_lines(index: int) -> None:
        for turn in result.turns_for_line(index):
            if turn.speaker == "caller":
                out.append(f"    heard:  {turn.text}")
                continue
            extra = []
            if turn.response_latency_ms is not None:
                extra.append(f"server {turn.response_latency_ms} ms")
            if turn.interrupted:
                extra.append("interrupted")
            suffix = f"  [{', '.join(extra)}]" if extra else ""
            out.append(f"    {turn.speaker}:  {turn.text}{suffix}")

    agent_lines(0)
    greeting_ms = sum(s.audio_ms for s in result.agent_speech if s.line == 0)
    if greeting_ms:
        out.append(f"    (agent spoke {_seconds(greeting_ms)})")
    for line in result.lines:
        spoke = f"  ({_seconds(line.speech_ms)})" if line.speech_ms else ""
        barge = "  [talks over the agent]" if line.interrupted_agent else ""
        out.append(f"{line.index:>3} caller: {line.label}{spoke}{barge}")
        agent_lines(line.index)
        facts = []
        if line.reply_ms is not None:
            facts.append(f"reply {line.reply_ms:.0f} ms")
        if line.agent_ms:
            facts.append(f"agent spoke {_seconds(line.agent_ms)}")
        if facts:
            out.append(f"    ({', '.join(facts)})")
    call = result.call
    if call is not None:
        out.append(
            f"Call #{call.pk}: outcome={call.outcome} phase={call.phase or '-'} "
            f"duration={call.duration_seconds if call.duration_seconds is not None else '-'} s"
        )
    ending = "the agent hung up" if result.server_closed else "the caller hung up"
    out.append(
        f"{ending} (close code {result.close_code}) after {result.duration_s:.1f} s"
        + (f"; TwiML dials {result.dial} next" if result.dial and result.server_closed else "")
    )
    latencies = sorted(result.reply_latencies_ms)
    if latencies:
        middle = latencies[len(latencies) // 2]
        out.append(
            f"reply latency: median {middle:.0f} ms, max {latencies[-1]:.0f} ms "
            f"over {len(latencies)} turns"
        )
    out.append(
        "sent: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(result.sent.items()))
        + "; received: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(result.received.items()))
    )
    return out
