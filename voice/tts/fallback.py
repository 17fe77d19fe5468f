"""Keep talking when the primary TTS fails: switch to the secondary for the rest of the call.

A caller who hears silence hangs up. If the primary engine (Deepgram Aura) fails before or
during an utterance, the secondary (espeak-ng, local) speaks what is left of it, and every
later utterance of the call, without trying the primary again: a service that has just failed
mid-call is likely to fail again, and flapping between two voices is worse than one.

"What is left" is an estimate: the audio already played tells roughly how many characters were
spoken (at a typical speaking rate), and the secondary restarts at the beginning of the
sentence or clause that contains that point. Repeating a few words beats skipping some.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

from clinic.logs import get_logger
from voice.audio import mulaw_duration_ms
from voice.tts.base import TextToSpeech

log = get_logger(__name__)

MS_PER_CHARACTER = 65.0
"""Aura and most voices speak about 15 characters (spaces included) per second."""
_BOUNDARY = re.compile(r"[.!?;:,]\s+")


def unspoken_text(text: str, played_ms: float, ms_per_character: float = MS_PER_CHARACTER) -> str:
    """The part of ``text`` to say again after ``played_ms`` of it were played."""
    if played_ms <= 0:
        return text
    spoken = int(played_ms / ms_per_character)
    if spoken >= len(text):
        spoken = len(text) - 1
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.end() > spoken:
            break
        start = match.end()
    return text[start:]


class FallbackTTS:
    """:class:`voice.tts.base.TextToSpeech` that fails over from ``primary`` to ``secondary``.

    One instance per call: ``failovers`` counts switches (0 or 1) and ``active`` is the engine
    in use.
    """

    def __init__(
        self, primary: TextToSpeech, secondary: TextToSpeech, *, call_id: str = ""
    ) -> None:
        self.primary = primary
        self.secondary = secondary
        self.active: TextToSpeech = primary
        self.failovers = 0
        self._call_id = call_id

    @property
    def name(self) -> str:
        return self.active.name

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        remaining = text
        if self.active is self.primary:
            played = 0
            try:
                async for chunk in self.primary.synthesize(text):
                    played += len(chunk)
                    yield chunk
                return
            except Exception as exc:
                self.active = self.secondary
                self.failovers += 1
                remaining = unspoken_text(text, mulaw_duration_ms(played))
                log.warning(
                    "tts_failover",
                    call_id=self._call_id,
                    primary=self.primary.name,
                    secondary=self.secondary.name,
                    error=type(exc).__name__,
                    played_ms=round(mulaw_duration_ms(played)),
                    resumed_at_char=len(text) - len(remaining),
                )
        async for chunk in self.secondary.synthesize(remaining):
            yield chunk

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.secondary.aclose()
