"""The call session's database edge: ride out a short outage, else hand the caller to a person.

A caller waits in silence while a turn is stored, so the session never lets the database hold
a call hostage: a turn is retried for a few seconds (the caller hears "one moment" once), then
the caller is handed over with an apology spoken from the prompt cache, and what could not be
written waits in :mod:`voice.deferred`. Writes that are only bookkeeping (timings, the
interrupted flag, the outcome for a metric) are given up on a database error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.db import DatabaseError

from clinic.hours import front_desk_open
from clinic.logs import get_logger
from intake import services as intake_services
from intake.conversation import (
    Action,
    CallEnded,
    CallerSaid,
    Conversation,
    Event,
    HangUp,
    KeyPressed,
    Say,
    Silence,
    Transfer,
    prompts,
)
from intake.models import Call, Turn
from voice.deferred import deferred_writes

log = get_logger(__name__)

Perform = Callable[[list[Action]], Awaitable[None]]


async def handle_with_retry(
    conversation: Conversation,
    event: Event,
    *,
    call_id: int,
    retry_seconds: float,
    perform: Perform,
) -> list[Action]:
    """The conversation's answer to ``event``, riding out a short database outage.

    Each attempt is one transaction (the conversation's step), so a retry repeats nothing
    that was stored. The caller hears "one moment" once (through ``perform``) while the
    retries go on; after ``retry_seconds`` the last :class:`DatabaseError` is raised.
    """
    deadline = time.monotonic() + retry_seconds
    delay = 0.25
    told_to_wait = False
    while True:
        try:
            return await conversation.handle(event)
        except DatabaseError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("conversation_retry", call_id=call_id, error=type(exc).__name__)
            if not told_to_wait and not isinstance(event, CallEnded | Silence):
                told_to_wait = True
                await perform([Say(prompts.ONE_MOMENT)])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def fail_over(*, call_id: int, event: Event, error: BaseException) -> list[Action]:
    """Hand the caller to a person now; record it (and their words) when the database can.

    Needs no database: the apology is spoken from the prompt cache and the record waits
    in :mod:`voice.deferred` until the database answers again.
    """
    said: str | None = None
    if isinstance(event, CallerSaid):
        said = event.text
    elif isinstance(event, KeyPressed):
        said = f"(keypad) {event.keys}"
    cause = "database_unavailable" if isinstance(error, DatabaseError) else "agent_error"
    actions: list[Action] = []
    if not isinstance(event, CallEnded):  # otherwise the line is already closed
        if front_desk_open():
            actions = [Say(prompts.TROUBLE_TRANSFER), Transfer()]
        else:
            actions = [Say(prompts.TROUBLE_CALLBACK), HangUp()]
    agent_said = next((action.text for action in actions if isinstance(action, Say)), None)

    def record() -> None:
        intake_services.call_fail_over(
            call_id=call_id, caller_said=said, agent_said=agent_said, cause=cause
        )

    deferred_writes().submit("call_fail_over", call_id, record)
    return actions


async def update_turn(
    call_id: int,
    turn_id: int,
    *,
    tts_first_byte_ms: int | None = None,
    response_latency_ms: int | None = None,
    interrupted: bool | None = None,
) -> None:
    """Record an agent turn's timings or that it was interrupted, if the database answers."""

    def update() -> None:
        turn = Turn.objects.filter(pk=turn_id).first()
        if turn is not None:
            intake_services.turn_update_timings(
                turn=turn,
                tts_first_byte_ms=tts_first_byte_ms,
                response_latency_ms=response_latency_ms,
                interrupted=interrupted,
            )

    try:
        await database_sync_to_async(update)()
    except DatabaseError as exc:
        # Timings and the interrupted flag are not worth holding up the call for.
        log.warning("turn_timing_not_recorded", call_id=call_id, error=type(exc).__name__)


async def call_outcome(call_id: int) -> str | None:
    """The call's recorded outcome, for the calls metric; None if unknown or unreadable."""

    def read() -> str | None:
        return Call.objects.filter(pk=call_id).values_list("outcome", flat=True).first()

    try:
        outcome: str | None = await database_sync_to_async(read)()
    except DatabaseError:
        return None  # the deferred writes will record it once the database is back
    return outcome
