"""One call's media stream as the caller's phone carries it: pace, ear and marks.

:class:`CallLine` is the half of the simulated caller that does not depend on the scenario:
it sends a caller frame every 20 ms (speech when there is some queued, mu-law silence
otherwise), hears the agent's audio on Twilio's playback clock, echoes marks when their
audio has played, and tells the caller when the agent has started or finished a prompt.
:class:`voice.simulator.caller.TwilioCaller` decides what to say and when on top of it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import time
from collections import deque
from collections.abc import Callable

from clinic.logs import get_logger
from voice.audio import TWILIO_RATE
from voice.simulator.playback import FrameSchedule, Playback
from voice.simulator.results import AgentSpeech, CallResult, LineResult
from voice.simulator.transports import StreamSocket
from voice.simulator.voices import SILENCE_FRAME
from voice.simulator.wire import StreamMessages

log = get_logger(__name__)

MAX_AGENT_TURN_SECONDS = 180.0
"""Give up waiting for a prompt to finish after this long (a stuck stream, not a person)."""


class CallLine:
    """The stream side of one simulated call; the state the caller's turn-taking reads.

    ``reply_timeout_s`` bounds the wait for the agent to start answering and ``settle_s`` is
    the pause after a finished prompt (see :meth:`_wait_for_agent`).
    """

    def __init__(
        self,
        messages: StreamMessages,
        result: CallResult,
        *,
        speed: float,
        late_tolerance_s: float,
        reply_timeout_s: float,
        settle_s: float,
    ) -> None:
        self.messages = messages
        self.result = result
        self.speed = speed
        self.reply_timeout_s = reply_timeout_s
        self.settle_s = settle_s
        self.playback = Playback(speed=speed, late_tolerance_s=late_tolerance_s)
        self._socket: StreamSocket | None = None
        self._send_lock = asyncio.Lock()
        self._stopped = False  # `stop` sent: Twilio sends nothing after it
        self._hanging_up = False
        self._closed = asyncio.Event()
        self._activity = asyncio.Event()  # anything the turn-taking waits on has changed
        self._marks_changed = asyncio.Event()
        self._last_echo_at = 0.0
        self._line = 0
        self._awaiting_reply: LineResult | None = None
        self._start_sent_at: float | None = None
        self._voice_frames: deque[bytes] = deque()
        self._voice_line: LineResult | None = None
        self._voice_done: asyncio.Future[int] | None = None

    async def _hang_up(self) -> None:
        """Hang up like a caller: ``stop``, then close the socket."""
        if self._hanging_up:
            return
        self._hanging_up = True
        async with self._send_lock:
            # Under the lock the pacer holds while it sends: no frame can follow the stop.
            if not self._stopped and not self._closed.is_set() and self._socket is not None:
                with contextlib.suppress(Exception):
                    await self._socket.send(self.messages.stop())
                    self.result.sent["stop"] += 1
            self._stopped = True
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close()

    # --- background tasks ---------------------------------------------------------------------

    async def _pace(self) -> None:
        """Send one caller frame every 20 ms (at ``speed``) until the call ends."""
        schedule = FrameSchedule(time.monotonic(), speed=self.speed)
        index = 0
        while not self._closed.is_set() and not self._stopped:
            delay = schedule.delay(index, time.monotonic())
            if delay > 0:
                await asyncio.sleep(delay)
            if self._voice_frames:
                frame = self._voice_frames.popleft()
                last = not self._voice_frames
            else:
                frame, last = SILENCE_FRAME, False
            await self._send(functools.partial(self.messages.media, frame), kind="media")
            if last:
                now = time.monotonic()
                if self._voice_line is not None:
                    self._voice_line.action_ended_at = now
                if self._voice_done is not None and not self._voice_done.done():
                    self._voice_done.set_result(len(self.result.agent_speech))
            index += 1

    async def _echo_marks(self) -> None:
        """Echo each mark when the audio before it has played."""
        while not self._closed.is_set():
            self._marks_changed.clear()
            for name in self.playback.due(time.monotonic()):
                await self._echo(name)
            due = self.playback.next_due_at()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._marks_changed.wait()

    async def _receive(self) -> None:
        socket = self._socket
        assert socket is not None
        try:
            while (text := await socket.receive()) is not None:
                await self._on_message(text, time.monotonic())
        finally:
            self.result.close_code = socket.close_code
            self.result.server_closed = not self._hanging_up
            self._closed.set()
            self._activity.set()
            self._marks_changed.set()
            if self._voice_done is not None and not self._voice_done.done():
                self._voice_done.cancel()

    async def _on_message(self, text: str, now: float) -> None:
        received = self.result.received
        try:
            message = json.loads(text)
            event = message["event"]
        except (ValueError, KeyError, TypeError):
            received["invalid"] += 1
            return
        received[str(event)] += 1
        if message.get("streamSid") != self.messages.stream_sid:
            received["wrong_stream_sid"] += 1  # Twilio would refuse the message
            return
        if event == "media":
            try:
                payload = base64.b64decode(message["media"]["payload"], validate=True)
            except (KeyError, TypeError, binascii.Error, ValueError):
                received["invalid"] += 1
                return
            self._agent_audio(len(payload), now)
        elif event == "mark":
            name = str((message.get("mark") or {}).get("name", ""))
            for due in self.playback.mark(name, now):
                await self._echo(due)
            self._marks_changed.set()
        elif event == "clear":
            if self.result.agent_speech:
                self.result.agent_speech[-1].cleared = True
            for name in self.playback.clear(now):
                await self._echo(name)
            self._marks_changed.set()
        self._activity.set()

    def _agent_audio(self, nbytes: int, now: float) -> None:
        result = self.result
        fresh = self.playback.idle(now) or not result.agent_speech
        if fresh:
            result.agent_speech.append(AgentSpeech(started_at=now, line=self._line))
        self.playback.media(nbytes, now)
        result.agent_speech[-1].audio_ms += nbytes * 1000 / TWILIO_RATE
        if result.greeting_ms is None and self._start_sent_at is not None:
            result.greeting_ms = (now - self._start_sent_at) * 1000
        # Only speech that starts after quiet (or after a clear) answers the caller: the rest
        # of a prompt the caller talked over is still that prompt.
        waiting = self._awaiting_reply
        if fresh and waiting is not None and waiting.action_ended_at is not None:
            waiting.reply_ms = (now - waiting.action_ended_at) * 1000
            self._awaiting_reply = None

    # --- helpers ------------------------------------------------------------------------------

    async def _send(self, build: Callable[[], str], *, kind: str) -> None:
        """Build and send under one lock, so sequence numbers go out in order."""
        async with self._send_lock:
            if self._stopped or self._closed.is_set() or self._socket is None:
                return
            try:
                await self._socket.send(build())
            except Exception as exc:  # closing under us: the receiver sees the close
                log.debug("simulated_send_failed", kind=kind, error=type(exc).__name__)
                return
            self.result.sent[kind] += 1

    async def _echo(self, name: str) -> None:
        await self._send(functools.partial(self.messages.mark, name), kind="mark")
        self._last_echo_at = time.monotonic()
        self._activity.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once if the call ends."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closed.wait()

    async def _wait_for_agent(self, after: int, *, finished: bool) -> bool:
        """Wait for agent speech that started after the first ``after`` stretches.

        With ``finished``, also wait until it has played out, every mark has been echoed and
        ``settle_s`` of quiet has passed. False when the agent did not start within
        ``reply_timeout_s``; True at once when the socket is closed.
        """
        deadline = time.monotonic() + self.reply_timeout_s
        started_at: float | None = None
        while not self._closed.is_set():
            self._activity.clear()
            now = time.monotonic()
            started = len(self.result.agent_speech) > after
            if started and not finished:
                return True
            if started and started_at is None:
                started_at = now
                deadline = now + MAX_AGENT_TURN_SECONDS
            wait = deadline - now
            if wait <= 0:
                return False
            if started and self.playback.idle(now):
                quiet_since = max(self.playback.ends_at, self._last_echo_at)
                remaining = quiet_since + self.settle_s - now
                if remaining <= 0:
                    return True
                wait = min(wait, remaining)
            elif started and self.playback.ends_at > now:
                # Marks wake us when they are echoed; a server that sends no marks does not.
                wait = min(wait, self.playback.ends_at - now + 0.001)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._activity.wait()
        return True
