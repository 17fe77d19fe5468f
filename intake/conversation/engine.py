"""Run one event of one call: load the state, screen, understand, step, store.

The only async part of the conversation. Understanding (which may wait on a language model)
runs on the event loop; everything that touches the database runs in one synchronous,
transactional step through ``database_sync_to_async``. Nothing is kept in memory between
events: each starts from ``Call.state``, so any process can handle any turn.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.db import transaction

from clinic.logs import get_logger
from intake import services
from intake.conversation import red_flags
from intake.conversation.events import (
    Action,
    CallEnded,
    CallerSaid,
    CallStarted,
    Event,
    KeyPressed,
    Say,
    Silence,
)
from intake.conversation.flow import Flow
from intake.conversation.state import ConversationState
from intake.models import Call, Turn
from intake.understanding import engine_from_settings
from intake.understanding.base import UnderstandingEngine
from intake.understanding.triage import screen
from intake.understanding.types import Context, Expectation, Understanding

log = get_logger(__name__)


@dataclass(frozen=True)
class Prepared:
    finished: bool
    expectation: Expectation
    context: Context | None
    confirming_red_flag: bool = False


def keys_as_words(keys: str, expectation: Expectation) -> str:
    """Keypad digits as the caller might have said them for the current question."""
    digits = re.sub(r"[^0-9]", "", keys)
    if expectation == Expectation.DATE_OF_BIRTH and len(digits) == 8:
        return f"{digits[:2]}/{digits[2:4]}/{digits[4:]}"  # MMDDYYYY, as US callers key it
    if expectation == Expectation.YES_NO and digits in ("1", "2"):
        return "yes" if digits == "1" else "no"
    if expectation == Expectation.SLOT_CHOICE and digits in ("1", "2", "3"):
        return ("the first one", "the second one", "the third one")[int(digits) - 1]
    return digits


class Conversation:
    """The agent's side of one call (``call_id`` is the ``Call`` row)."""

    def __init__(self, call_id: int, engine: UnderstandingEngine | None = None) -> None:
        self.call_id = call_id
        self.engine = engine or engine_from_settings()
        self.last_understanding: Understanding | None = None

    async def handle(self, event: Event) -> list[Action]:
        if isinstance(event, CallStarted):
            return await self._step(lambda flow: flow.start())
        if isinstance(event, CallEnded):
            return await self._step(lambda flow: flow.ended())
        if isinstance(event, Silence):
            return await self._step(lambda flow: flow.silence())
        if isinstance(event, KeyPressed) and event.keys.strip("#") == "0":
            return await self._step(lambda flow: flow.person_requested(), said="(pressed 0)")
        prepared = await self._prepare()
        if prepared.finished or prepared.context is None:
            return []
        if isinstance(event, KeyPressed):
            text = keys_as_words(event.keys, prepared.expectation)
            said, confidence, stt_ms = f"(keypad) {text}", 1.0, None
        else:
            assert isinstance(event, CallerSaid)
            text, said, confidence, stt_ms = (
                event.text,
                event.text,
                event.confidence,
                event.stt_final_ms,
            )
        # Red flags are always screened by the rules, whatever engine understands the turn;
        # the flow decides whether to end intake at once or to ask the caller first.
        flag = screen(text)
        if flag is not None:
            return await self._step(lambda flow: flow.red_flag(flag, confidence), said, stt_ms)
        if prepared.confirming_red_flag:
            # "Did you say ...?" is answered to the rules alone: no language model is asked.
            return await self._step(lambda flow: flow.flag_reply(text, confidence), said, stt_ms)
        started = time.perf_counter()
        understanding = await self.engine.understand(text, prepared.expectation, prepared.context)
        understanding_ms = round((time.perf_counter() - started) * 1000)
        self.last_understanding = understanding
        log.info(
            "turn_understood",
            call_id=self.call_id,
            expectation=str(prepared.expectation),
            intent=str(understanding.intent),
            fields=sorted(understanding.fields()),
            engine=understanding.engine,
            understanding_ms=understanding_ms,
        )
        return await self._step(
            lambda flow: flow.hear(understanding, text, confidence), said, stt_ms, understanding_ms
        )

    async def _prepare(self) -> Prepared:
        prepared: Prepared = await database_sync_to_async(self._prepare_sync)()
        return prepared

    def _prepare_sync(self) -> Prepared:
        call = Call.objects.get(pk=self.call_id)
        flow = Flow(call, ConversationState.from_dict(call.state))
        if flow.state.finished or call.finished:
            return Prepared(True, Expectation.FREE, None)
        return Prepared(
            False,
            flow.question.expect,
            flow.context(),
            confirming_red_flag=red_flags.confirming(flow.state),
        )

    async def _step(
        self,
        run: Callable[[Flow], list[Action]],
        said: str | None = None,
        stt_ms: int | None = None,
        understanding_ms: int | None = None,
    ) -> list[Action]:
        actions: list[Action] = await database_sync_to_async(self._step_sync)(
            run, said, stt_ms, understanding_ms
        )
        return actions

    def _step_sync(
        self,
        run: Callable[[Flow], list[Action]],
        said: str | None,
        stt_ms: int | None,
        understanding_ms: int | None,
    ) -> list[Action]:
        with transaction.atomic():
            call = Call.objects.select_for_update().get(pk=self.call_id)
            flow = Flow(call, ConversationState.from_dict(call.state))
            if said is not None:
                services.turn_record(
                    call=call,
                    speaker=Turn.Speaker.CALLER,
                    text=said,
                    stt_final_ms=stt_ms,
                    understanding_ms=understanding_ms,
                )
            actions: list[Action] = run(flow)
            recorded: list[Action] = []
            for action in actions:
                if isinstance(action, Say):
                    turn = services.turn_record(
                        call=call, speaker=Turn.Speaker.AGENT, text=action.text
                    )
                    action = Say(action.text, turn_id=turn.pk)
                recorded.append(action)
            flow.save()
        return recorded
