"""Fixtures for the voice tests: the loopback Deepgram and an event collector."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.fakes.deepgram_server import FakeDeepgram
from voice.stt.base import SpeechToText, SpeechToTextError, TranscriptEvent


@pytest.fixture
async def deepgram() -> AsyncIterator[FakeDeepgram]:
    async with FakeDeepgram() as fake:
        yield fake


@dataclass
class Collected:
    """Events read from ``stt.events()`` by a background task, as a session would."""

    events: list[TranscriptEvent] = field(default_factory=list)
    error: SpeechToTextError | None = None
    task: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]

    async def wait_for(self, count: int, kind: str = "UtteranceEnd", limit_s: float = 5.0) -> None:
        """Wait until ``count`` events of ``kind`` have arrived."""
        async with asyncio.timeout(limit_s):
            while self.kinds().count(kind) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def finished(self, limit_s: float = 5.0) -> None:
        """Wait for ``events()`` to end."""
        assert self.task is not None
        async with asyncio.timeout(limit_s):
            await self.task


@contextlib.asynccontextmanager
async def collecting(stt: SpeechToText) -> AsyncIterator[Collected]:
    collected = Collected()

    async def read() -> None:
        try:
            async for event in stt.events():
                collected.events.append(event)
                collected.arrived.set()
        except SpeechToTextError as error:
            collected.error = error

    collected.task = asyncio.create_task(read())
    try:
        yield collected
    finally:
        if not collected.task.done():
            collected.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collected.task
