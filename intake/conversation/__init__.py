"""The intake conversation: events in, actions out. Knows nothing of audio or Twilio.

:class:`~intake.conversation.engine.Conversation` runs one turn: it screens for red flags,
asks the understanding engine what the caller meant, and lets the flow (a table of
questions in :mod:`intake.conversation.questions`) decide what happens next. Its state lives
in the database (``Call.state``) between turns, so any process can take the next turn.
"""

from intake.conversation.engine import Conversation
from intake.conversation.events import (
    Action,
    CallEnded,
    CallerSaid,
    CallStarted,
    Event,
    Expect,
    FollowUpOpened,
    HangUp,
    KeyPressed,
    Say,
    Silence,
    Transfer,
)

__all__ = [
    "Action",
    "CallEnded",
    "CallStarted",
    "CallerSaid",
    "Conversation",
    "Event",
    "Expect",
    "FollowUpOpened",
    "HangUp",
    "KeyPressed",
    "Say",
    "Silence",
    "Transfer",
]
