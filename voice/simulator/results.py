"""What the caller observed on one call, and its stored turns as the transcript shows them."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from intake import scenario as scenarios
from intake.models import Call


@dataclass
class AgentSpeech:
    """One stretch of agent audio, from the first frame after quiet until quiet again."""

    started_at: float
    line: int
    """Index of the scenario line it answers (0: the greeting, before any line)."""
    audio_ms: float = 0.0
    cleared: bool = False


@dataclass
class LineResult:
    """One scenario line as played, with what the agent did in answer."""

    index: int
    line: scenarios.Line
    started_at: float
    started_wall: dt.datetime
    action_ended_at: float | None = None
    """Monotonic time the caller's last voiced frame (or last key) was sent."""
    speech_ms: float = 0.0
    reply_ms: float | None = None
    """End of the caller's speech (or keys) to the first frame of the agent's answer: audio
    that starts after quiet or a ``clear``, not the rest of a prompt the caller talked over."""
    agent_ms: float = 0.0
    """How long the agent spoke in answer (audio received, cleared audio included)."""
    interrupted_agent: bool = False

    @property
    def kind(self) -> str:
        line = self.line
        if line.event:
            return "event"
        if line.hangup:
            return "hangup"
        if line.press:
            return "press"
        if line.silence:
            return "silence"
        return "say"

    @property
    def label(self) -> str:
        return self.describe(self.line)

    @staticmethod
    def describe(line: scenarios.Line) -> str:
        if line.event:
            return f"({line.event})"
        if line.hangup:
            return "(hangs up)"
        if line.press:
            return f"(presses {line.press})"
        if line.silence:
            return f"(silent {line.silence:g} s)"
        return line.caller


@dataclass(frozen=True)
class TranscriptTurn:
    """A stored turn, decrypted, as the transcript shows it."""

    sequence: int
    speaker: str
    text: str
    created_at: dt.datetime
    response_latency_ms: int | None = None
    stt_final_ms: int | None = None
    interrupted: bool = False


@dataclass
class CallResult:
    """Everything the caller observed, and the call as the database has it afterwards."""

    scenario: scenarios.Scenario
    call_sid: str
    stream_sid: str
    account_sid: str
    started_at: float
    lines: list[LineResult] = field(default_factory=list)
    agent_speech: list[AgentSpeech] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    server_closed: bool = False
    close_code: int | None = None
    dial: str = ""
    warnings: list[str] = field(default_factory=list)
    greeting_ms: float | None = None
    """``start`` sent to the first agent frame."""
    duration_s: float = 0.0
    frames_late: int = 0
    max_lateness_ms: float = 0.0
    call: Call | None = None
    transcript: list[TranscriptTurn] = field(default_factory=list)

    @property
    def reply_latencies_ms(self) -> list[float]:
        return [line.reply_ms for line in self.lines if line.reply_ms is not None]

    def turns_for_line(self, index: int) -> list[TranscriptTurn]:
        """Stored turns made in answer to line ``index`` (0: before the first line)."""
        return [turn for turn in self.transcript if self._line_of(turn) == index]

    def _line_of(self, turn: TranscriptTurn) -> int:
        # A turn answers the latest caller action begun before it was stored. Events are
        # the world acting, not the caller: they open no window of their own.
        owner = 0
        for line in self.lines:
            if line.kind != "event" and line.started_wall <= turn.created_at:
                owner = line.index
        return owner
