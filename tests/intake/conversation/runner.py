"""Play a scenario file against the conversation as text, the way the voice layer would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async

from intake import scenario as scenarios
from intake import services
from intake.conversation import (
    Action,
    CallEnded,
    CallerSaid,
    CallStarted,
    Conversation,
    Event,
    KeyPressed,
    Say,
    Silence,
)
from intake.models import Call
from intake.understanding.base import UnderstandingEngine


@dataclass
class Played:
    call: Call
    agent_lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The question each scenario line answered (its id in questions.QUESTIONS), in order.
    asked: list[str] = field(default_factory=list)


def _said(actions: list[Action]) -> str:
    return " ".join(action.text for action in actions if isinstance(action, Say))


async def play(scenario: scenarios.Scenario, engine: UnderstandingEngine) -> Played:
    await sync_to_async(scenarios.prepare)(scenario)
    call = await sync_to_async(services.call_start)(
        call_sid=f"CA{uuid.uuid4().hex}", caller_number=scenario.caller_number
    )
    played = Played(call)

    async def send(event: Event) -> str:
        # A fresh Conversation per event: nothing may survive in memory between turns.
        actions = await Conversation(call.pk, engine).handle(event)
        text = _said(actions)
        played.agent_lines.append(text)
        return text

    await send(CallStarted())
    for number, line in enumerate(scenario.lines, start=1):
        fresh = await Call.objects.aget(pk=call.pk)
        played.asked.append(fresh.state.get("question", ""))
        if line.event == "slot_taken":
            await sync_to_async(scenarios.take_offered_slot)(fresh)
            continue
        event: Event
        if line.hangup:
            event = CallEnded("hangup")
        elif line.silence:
            event = Silence(line.silence)
        elif line.press:
            event = KeyPressed(line.press)
        else:
            event = CallerSaid(line.caller, confidence=line.confidence, stt_final_ms=120)
        reply = await send(event)
        if line.agent_says and line.agent_says.lower() not in reply.lower():
            played.problems.append(
                f"line {number} ({line.caller or line}): expected {line.agent_says!r} in {reply!r}"
            )
    fresh = await Call.objects.aget(pk=call.pk)
    if not fresh.finished:
        await send(CallEnded("hangup"))
    played.problems += await sync_to_async(scenarios.check)(scenario, fresh)
    return played
