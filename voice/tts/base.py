"""What a call session needs from speech synthesis, independent of the engine.

``synthesize(text)`` is an async generator of 8 kHz G.711 mu-law chunks (no header), yielded as
the engine produces them so that the first audio can go out before the whole sentence is
ready. Chunks are non-empty and of any length; :class:`voice.audio.MulawFramer` cuts them into
20 ms frames.

Barge-in stops speech mid-sentence. Run the iteration in a task and cancel it, or stop
iterating and close the generator (``async with contextlib.aclosing(tts.synthesize(text))``):
either way the engine's HTTP stream or subprocess is closed at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol, runtime_checkable


class TextToSpeechError(RuntimeError):
    """Synthesis failed. The message is a short code; it never contains the text."""


@runtime_checkable
class TextToSpeech(Protocol):
    @property
    def name(self) -> str:
        """Engine name for logs and metrics ("deepgram", "espeak")."""
        ...

    def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        """Speak ``text``: mu-law 8 kHz chunks, streamed."""
        ...

    async def aclose(self) -> None:
        """Release connections (end of the call). Safe to call more than once."""
