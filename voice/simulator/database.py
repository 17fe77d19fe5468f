"""The database side of a simulated call: the world acting on it, and reading it back afterwards."""

from __future__ import annotations

import asyncio
import time

from channels.db import database_sync_to_async

from intake import scenario as scenarios
from intake.models import Call, Turn
from voice.simulator.results import TranscriptTurn


def take_offered_slot_sync(call_sid: str) -> None:
    scenarios.take_offered_slot(Call.objects.get(call_sid=call_sid))


async def take_offered_slot(call_sid: str) -> None:
    await database_sync_to_async(take_offered_slot_sync)(call_sid)


def load_call_sync(call_sid: str) -> tuple[Call | None, list[TranscriptTurn]]:
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is None:
        return None, []
    turns = [
        TranscriptTurn(
            sequence=turn.sequence,
            speaker=turn.speaker,
            text=turn.text,
            created_at=turn.created_at,
            response_latency_ms=turn.response_latency_ms,
            stt_final_ms=turn.stt_final_ms,
            interrupted=turn.interrupted,
        )
        for turn in Turn.objects.filter(call=call).order_by("sequence")
    ]
    return call, turns


async def load_call(
    call_sid: str, *, timeout_s: float = 10.0
) -> tuple[Call | None, list[TranscriptTurn]]:
    """The call and its turns, once the server has finished it (or ``timeout_s`` passed).

    A server in another process finishes the call after the socket closes; in-process, the
    consumer has finished before the communicator lets go.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        loaded: tuple[Call | None, list[TranscriptTurn]] = await database_sync_to_async(
            load_call_sync
        )(call_sid)
        call = loaded[0]
        if call is None or call.finished or time.monotonic() > deadline:
            return loaded
        await asyncio.sleep(0.1)
