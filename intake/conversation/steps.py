"""What answering a question can lead to: the next question, the same one again, or the end."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ask:
    """Go on to ``question``, saying ``preface`` first (an acknowledgement, a read-back)."""

    question: str
    preface: str = ""


@dataclass(frozen=True)
class Retry:
    """The answer did not fit: ask again (bounded by ``REPROMPT_LIMIT``)."""

    hint: str = ""


@dataclass(frozen=True)
class End:
    """Finish the call with ``outcome``, saying ``say``; optionally leave staff a follow-up."""

    outcome: str
    say: str
    followup_reason: str = ""
    followup_summary: str = ""
    transfer: bool = False
    priority: int | None = None  # of the follow-up; None is the model's default


Step = Ask | Retry | End
