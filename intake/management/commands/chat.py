"""Talk to the agent by typing, against this database (the demo clinic after `make run`).

Each caller line shows what understanding extracted, so staff and developers can see why the
agent answered as it did. Commands: /silence, /press DIGITS, /hangup, /quit.
"""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandParser

from intake import services
from intake.conversation import (
    Action,
    CallEnded,
    CallerSaid,
    CallStarted,
    Conversation,
    Event,
    Expect,
    FollowUpOpened,
    HangUp,
    KeyPressed,
    Say,
    Silence,
    Transfer,
)


class Command(BaseCommand):
    help = "Chat with the intake agent by typing; shows each turn's extracted fields."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--caller", default="", help="caller number, e.g. +16175550142")

    def handle(self, *args: Any, **options: Any) -> None:
        call = services.call_start(
            call_sid=f"CHAT{uuid.uuid4().hex}", caller_number=options["caller"]
        )
        conversation = Conversation(call.pk)
        self.stdout.write(f"Call #{call.pk}. Type what the caller says; /quit to stop.\n")
        done = self.show(async_to_sync(conversation.handle)(CallStarted()))
        while not done:
            try:
                line = input("caller> ").strip()
            except EOFError:
                line = "/hangup"
            event = self.parse(line)
            if event is None:
                continue
            actions = async_to_sync(conversation.handle)(event)
            understood = conversation.last_understanding
            if isinstance(event, CallerSaid) and understood is not None:
                self.stdout.write(
                    self.style.HTTP_INFO(
                        f"  [{understood.engine}] intent={understood.intent} "
                        f"fields={understood.fields()}"
                    )
                )
            done = self.show(actions) or isinstance(event, CallEnded)
        call.refresh_from_db()
        self.stdout.write(f"\nCall #{call.pk} ended: outcome={call.outcome} phase={call.phase}")

    def parse(self, line: str) -> Event | None:
        if not line:
            return None
        if line in ("/quit", "/hangup"):
            return CallEnded()
        if line == "/silence":
            return Silence(seconds=6)
        if line.startswith("/press"):
            return KeyPressed(line.removeprefix("/press").strip() or "0")
        return CallerSaid(line, confidence=1.0)

    def show(self, actions: list[Action]) -> bool:
        finished = False
        for action in actions:
            if isinstance(action, Say):
                self.stdout.write(self.style.SUCCESS(f"agent> {action.text}"))
            elif isinstance(action, Expect):
                self.stdout.write(f"  (expecting {action.expectation}; hints: {len(action.hints)})")
            elif isinstance(action, FollowUpOpened):
                self.stdout.write(
                    self.style.WARNING(f"  follow-up #{action.followup_id}: {action.reason}")
                )
            elif isinstance(action, Transfer):
                self.stdout.write(self.style.WARNING("  -> transferred to the front desk"))
                finished = True
            elif isinstance(action, HangUp):
                finished = True
        return finished
