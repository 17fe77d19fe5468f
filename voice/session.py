"""One call on the line: caller audio to STT, turns to the conversation, speech back out.

A :class:`CallSession` belongs to one media stream. Three tasks run for it:

- ``_listen`` reads transcript events from the recogniser. Caller speech while the agent is
  talking is a barge-in unless it is only a backchannel ("mm-hm"): playback is cleared and
  the interrupted turn is marked. At the end of the caller's turn the text goes to the queue.
- ``_converse`` takes events (caller turns, silences, keys, the end) one at a time, hands them
  to the conversation and carries out its actions, so a call's turns never overlap.
- ``_play`` synthesises queued utterances and sends them as 20 ms frames, each utterance
  followed by a ``mark``; Twilio echoes the mark once it has been played
  (:mod:`voice.session_speech`).

Everything the call learns is written by the conversation as it happens; the session keeps
only what playback and timers need, so losing the process loses no turn. The pieces with state
or dependencies of their own live beside it: the agent's voice (:mod:`voice.session_speech`),
the database retry and fail-over (:mod:`voice.session_db`), timers and the keypad
(:mod:`voice.session_timers`) and live events for staff pages (:mod:`voice.session_live`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.db import DatabaseError

from clinic.logs import get_logger
from intake.conversation import (
    Action,
    CallEnded,
    CallerSaid,
    CallStarted,
    Conversation,
    Event,
    Expect,
    HangUp,
    KeyPressed,
    Say,
    Silence,
    Transfer,
)
from voice import drain, heartbeat, metrics
from voice.session_db import call_outcome, fail_over, handle_with_retry, update_turn
from voice.session_live import SideTasks, publish_turn
from voice.session_speech import AgentVoice, Utterance
from voice.session_timers import CallTimers, Keypad
from voice.stt.base import (
    Final,
    Interim,
    NothingHeard,
    SpeechStarted,
    SpeechToText,
    SpeechToTextError,
    UtteranceEnd,
)
from voice.tts.base import TextToSpeech

__all__ = [
    "BACKCHANNELS",
    "CallSession",
    "CallerTurn",
    "SessionSettings",
    "Utterance",
    "is_backchannel",
]

log = get_logger(__name__)

# Words that acknowledge without taking the turn; they never interrupt the agent.
BACKCHANNELS = frozenset(
    {
        "mm",
        "mhm",
        "mm-hm",
        "mmhm",
        "hmm",
        "uh-huh",
        "uh",
        "huh",
        "um",
        "okay",
        "ok",
        "yeah",
        "yep",
        "right",
        "sure",
        "alright",
        "i",
        "see",
    }
)


def is_backchannel(text: str) -> bool:
    words = [word.strip(".,!?").lower() for word in text.split()]
    return bool(words) and len(words) <= 3 and all(word in BACKCHANNELS for word in words)


@dataclass(frozen=True)
class SessionSettings:
    silence_seconds: float = 6.0
    max_call_seconds: float = 900.0
    dtmf_gap_seconds: float = 2.5
    keep_alive_seconds: float = 5.0
    # How long a turn may keep failing on the database before the caller is apologised to
    # and handed to a person. Short: the caller is waiting in silence (after "one moment").
    database_retry_seconds: float = 6.0
    # The silence timer stops while the caller speaks and while their words are decoded; if
    # the recogniser never reports back, the timer runs again after this long regardless.
    listening_limit_seconds: float = 45.0
    live_publish_timeout_seconds: float = 0.5


@dataclass
class CallerTurn:
    """What the recogniser has heard of the caller's current turn."""

    finals: list[str] = field(default_factory=list)
    confidence: float = 1.0
    stt_latency_ms: float | None = None
    started_over_agent: bool = False


Sender = Callable[[str], Awaitable[None]]
Closer = Callable[[str], Awaitable[None]]


class CallSession:
    def __init__(
        self,
        *,
        call_id: int,
        stream_sid: str,
        send: Sender,
        close: Closer,
        stt: SpeechToText,
        tts: TextToSpeech,
        conversation: Conversation,
        settings: SessionSettings | None = None,
    ) -> None:
        self.call_id = call_id
        self.stream_sid = stream_sid
        self._send = send
        self._close = close
        self.stt = stt
        self.tts = tts
        self.conversation = conversation
        self.settings = settings or SessionSettings()
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._voice = AgentVoice(
            call_id=call_id,
            stream_sid=stream_sid,
            send=send,
            tts=tts,
            on_first_audio=self._first_audio,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._side = SideTasks()
        self._timers = CallTimers()
        self._keypad = Keypad(
            self._timers, gap_seconds=self.settings.dtmf_gap_seconds, on_entry=self._keys_entered
        )
        self._heard = CallerTurn()
        self._speech_ended_at: float | None = None
        self._barge_started_at: float | None = None
        self._ending: Action | None = None
        self._failed_over = False
        self._finished = asyncio.Event()
        self._closed = False
        self._in_turn = False  # the conversation is handling an event (see at_safe_point)
        self._line_closed = asyncio.Event()  # the agent closed the stream (see hand_over)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, hints: list[str] | None = None) -> None:
        metrics.ACTIVE_CALLS.inc()
        try:
            await self.stt.start(hints or [])
            listening = True
        except SpeechToTextError as exc:
            # No recogniser at all (the hosted one and the offline fallback both failed):
            # nobody can hear the caller, so they go straight to a person, as mid-call.
            log.error("stt_unavailable", call_id=self.call_id, error=str(exc))
            listening = False
        self._tasks = [
            asyncio.create_task(
                self._listen() if listening else asyncio.sleep(0), name=f"listen-{self.call_id}"
            ),
            asyncio.create_task(self._converse(), name=f"converse-{self.call_id}"),
            asyncio.create_task(self._voice.play(), name=f"play-{self.call_id}"),
            asyncio.create_task(self._keep_alive(), name=f"keepalive-{self.call_id}"),
            asyncio.create_task(heartbeat.keep_beating(self), name=f"heartbeat-{self.call_id}"),
        ]
        drain.register(self)
        self._timers.set(
            "max", self.settings.max_call_seconds, self._queue, CallEnded("max_duration")
        )
        self._queue(CallStarted() if listening else KeyPressed("0"))

    async def finish(self, reason: str) -> None:
        """The stream stopped or the socket was lost: end the call and release everything."""
        if self._closed:
            return
        self._closed = True
        self._timers.cancel_all()
        self._events.put_nowait(CallEnded(reason))
        self._events.put_nowait(None)
        converse = self._tasks[1] if len(self._tasks) > 1 else None
        if converse is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(converse, timeout=10)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._side.wait(5)
        with contextlib.suppress(Exception):
            await self.stt.close()
        with contextlib.suppress(Exception):
            await self.tts.aclose()
        engine_close = getattr(self.conversation.engine, "aclose", None)
        if engine_close is not None:  # the OpenAI engine's HTTP client
            with contextlib.suppress(Exception):
                await engine_close()
        metrics.ACTIVE_CALLS.dec()
        outcome = await call_outcome(self.call_id)
        metrics.CALLS.labels(outcome=outcome or "unknown").inc()
        drain.unregister(self)
        self._finished.set()
        log.info("call_session_closed", call_id=self.call_id, reason=reason, outcome=outcome)

    async def wait_finished(self) -> None:
        await self._finished.wait()

    # --- hand-over (the process is stopping: voice.drain) ---------------------------------

    @property
    def ending(self) -> bool:
        """The line is closing already (goodbye, transfer, hang-up or hand-over under way)."""
        return self._closed or self._ending is not None

    @property
    def at_safe_point(self) -> bool:
        """Nothing in hand: no turn handled or queued, the agent silent, the caller not
        mid-answer. Handing over here loses nothing and cuts nobody off."""
        if self.ending:
            return True
        return (
            not self._in_turn
            and self._events.empty()
            and self._voice.quiet
            and not self._heard.finals
        )

    async def hand_over(self, reason: str) -> None:
        """Give the caller to people now: a short line, then transfer (or callback, closed).

        Called by the drain at a safe point, or when the grace period is over: then the turn
        in hand is dropped (what it stored stays stored) and playback is cut. The call is
        finished with a follow-up (:func:`voice.drain.record_hand_over`); the stream closes
        once the line has been played, as for any transfer, or after a bound should Twilio
        never echo its mark. Returns once the stream is closed (the session finishes when the
        socket is gone: :meth:`wait_finished`). Does nothing when the line is closing already.
        """
        if self.ending:
            return
        line, transfer = drain.handover_plan()
        self._ending = Transfer() if transfer else HangUp()
        if len(self._tasks) > 1:
            self._tasks[1].cancel()  # the conversation takes no further event
        for name in ("silence", "dtmf"):
            self._timers.cancel(name)
        await self._voice.cut()
        log.info("call_hand_over_started", call_id=self.call_id, reason=reason, transfer=transfer)
        turn_id = await drain.record_hand_over(
            call_id=self.call_id, line=line, transfer=transfer, reason=reason
        )
        self._voice.say(line, turn_id)
        try:
            await asyncio.wait_for(self._line_closed.wait(), drain.HANDOVER_PLAY_TIMEOUT_SECONDS)
        except TimeoutError:
            if not self._closed:
                log.warning("call_hand_over_unplayed", call_id=self.call_id)
                await self._end_line()

    # --- inbound from Twilio --------------------------------------------------------------

    async def on_media(self, payload: bytes) -> None:
        await self.stt.send(payload)

    async def on_dtmf(self, digit: str) -> None:
        self._arm_silence()
        self._keypad.press(digit)

    async def on_mark(self, name: str) -> None:
        if self._voice.mark_played(name):
            await self._agent_done_speaking()

    # --- the caller's words ---------------------------------------------------------------

    async def _listen(self) -> None:
        try:
            await self._read_transcripts()
        except SpeechToTextError:
            # Recognition is gone for good (reconnects exhausted): nobody can hear the
            # caller, so hand them to a person (or a callback) rather than talk into silence.
            log.error("stt_lost", call_id=self.call_id)
            self._queue(KeyPressed("0"))

    async def _read_transcripts(self) -> None:
        async for event in self.stt.events():
            if isinstance(event, SpeechStarted):
                if self._agent_speaking():
                    self._barge_started_at = time.perf_counter()
                    self._heard.started_over_agent = True
                else:
                    # The caller is talking: no "are you still there?" until the recogniser
                    # has had its say (a turn, or NothingHeard), however long that takes.
                    self._listening()
            elif isinstance(event, NothingHeard):
                self._nothing_heard()
            elif isinstance(event, Interim):
                if event.text and self._agent_speaking() and not is_backchannel(event.text):
                    await self._barge_in()
            elif isinstance(event, Final):
                if not event.text.strip():
                    continue
                if self._agent_speaking():
                    if is_backchannel(event.text):
                        continue
                    self._heard.started_over_agent = True
                    await self._barge_in()
                self._heard.finals.append(event.text.strip())
                self._heard.confidence = min(self._heard.confidence, event.confidence)
                self._heard.stt_latency_ms = event.stt_latency_ms
                metrics.STT_FINAL_LATENCY.observe(event.stt_latency_ms / 1000)
            elif isinstance(event, UtteranceEnd):
                self._end_of_caller_turn()

    def _end_of_caller_turn(self) -> None:
        heard, self._heard = self._heard, CallerTurn()
        text = " ".join(heard.finals).strip()
        if not text:
            self._nothing_heard()
            return
        if heard.started_over_agent and is_backchannel(text):
            return  # "mm-hm" while the agent spoke is not an answer
        self._timers.cancel("silence")
        self._speech_ended_at = time.perf_counter()
        stt_ms = round(heard.stt_latency_ms) if heard.stt_latency_ms is not None else None
        self._queue(CallerSaid(text, heard.confidence, stt_ms))

    async def _barge_in(self) -> None:
        """The caller talks over the agent: stop playback now and drop what is queued."""
        if isinstance(self._ending, HangUp | Transfer):
            return  # the last words (goodbye, transfer) are always played out
        started = self._barge_started_at or time.perf_counter()
        self._barge_started_at = None
        interrupted = await self._voice.interrupt(started)
        for utterance in interrupted:
            if utterance.turn_id is not None:
                await update_turn(self.call_id, utterance.turn_id, interrupted=True)
        log.info("barge_in", call_id=self.call_id, utterances=len(interrupted))

    def _listening(self) -> None:
        """The caller started speaking while the agent was quiet."""
        self._timers.cancel("silence")
        if self._ending is None:
            self._timers.set("silence", self.settings.listening_limit_seconds, self._arm_silence)

    def _nothing_heard(self) -> None:
        """Sound that never became words (noise, a cough): the caller still owes an answer,
        so the silence timer runs again rather than leaving them waiting."""
        if not self._agent_speaking() and self._ending is None and self._events.empty():
            self._arm_silence()

    def _keys_entered(self, digits: str) -> None:
        """The caller finished typing on the keypad (``#`` or a gap): that is their answer."""
        self._timers.cancel("silence")
        self._queue(KeyPressed(digits))

    # --- the conversation -----------------------------------------------------------------

    def _queue(self, event: Event) -> None:
        if not self._closed or isinstance(event, CallEnded):
            self._events.put_nowait(event)

    async def _converse(self) -> None:
        while True:
            self._in_turn = False
            event = await self._events.get()
            if event is None:
                return
            self._in_turn = True
            if self._ending is not None and not isinstance(event, CallEnded):
                continue
            if isinstance(event, CallerSaid):
                self._publish("caller", event.text)
            if isinstance(event, CallEnded) and self._failed_over:
                # The fail-over's deferred record finishes this call (with the caller's last
                # words and a follow-up); the conversation's own "caller left" must not get
                # there first with a different outcome when the database comes back.
                if event.reason == "max_duration":
                    await self._close("max_duration")
                return
            started = time.perf_counter()
            try:
                actions = await handle_with_retry(
                    self.conversation,
                    event,
                    call_id=self.call_id,
                    retry_seconds=self.settings.database_retry_seconds,
                    perform=self._perform,
                )
            except Exception as exc:
                # A failure in one turn must not drop the call: hand it to a person instead.
                if isinstance(exc, DatabaseError):
                    log.error("conversation_failed", call_id=self.call_id, error="database")
                else:
                    log.exception("conversation_failed", call_id=self.call_id)
                actions = fail_over(call_id=self.call_id, event=event, error=exc)
                self._failed_over = True
            understanding = self.conversation.last_understanding
            if isinstance(event, CallerSaid) and understanding is not None:
                metrics.UNDERSTANDING_TIME.observe(time.perf_counter() - started)
            await self._perform(actions)
            if isinstance(event, CallEnded):
                if event.reason == "max_duration":
                    await self._close("max_duration")
                return

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Say):
                self._timers.cancel("silence")  # re-armed once this has been played
                self._voice.say(action.text, action.turn_id)
                self._publish("agent", action.text)
            elif isinstance(action, Expect):
                await self.stt.set_hints(action.hints)
            elif isinstance(action, HangUp | Transfer):
                self._ending = action
        if self._ending is not None and self._voice.quiet:
            await self._end_line()

    def _publish(self, speaker: str, text: str) -> None:
        publish_turn(
            self._side,
            call_id=self.call_id,
            speaker=speaker,
            text=text,
            timeout=self.settings.live_publish_timeout_seconds,
        )

    # --- the agent's voice ----------------------------------------------------------------

    def _agent_speaking(self) -> bool:
        return self._voice.speaking

    def _first_audio(self, utterance: Utterance, now: float) -> None:
        """An utterance's first audio is going out: time the response and the synthesis."""
        first_byte_ms = (now - utterance.requested_at) * 1000
        metrics.TTS_FIRST_BYTE.observe(first_byte_ms / 1000)
        response_ms = None
        if self._speech_ended_at is not None:
            response_ms = (now - self._speech_ended_at) * 1000
            self._speech_ended_at = None
            metrics.RESPONSE_LATENCY.observe(response_ms / 1000)
        if utterance.turn_id is not None:
            # Written beside playback, not in its way; finish() waits for these writes.
            self._side.start(
                update_turn(
                    self.call_id,
                    utterance.turn_id,
                    tts_first_byte_ms=round(first_byte_ms),
                    response_latency_ms=round(response_ms) if response_ms else None,
                )
            )

    async def _agent_done_speaking(self) -> None:
        if self._ending is not None:
            await self._end_line()
            return
        self._arm_silence()

    def _arm_silence(self) -> None:
        self._timers.set(
            "silence",
            self.settings.silence_seconds,
            self._queue,
            Silence(self.settings.silence_seconds),
        )

    async def _end_line(self) -> None:
        reason = "transfer" if isinstance(self._ending, Transfer) else "hangup"
        self._line_closed.set()
        await self._close(reason)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.settings.keep_alive_seconds)
            if self._agent_speaking():
                with contextlib.suppress(Exception):
                    await self.stt.keep_alive()
