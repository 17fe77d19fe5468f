"""Hear the caller with the offline recogniser when Deepgram cannot be reached at the start.

The session starts its recogniser before it greets the caller. If Deepgram refuses, rejects
or does not answer then (within ``DeepgramSttOptions.start_timeout_s``), ending the call would
leave the caller to Twilio's error message; the offline recogniser takes the call instead,
less accurate on open questions but listening. Each such start counts against the
``deepgram_stt`` circuit breaker, so once it opens new calls skip Deepgram from the outset
(:func:`voice.stt.stt_from_settings`) and nobody waits for the start to fail.

Mid-call, Deepgram's own reconnection (with its replay buffer) handles drops; when it gives
up the session hands the caller to a person, as before: a recogniser swapped mid-answer
would have lost the words in flight.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from clinic.logs import get_logger
from voice.stt.base import SpeechToText, SpeechToTextError, TranscriptEvent

log = get_logger(__name__)


class StartFallbackSTT:
    """:class:`voice.stt.base.SpeechToText` that starts ``primary``, or else ``secondary()``.

    ``secondary`` is a factory: the offline engine is only built (and its model loaded) for
    a call that needs it. ``active`` is the engine in use after :meth:`start`.
    """

    def __init__(
        self,
        primary: SpeechToText,
        secondary: Callable[[], SpeechToText],
        *,
        call_id: str = "",
    ) -> None:
        self.primary = primary
        self.active: SpeechToText = primary
        self._make_secondary = secondary
        self._call_id = call_id

    async def start(self, hints: Sequence[str] = ()) -> None:
        try:
            await self.primary.start(hints)
            return
        except SpeechToTextError as error:
            # The error's message is a short code (deepgram_unavailable), never audio or text.
            log.warning("stt_start_fallback", call_id=self._call_id, error=str(error))
        with contextlib.suppress(Exception):
            await self.primary.close()
        self.active = self._make_secondary()
        await self.active.start(hints)

    async def send(self, mulaw_8k: bytes) -> None:
        await self.active.send(mulaw_8k)

    async def set_hints(self, hints: Sequence[str]) -> None:
        await self.active.set_hints(hints)

    async def keep_alive(self) -> None:
        await self.active.keep_alive()

    def events(self) -> AsyncIterator[TranscriptEvent]:
        return self.active.events()

    async def close(self) -> None:
        await self.active.close()
