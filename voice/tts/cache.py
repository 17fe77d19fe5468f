"""Fixed prompts synthesised once per process and played without a synthesis round trip.

The greeting, "Sorry, I didn't catch that", the goodbye: a few dozen sentences that every call
says. Synthesising them once at start-up takes their first-byte latency (hundreds of
milliseconds on a hosted engine) off every call, and spares the engine the repeated work.

Only fixed prompts belong here. Text that includes anything a caller said (a name read back,
a date of birth) is PHI and is never cached: :class:`CachedTTS` serves hits and passes
misses through without storing them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable

from clinic.logs import get_logger
from voice.tts.base import TextToSpeech

log = get_logger(__name__)

_SERVE_CHUNK = 1600  # 200 ms per chunk: prompt playback stays as cancellable as live speech


def prompt_key(text: str) -> str:
    """Prompts match on their words, whatever the spacing."""
    return " ".join(text.split())


class PromptCache:
    """Mu-law audio of fixed prompts, keyed by their text. One per process."""

    def __init__(self, *, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._audio: dict[str, bytes] = {}
        self._inflight: dict[str, asyncio.Task[bytes | None]] = {}
        self._bytes = 0
        self._max_bytes = max_bytes

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and prompt_key(text) in self._audio

    def __len__(self) -> int:
        return len(self._audio)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, text: str) -> bytes | None:
        return self._audio.get(prompt_key(text))

    def put(self, text: str, audio: bytes) -> bool:
        """Store a prompt's audio; refuse (False) once the cache is full."""
        key = prompt_key(text)
        if key in self._audio:
            return True
        if self._bytes + len(audio) > self._max_bytes:
            log.warning("tts_prompt_cache_full", prompts=len(self._audio), size=self._bytes)
            return False
        self._audio[key] = audio
        self._bytes += len(audio)
        return True

    async def warm(
        self, texts: Iterable[str], engine: TextToSpeech, *, concurrency: int = 4
    ) -> int:
        """Synthesise the prompts not cached yet; return how many are cached afterwards.

        A prompt that fails is logged and left out (calls will synthesise it live). Prompts
        already being synthesised by a concurrent ``warm`` are awaited, not requested twice.
        """
        limit = asyncio.Semaphore(concurrency)
        keys = list(dict.fromkeys(prompt_key(text) for text in texts if text.strip()))
        tasks = []
        for key in keys:
            if key in self._audio:
                continue
            task = self._inflight.get(key)
            if task is None:
                task = asyncio.create_task(self._synthesise(key, engine, limit))
                self._inflight[key] = task
            tasks.append(task)
        if tasks:
            await asyncio.gather(*tasks)
        cached = sum(1 for key in keys if key in self._audio)
        log.info("tts_prompts_warmed", engine=engine.name, prompts=len(keys), cached=cached)
        return cached

    async def _synthesise(
        self, key: str, engine: TextToSpeech, limit: asyncio.Semaphore
    ) -> bytes | None:
        try:
            async with limit:
                audio = b"".join([chunk async for chunk in engine.synthesize(key)])
        except Exception as exc:
            log.warning("tts_prompt_failed", engine=engine.name, error=type(exc).__name__)
            return None
        finally:
            self._inflight.pop(key, None)
        if audio:
            self.put(key, audio)
        return audio


class CachedTTS:
    """:class:`voice.tts.base.TextToSpeech` that plays cached prompts and passes the rest on."""

    def __init__(self, inner: TextToSpeech, cache: PromptCache) -> None:
        self.inner = inner
        self.cache = cache
        self.hits = 0

    @property
    def name(self) -> str:
        return self.inner.name

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        audio = self.cache.get(text)
        if audio is None:
            # aclosing: a barge-in that stops this generator also stops the engine's stream
            # at once, instead of leaving it (and an espeak-ng process) to the collector.
            async with contextlib.aclosing(self.inner.synthesize(text)) as stream:
                async for chunk in stream:
                    yield chunk
            return
        self.hits += 1
        for start in range(0, len(audio), _SERVE_CHUNK):
            yield audio[start : start + _SERVE_CHUNK]

    async def aclose(self) -> None:
        await self.inner.aclose()
