"""What a call session needs from speech recognition, independent of the engine.

A session streams the caller's audio in (8 kHz mu-law, one 20 ms frame at a time) and reads
transcript events out. Whichever engine produces them, transcripts follow the grammar::

    (Interim* Final)+ UtteranceEnd      -- one caller turn, repeated per turn

- ``Interim``: a running guess at the words being spoken; it may change or come to nothing.
  (PocketSphinx produces none.)
- ``Final``: a stretch of the utterance that will not change. A long utterance can produce
  several finals; the caller's turn is all finals up to the next ``UtteranceEnd``.
- ``UtteranceEnd``: the caller has stopped talking; the turn is complete. It only follows at
  least one non-empty ``Final``.

``NothingHeard`` closes a ``SpeechStarted`` that never became words.

``SpeechStarted`` comes from voice activity, not from the transcript, and can arrive at any
point: before the interims of the turn it starts, but also before the final of the previous
turn when the recogniser is slower than the caller's pause, and on noise that never becomes
words. Use it to stop the agent talking (barge-in), not to delimit turns.

``events()`` ends after ``close()``, or raises :class:`SpeechToTextError` when the engine has
failed for good (for example the connection to a hosted service could not be restored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class SpeechStarted:
    """The caller started talking."""


@dataclass(frozen=True)
class Interim:
    text: str
    confidence: float


@dataclass(frozen=True)
class Final:
    """A stable piece of transcript.

    ``stt_latency_ms`` is the recogniser's own delay: from the moment the last piece of audio
    this transcript covers reached ``send()`` to the moment the event was produced. It does not
    include the time spent waiting for the caller to stop (endpointing).
    ``confidence`` is the engine's own 0..1 figure; engines are not calibrated alike.
    """

    text: str
    confidence: float
    stt_latency_ms: float


@dataclass(frozen=True)
class UtteranceEnd:
    """The caller's turn ended: the finals since the previous UtteranceEnd are the turn."""


@dataclass(frozen=True)
class NothingHeard:
    """Voice activity that came to no words (noise, a cough, a mumble the engine rejected).

    Follows a ``SpeechStarted``. The session stops its silence timer while the caller is
    speaking and while their words are being decoded; this tells it the wait is over and
    there is no turn to answer, so the timer runs again.
    """


TranscriptEvent = SpeechStarted | Interim | Final | UtteranceEnd | NothingHeard


class SpeechToTextError(RuntimeError):
    """The engine cannot go on for this call (raised by ``start()`` or ``events()``)."""


@runtime_checkable
class SpeechToText(Protocol):
    """One call's speech recogniser. Not shared between calls; not thread-safe."""

    async def start(self, hints: Sequence[str] = ()) -> None:
        """Open the engine (connect, load a model). Call once, before anything else."""

    async def send(self, mulaw_8k: bytes) -> None:
        """Caller audio, normally one 20 ms frame. Never blocks on recognition."""

    async def set_hints(self, hints: Sequence[str]) -> None:
        """Words and phrases the next answer is likely to contain (names, yes/no, digits).

        An empty list means "anything": open vocabulary.
        """

    async def keep_alive(self) -> None:
        """Keep the engine open while no caller audio is sent (the agent is talking).

        Deepgram closes a stream after about 10 s without audio: call this every 3 to 5 s
        while not sending. Harmless (and free) when audio is flowing or the engine is local.
        """

    def events(self) -> AsyncIterator[TranscriptEvent]:
        """The transcript events of this call, in order. Iterate from one task only."""
        ...

    async def close(self) -> None:
        """Finish: release the engine; ``events()`` ends. Safe to call more than once."""


def normalise_hints(hints: Sequence[str], *, limit: int = 100, max_chars: int = 60) -> list[str]:
    """Trim, de-duplicate (case-insensitively, keeping the first spelling) and bound hints."""
    seen: set[str] = set()
    result: list[str] = []
    for hint in hints:
        cleaned = " ".join(hint.split())[:max_chars]
        key = cleaned.casefold()
        if cleaned and key not in seen:
            seen.add(key)
            result.append(cleaned)
        if len(result) >= limit:
            break
    return result
