"""The simulated caller: plays one scenario as an inbound Twilio call."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from typing import Any

from django.conf import settings
from django.utils import timezone

from clinic.logs import get_logger
from intake import scenario as scenarios
from voice.audio import FRAME_MS
from voice.simulator.database import load_call, take_offered_slot
from voice.simulator.results import CallResult, LineResult
from voice.simulator.stream import CallLine
from voice.simulator.transports import InProcessTransport, NetworkTransport, Transport
from voice.simulator.voices import Voice, caller_frames, voice_spec
from voice.simulator.wire import (
    ANSWER_PATH,
    SimulatorError,
    StreamInstruction,
    StreamMessages,
    new_sid,
    parse_twiml,
    twilio_signature,
)

log = get_logger(__name__)

DTMF_GAP_SECONDS = 0.15
"""Time between two keys of one ``press`` line (a person dialling, not a machine)."""
BARGE_IN_AFTER_SECONDS = 1.0
"""How far into the agent's prompt a ``barge_in`` line starts talking (playback time)."""
KNOWN_EVENTS = frozenset({"slot_taken"})


class TwilioCaller(CallLine):
    """Plays one scenario as an inbound Twilio call; :meth:`play` returns a :class:`CallResult`.

    Options: ``speed`` (caller audio and agent playback run that many times faster than
    real time), ``voice`` (a key of :data:`voice.simulator.voices.VOICES`: ``"espeak"``, the
    agent's own voice, by default), ``barge_in`` (every spoken line
    talks over the agent's prompt, not only the lines marked ``barge_in``),
    ``reply_timeout_s`` (how long to wait for the agent before going on regardless),
    ``settle_s`` (the pause after the agent's prompt before the caller answers),
    ``hangup_timeout_s`` (how long after the last answer to wait for the server to hang
    up), ``load_from_db`` (read the call and its turns afterwards; the bench does not).
    Credentials default to ``TWILIO_AUTH_TOKEN``, ``TWILIO_ACCOUNT_SID`` and
    ``PUBLIC_BASE_URL``: the server validates against the same settings.

    One instance places one call: :meth:`play` once.
    """

    def __init__(
        self,
        transport: Transport,
        scenario: scenarios.Scenario,
        *,
        speed: float = 1.0,
        voice: Voice | None = None,
        barge_in: bool = False,
        auth_token: str | None = None,
        account_sid: str | None = None,
        public_base_url: str | None = None,
        to_number: str = "+16175550100",
        reply_timeout_s: float = 30.0,
        settle_s: float = 0.3,
        hangup_timeout_s: float = 10.0,
        late_tolerance_s: float = 0.03,
        load_from_db: bool = True,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        # The scenario may name its caller's voice; otherwise the agent's own (espeak).
        voice = voice or scenario.caller_voice or "espeak"
        voice_spec(voice)  # an unknown voice fails here, before the call is placed
        unknown = {line.event for line in scenario.lines if line.event} - KNOWN_EVENTS
        if unknown:
            raise ValueError(f"unknown scenario events: {sorted(unknown)}")
        self.transport = transport
        self.scenario = scenario
        self.voice: Voice = voice
        self.barge_in = barge_in
        self.auth_token = auth_token if auth_token is not None else settings.TWILIO_AUTH_TOKEN
        self.public_base_url = (
            public_base_url if public_base_url is not None else settings.PUBLIC_BASE_URL
        ).rstrip("/")
        self.to_number = to_number
        self.hangup_timeout_s = hangup_timeout_s
        self.load_from_db = load_from_db

        sid = account_sid if account_sid is not None else settings.TWILIO_ACCOUNT_SID
        messages = StreamMessages(
            stream_sid=new_sid("MZ"), call_sid=new_sid("CA"), account_sid=sid or new_sid("AC")
        )
        super().__init__(
            messages,
            CallResult(
                scenario=scenario,
                call_sid=messages.call_sid,
                stream_sid=messages.stream_sid,
                account_sid=messages.account_sid,
                started_at=time.monotonic(),
            ),
            speed=speed,
            late_tolerance_s=late_tolerance_s,
            reply_timeout_s=reply_timeout_s,
            settle_s=settle_s,
        )

    # --- construction shortcuts ------------------------------------------------------------

    @classmethod
    async def in_process(
        cls, application: Any | None, scenario: scenarios.Scenario, **options: Any
    ) -> CallResult:
        """Play ``scenario`` against ``application`` in this process (tests).

        ``application`` is the ASGI app for the stream (None: ``clinic.asgi.application``);
        the webhook goes through the test client. Needs a database the test may write to
        from other threads (``django_db(transaction=True)``).
        """
        return await cls(InProcessTransport(application), scenario, **options).play()

    @classmethod
    async def over_network(
        cls, base_url: str, scenario: scenarios.Scenario, **options: Any
    ) -> CallResult:
        """Play ``scenario`` against a running server at ``base_url``."""
        return await cls(NetworkTransport(base_url), scenario, **options).play()

    # --- the call ----------------------------------------------------------------------------

    async def play(self) -> CallResult:
        """Place the call, play every line, hang up or wait to be hung up; return the result."""
        result = self.result
        instruction = await self._answer()
        result.dial = instruction.dial
        signature = twilio_signature(self.auth_token, instruction.url)
        self._socket = await self.transport.open_stream(instruction.url, signature)
        log.info(
            "simulated_call_connected",
            call_sid=result.call_sid,
            scenario=self.scenario.slug,
            lines=len(self.scenario.lines),
            speed=self.speed,
        )
        await self._send(self.messages.connected, kind="connected")
        await self._send(
            functools.partial(self.messages.start, instruction.parameters), kind="start"
        )
        self._start_sent_at = time.monotonic()
        receiver = asyncio.create_task(self._receive(), name=f"receive-{result.call_sid}")
        helpers = [
            asyncio.create_task(self._pace(), name=f"pace-{result.call_sid}"),
            asyncio.create_task(self._echo_marks(), name=f"marks-{result.call_sid}"),
        ]
        try:
            await self._play_lines()
        finally:
            if not self._closed.is_set():
                await self._hang_up()
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await receiver  # ends with the socket; re-raises a crash of the in-process app
        result.duration_s = time.monotonic() - result.started_at
        result.frames_late = self.playback.late_frames
        result.max_lateness_ms = self.playback.max_lateness_s * 1000
        for line in result.lines:
            speech = [s for s in result.agent_speech if s.line == line.index]
            line.agent_ms = sum(s.audio_ms for s in speech)
        log.info(
            "simulated_call_ended",
            call_sid=result.call_sid,
            server_closed=result.server_closed,
            close_code=result.close_code,
            warnings=len(result.warnings),
        )
        if self.load_from_db:
            result.call, result.transcript = await load_call(result.call_sid)
        return result

    async def _answer(self) -> StreamInstruction:
        params = {
            "CallSid": self.messages.call_sid,
            "AccountSid": self.messages.account_sid,
            "From": self.scenario.caller_number,
            "To": self.to_number,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        signature = twilio_signature(self.auth_token, self.public_base_url + ANSWER_PATH, params)
        status, body = await self.transport.post_answer(ANSWER_PATH, params, signature)
        if status != 200:
            raise SimulatorError(f"{ANSWER_PATH} answered HTTP {status}")
        return parse_twiml(body)

    async def _play_lines(self) -> None:
        result = self.result
        after = 0  # agent speech counted before the caller's last action
        for index, line in enumerate(self.scenario.lines, start=1):
            barge = line.barge_in or (self.barge_in and bool(line.caller))
            answered = await self._wait_for_agent(after, finished=not barge)
            if self._closed.is_set():
                result.warnings.append(
                    f"the agent hung up before line {index} {LineResult.describe(line)!r}"
                )
                return
            if not answered:
                result.warnings.append(self._no_answer(index - 1))
            if barge:
                await self._sleep(BARGE_IN_AFTER_SECONDS / self.speed)
            record = LineResult(index, line, time.monotonic(), timezone.now())
            record.interrupted_agent = barge
            result.lines.append(record)
            self._line = index
            if line.event:
                await self._world_event(line.event)
                continue  # the agent has nothing to answer: the next line follows at once
            if line.hangup:
                await self._hang_up()
                return
            if line.press:
                after = await self._press(line.press, record)
            elif line.silence:
                after = len(result.agent_speech)
                await self._sleep(line.silence / self.speed)
            else:
                after = await self._speak(line.caller, record)
        if self._closed.is_set():
            return
        # The last line's answer, then the server should end the call (goodbye, transfer).
        if not await self._wait_for_agent(after, finished=True):
            result.warnings.append(self._no_answer(len(self.scenario.lines)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.hangup_timeout_s):
                await self._closed.wait()
        if not self._closed.is_set():
            result.warnings.append(
                f"the agent did not hang up within {self.hangup_timeout_s:g} s of its last answer"
            )

    def _no_answer(self, index: int) -> str:
        what = (
            f"line {index} {LineResult.describe(self.scenario.lines[index - 1])!r}"
            if index
            else "the call"
        )
        return f"{what}: the agent did not answer within {self.reply_timeout_s:g} s"

    # --- the caller's actions -----------------------------------------------------------------

    async def _speak(self, text: str, record: LineResult) -> int:
        """Say ``text`` on the paced stream; return the agent stretches counted as it ended.

        The count is taken by the pacer as the last voiced frame goes out, so that an answer
        arriving at once is never mistaken for speech that came before it.
        """
        frames = await caller_frames(text, self.voice)
        record.speech_ms = len(frames) * FRAME_MS
        if not frames:
            record.action_ended_at = time.monotonic()
            return len(self.result.agent_speech)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._voice_line = record
        self._awaiting_reply = record
        self._voice_frames = deque(frames)
        self._voice_done = done
        closed = asyncio.ensure_future(self._closed.wait())
        waiters: set[asyncio.Future[Any]] = {done, closed}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        return (
            done.result() if done.done() and not done.cancelled() else len(self.result.agent_speech)
        )

    async def _press(self, keys: str, record: LineResult) -> int:
        """Press ``keys`` one by one; return the agent stretches counted after the last."""
        for position, key in enumerate(keys):
            if position:
                await self._sleep(DTMF_GAP_SECONDS / self.speed)
            await self._send(functools.partial(self.messages.dtmf, key), kind="dtmf")
        record.action_ended_at = time.monotonic()
        self._awaiting_reply = record
        return len(self.result.agent_speech)

    async def _world_event(self, event: str) -> None:
        if event == "slot_taken":
            await take_offered_slot(self.messages.call_sid)
