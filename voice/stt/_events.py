"""The queue behind ``SpeechToText.events()``, shared by the engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from voice.stt.base import SpeechToTextError, TranscriptEvent


class EventStream:
    """Producer side: ``put`` events, then ``finish`` or ``fail`` once.

    Consumer side: ``iterate()`` yields the events, then stops (finish) or raises (fail).
    Events are never dropped: a transcript is what the caller said.
    """

    def __init__(self) -> None:
        # None marks the end of the stream.
        self._queue: asyncio.Queue[TranscriptEvent | SpeechToTextError | None] = asyncio.Queue()
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def put(self, event: TranscriptEvent) -> None:
        if not self._ended:
            self._queue.put_nowait(event)

    def finish(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    def fail(self, error: SpeechToTextError) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(error)

    async def iterate(self) -> AsyncIterator[TranscriptEvent]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, SpeechToTextError):
                raise item
            yield item
