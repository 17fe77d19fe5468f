"""The agent's voice on one call: queued utterances synthesised and streamed, marks, barge-in.

Kept apart from :mod:`voice.session` because playback has its own state (the queue, the
utterance on the wire, the marks Twilio has still to echo) that only a few questions from the
rest of the call need: is the agent speaking, is everything played, cut it off now.

Each utterance is sent as 20 ms frames and followed by a ``mark``; Twilio echoes the mark once
the caller has heard it, so "played" means heard, not merely sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from clinic.logs import get_logger
from voice import metrics
from voice.audio import MulawFramer
from voice.tts.base import TextToSpeech
from voice.twilio_wire import clear_message, mark_message, media_message

log = get_logger(__name__)

Sender = Callable[[str], Awaitable[None]]
FirstAudio = Callable[["Utterance", float], None]


@dataclass
class Utterance:
    text: str
    turn_id: int | None
    mark: str
    requested_at: float = 0.0
    first_audio_at: float | None = None
    interrupted: bool = False


class AgentVoice:
    """What the agent says, in order, one utterance at a time.

    ``on_first_audio`` is called once per utterance, just before its first frame is sent,
    with the time it was measured: the session times the response from it.
    """

    def __init__(
        self,
        *,
        call_id: int,
        stream_sid: str,
        send: Sender,
        tts: TextToSpeech,
        on_first_audio: FirstAudio,
    ) -> None:
        self.call_id = call_id
        self.stream_sid = stream_sid
        self._send = send
        self.tts = tts
        self._on_first_audio = on_first_audio
        self._speech: asyncio.Queue[Utterance] = asyncio.Queue()
        self._pending_marks: dict[str, Utterance] = {}
        self._current: Utterance | None = None
        self._streaming: asyncio.Task[None] | None = None
        self._marks = 0

    @property
    def speaking(self) -> bool:
        """Audio is on its way or not yet heard (sent, its mark not echoed)."""
        return self._current is not None or bool(self._pending_marks)

    @property
    def quiet(self) -> bool:
        """Nothing queued, nothing streaming, every mark echoed."""
        return self._speech.empty() and not self._pending_marks and self._current is None

    def say(self, text: str, turn_id: int | None) -> None:
        """Queue ``text``; it is played after what is queued already."""
        self._marks += 1
        utterance = Utterance(text, turn_id, f"u{self._marks}")
        utterance.requested_at = time.perf_counter()
        self._speech.put_nowait(utterance)

    def mark_played(self, name: str) -> bool:
        """Twilio echoed a mark. True when that was the last thing the agent had to say."""
        utterance = self._pending_marks.pop(name, None)
        if utterance is None:
            return False  # a mark from before a clear, or one we never sent
        return not self._pending_marks and self._speech.empty() and self._current is None

    async def interrupt(self, started: float) -> list[Utterance]:
        """The caller talks over the agent: stop playback now and drop what is queued.

        Returns the utterances cut off (the one on the wire, those sent but not yet heard and
        those still queued), so that their turns can be marked interrupted.
        """
        interrupted = [u for u in (self._current, *self._pending_marks.values()) if u]
        while not self._speech.empty():
            interrupted.append(self._speech.get_nowait())
        if self._current is not None:
            self._current.interrupted = True
        self._pending_marks.clear()
        await self._send(clear_message(self.stream_sid))
        metrics.BARGE_IN_REACTION.observe(time.perf_counter() - started)
        if self._streaming is not None and not self._streaming.done():
            self._streaming.cancel()
        return interrupted

    async def cut(self) -> None:
        """Drop everything queued or playing (the call is being handed over); no turn marks."""
        while not self._speech.empty():
            self._speech.get_nowait()
        if self._streaming is not None and not self._streaming.done():
            self._streaming.cancel()
        if self._pending_marks or self._current is not None:
            self._pending_marks.clear()
            await self._send(clear_message(self.stream_sid))

    async def play(self) -> None:
        """Run for the whole call: stream each queued utterance, then send its mark."""
        while True:
            utterance = await self._speech.get()
            self._current = utterance
            self._streaming = asyncio.create_task(self._stream(utterance))
            try:
                # wait() (unlike await) does not raise when a barge-in cancels the stream.
                await asyncio.wait({self._streaming})
            finally:
                if not self._streaming.done():
                    self._streaming.cancel()
            self._current = None
            if self._streaming.cancelled() or utterance.interrupted:
                continue
            if self._streaming.exception() is not None:
                log.error(
                    "speech_failed",
                    call_id=self.call_id,
                    error=type(self._streaming.exception()).__name__,
                )
                continue
            self._pending_marks[utterance.mark] = utterance
            await self._send(mark_message(self.stream_sid, utterance.mark))

    async def _stream(self, utterance: Utterance) -> None:
        framer = MulawFramer()
        async for chunk in self.tts.synthesize(utterance.text):
            for frame in framer.push(chunk):
                await self._send_frame(utterance, frame)
        last = framer.flush()
        if last:
            await self._send_frame(utterance, last)

    async def _send_frame(self, utterance: Utterance, frame: bytes) -> None:
        if utterance.first_audio_at is None:
            now = time.perf_counter()
            utterance.first_audio_at = now
            self._on_first_audio(utterance, now)
        await self._send(media_message(self.stream_sid, frame))
