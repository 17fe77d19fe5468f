"""Keep talking when the primary TTS fails: switch to the secondary for the rest of the call.

A caller who hears silence hangs up. If the primary engine (Deepgram Aura) fails before or
during an utterance, the secondary (espeak-ng, local) speaks what is left of it, and every
later utterance of the call, without trying the primary again: a service that has just failed
mid-call is likely to fail again, and flapping between two voices is worse than one.

"What is left" is an estimate: the audio already played tells roughly how many characters were
spoken (at a typical speaking rate), and the secondary restarts at the beginning of the
sentence or clause that contains that point. Repeating a few words beats skipping some.

Across calls, a per-process circuit breaker (:mod:`clinic.circuit`, provider ``deepgram_tts``)
remembers that the primary keeps failing: while it is open, a call's first utterance goes
straight to the secondary (and so does the rest of that call), so no caller waits out the
primary's timeout first. A failure before or during an utterance counts against it; an
utterance played to the end (or interrupted by the caller after audio came) counts as the
primary answering; one cancelled before any audio came is no verdict.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator

from clinic.circuit import CircuitBreaker
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

    One instance per call: ``failovers`` counts switches (0 or 1: after a failure, or because
    the ``breaker`` was open) and ``active`` is the engine in use.
    """

    def __init__(
        self,
        primary: TextToSpeech,
        secondary: TextToSpeech,
        *,
        call_id: str = "",
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.primary = primary
        self.secondary = secondary
        self.active: TextToSpeech = primary
        self.failovers = 0
        self._call_id = call_id
        self._breaker = breaker

    @property
    def name(self) -> str:
        return self.active.name

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        remaining = text
        attempt = None
        if self.active is self.primary and self._breaker is not None:
            attempt = self._breaker.attempt()
            if attempt is None:
                self.active = self.secondary
                self.failovers += 1
                log.info(
                    "tts_primary_skipped",
                    call_id=self._call_id,
                    primary=self.primary.name,
                    secondary=self.secondary.name,
                    reason="circuit_open",
                )
        if self.active is self.primary:
            played = 0
            try:
                # aclosing: when this generator is closed (barge-in), the engine's is closed
                # now, not left to the garbage collector with its HTTP stream or subprocess.
                async with contextlib.aclosing(self.primary.synthesize(text)) as stream:
                    async for chunk in stream:
                        played += len(chunk)
                        yield chunk
                if attempt is not None:
                    attempt.succeeded()
                return
            except Exception as exc:
                if attempt is not None:
                    attempt.failed()
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
            finally:
                # Barge-in or hang-up (the generator closed or its task cancelled): audio that
                # came shows the primary answering; none is no verdict. No-op after a verdict.
                if attempt is not None:
                    if played:
                        attempt.succeeded()
                    else:
                        attempt.abandoned()
        async with contextlib.aclosing(self.secondary.synthesize(remaining)) as stream:
            async for chunk in stream:
                yield chunk

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.secondary.aclose()
