"""One call on the line: caller audio to STT, turns to the conversation, speech back out.

A :class:`CallSession` belongs to one media stream. Three tasks run for it:

- ``_listen`` reads transcript events from the recogniser. Caller speech while the agent is
  talking is a barge-in unless it is only a backchannel ("mm-hm"): playback is cleared and
  the interrupted turn is marked. At the end of the caller's turn the text goes to the queue.
- ``_converse`` takes events (caller turns, silences, keys, the end) one at a time, hands them
  to the conversation and carries out its actions, so a call's turns never overlap.
- ``_play`` synthesises queued utterances and sends them as 20 ms frames, each utterance
  followed by a ``mark``; Twilio echoes the mark once it has been played.

Everything the call learns is written by the conversation as it happens; the session keeps
only what playback and timers need, so losing the process loses no turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.db import DatabaseError
from django.utils import timezone

from clinic.hours import parse_opening_hours
from clinic.logs import get_logger
from intake import services as intake_services
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
    prompts,
)
from intake.models import Call, Turn
from voice import drain, heartbeat, metrics
from voice.audio import MulawFramer
from voice.deferred import deferred_writes
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
from voice.twilio_wire import clear_message, mark_message, media_message

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
class Utterance:
    text: str
    turn_id: int | None
    mark: str
    requested_at: float = 0.0
    first_audio_at: float | None = None
    interrupted: bool = False


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
        self._speech: asyncio.Queue[Utterance] = asyncio.Queue()
        self._pending_marks: dict[str, Utterance] = {}
        self._current: Utterance | None = None
        self._streaming: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._heard = CallerTurn()
        self._speech_ended_at: float | None = None
        self._barge_started_at: float | None = None
        self._ending: Action | None = None
        self._digits = ""
        self._marks = 0
        self._finished = asyncio.Event()
        self._closed = False
        self._group = f"call.{call_id}"
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
        loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(
                self._listen() if listening else asyncio.sleep(0), name=f"listen-{self.call_id}"
            ),
            asyncio.create_task(self._converse(), name=f"converse-{self.call_id}"),
            asyncio.create_task(self._play(), name=f"play-{self.call_id}"),
            asyncio.create_task(self._keep_alive(), name=f"keepalive-{self.call_id}"),
            asyncio.create_task(heartbeat.keep_beating(self), name=f"heartbeat-{self.call_id}"),
        ]
        drain.register(self)
        self._timers["max"] = loop.call_later(
            self.settings.max_call_seconds, self._queue, CallEnded("max_duration")
        )
        self._queue(CallStarted() if listening else KeyPressed("0"))

    async def finish(self, reason: str) -> None:
        """The stream stopped or the socket was lost: end the call and release everything."""
        if self._closed:
            return
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
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
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=5)
        with contextlib.suppress(Exception):
            await self.stt.close()
        with contextlib.suppress(Exception):
            await self.tts.aclose()
        engine_close = getattr(self.conversation.engine, "aclose", None)
        if engine_close is not None:  # the OpenAI engine's HTTP client
            with contextlib.suppress(Exception):
                await engine_close()
        metrics.ACTIVE_CALLS.dec()
        try:
            outcome = await database_sync_to_async(
                lambda: (
                    Call.objects.filter(pk=self.call_id).values_list("outcome", flat=True).first()
                )
            )()
        except DatabaseError:
            outcome = None  # the deferred writes will record it once the database is back
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
            and self._speech.empty()
            and not self._agent_speaking()
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
            self._cancel_timer(name)
        while not self._speech.empty():
            self._speech.get_nowait()
        if self._streaming is not None and not self._streaming.done():
            self._streaming.cancel()
        if self._pending_marks or self._current is not None:
            self._pending_marks.clear()
            await self._send(clear_message(self.stream_sid))
        log.info("call_hand_over_started", call_id=self.call_id, reason=reason, transfer=transfer)
        turn_id = await drain.record_hand_over(
            call_id=self.call_id, line=line, transfer=transfer, reason=reason
        )
        self._marks += 1
        utterance = Utterance(line, turn_id, f"u{self._marks}", requested_at=time.perf_counter())
        self._speech.put_nowait(utterance)
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
        if digit == "#":
            self._flush_digits()
            return
        self._digits += digit
        self._cancel_timer("dtmf")
        self._timers["dtmf"] = asyncio.get_running_loop().call_later(
            self.settings.dtmf_gap_seconds, self._flush_digits
        )

    async def on_mark(self, name: str) -> None:
        utterance = self._pending_marks.pop(name, None)
        if utterance is None:
            return  # a mark from before a clear, or one we never sent
        if not self._pending_marks and self._speech.empty() and self._current is None:
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
        self._cancel_timer("silence")
        self._speech_ended_at = time.perf_counter()
        stt_ms = round(heard.stt_latency_ms) if heard.stt_latency_ms is not None else None
        self._queue(CallerSaid(text, heard.confidence, stt_ms))

    async def _barge_in(self) -> None:
        """The caller talks over the agent: stop playback now and drop what is queued."""
        if isinstance(self._ending, HangUp | Transfer):
            return  # the last words (goodbye, transfer) are always played out
        started = self._barge_started_at or time.perf_counter()
        self._barge_started_at = None
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
        for utterance in interrupted:
            if utterance.turn_id is not None:
                await self._update_turn(utterance.turn_id, interrupted=True)
        log.info("barge_in", call_id=self.call_id, utterances=len(interrupted))

    def _listening(self) -> None:
        """The caller started speaking while the agent was quiet."""
        self._cancel_timer("silence")
        if self._ending is None:
            self._timers["silence"] = asyncio.get_running_loop().call_later(
                self.settings.listening_limit_seconds, self._arm_silence
            )

    def _nothing_heard(self) -> None:
        """Sound that never became words (noise, a cough): the caller still owes an answer,
        so the silence timer runs again rather than leaving them waiting."""
        if not self._agent_speaking() and self._ending is None and self._events.empty():
            self._arm_silence()

    def _flush_digits(self) -> None:
        self._cancel_timer("dtmf")
        digits, self._digits = self._digits, ""
        if digits:
            self._cancel_timer("silence")
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
                await self._publish("caller", event.text)
            started = time.perf_counter()
            try:
                actions = await self._handle(event)
            except Exception as exc:
                # A failure in one turn must not drop the call: hand it to a person instead.
                if isinstance(exc, DatabaseError):
                    log.error("conversation_failed", call_id=self.call_id, error="database")
                else:
                    log.exception("conversation_failed", call_id=self.call_id)
                actions = self._fail_over(event, exc)
            understanding = self.conversation.last_understanding
            if isinstance(event, CallerSaid) and understanding is not None:
                metrics.UNDERSTANDING_TIME.observe(time.perf_counter() - started)
            await self._perform(actions)
            if isinstance(event, CallEnded):
                if event.reason == "max_duration":
                    await self._close("max_duration")
                return

    async def _handle(self, event: Event) -> list[Action]:
        """The conversation's answer to ``event``, riding out a short database outage.

        Each attempt is one transaction (the conversation's step), so a retry repeats nothing
        that was stored. The caller hears "one moment" once while the retries go on.
        """
        deadline = time.monotonic() + self.settings.database_retry_seconds
        delay = 0.25
        told_to_wait = False
        while True:
            try:
                return await self.conversation.handle(event)
            except DatabaseError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("conversation_retry", call_id=self.call_id, error=type(exc).__name__)
                if not told_to_wait and not isinstance(event, CallEnded | Silence):
                    told_to_wait = True
                    await self._perform([Say(prompts.ONE_MOMENT)])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _fail_over(self, event: Event, error: BaseException) -> list[Action]:
        """Hand the caller to a person now; record it (and their words) when the database can.

        Needs no database: the apology is spoken from the prompt cache and the record waits
        in :mod:`voice.deferred` until the database answers again.
        """
        said: str | None = None
        if isinstance(event, CallerSaid):
            said = event.text
        elif isinstance(event, KeyPressed):
            said = f"(keypad) {event.keys}"
        cause = "database_unavailable" if isinstance(error, DatabaseError) else "agent_error"
        call_id = self.call_id

        def record() -> None:
            intake_services.call_fail_over(call_id=call_id, caller_said=said, cause=cause)

        deferred_writes().submit("call_fail_over", call_id, record)
        if isinstance(event, CallEnded):
            return []  # the line is already closed
        if self._front_desk_open():
            return [Say(prompts.TROUBLE_TRANSFER), Transfer()]
        return [Say(prompts.TROUBLE_CALLBACK), HangUp()]

    @staticmethod
    def _front_desk_open() -> bool:
        hours = parse_opening_hours(django_settings.CLINIC_OPENING_HOURS, django_settings.TIME_ZONE)
        return bool(django_settings.FRONT_DESK_NUMBER) and hours.is_open(timezone.now())

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Say):
                self._cancel_timer("silence")  # re-armed once this has been played
                self._marks += 1
                utterance = Utterance(action.text, action.turn_id, f"u{self._marks}")
                utterance.requested_at = time.perf_counter()
                self._speech.put_nowait(utterance)
                await self._publish("agent", action.text)
            elif isinstance(action, Expect):
                await self.stt.set_hints(action.hints)
            elif isinstance(action, HangUp | Transfer):
                self._ending = action
        if self._ending is not None and self._speech.empty() and not self._pending_marks:
            if self._current is None:
                await self._end_line()

    async def _publish(self, speaker: str, text: str) -> None:
        """Tell staff pages about the turn: best effort, beside the call, never in its way.

        The call does not wait for the channel layer, and a layer that is down or slow (Redis
        restarting) costs a dropped live event, counted, never the call.
        """
        layer = get_channel_layer()
        if layer is None:
            return
        message = {"type": "call.turn", "speaker": speaker, "text": text}

        async def publish() -> None:
            try:
                await asyncio.wait_for(
                    layer.group_send(self._group, message),
                    self.settings.live_publish_timeout_seconds,
                )
            except Exception as exc:
                metrics.LIVE_EVENTS_DROPPED.inc()
                log.warning("live_event_dropped", call_id=self.call_id, error=type(exc).__name__)

        task = asyncio.create_task(publish())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # --- the agent's voice ----------------------------------------------------------------

    def _agent_speaking(self) -> bool:
        return self._current is not None or bool(self._pending_marks)

    async def _play(self) -> None:
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
            first_byte_ms = (now - utterance.requested_at) * 1000
            metrics.TTS_FIRST_BYTE.observe(first_byte_ms / 1000)
            response_ms = None
            if self._speech_ended_at is not None:
                response_ms = (now - self._speech_ended_at) * 1000
                self._speech_ended_at = None
                metrics.RESPONSE_LATENCY.observe(response_ms / 1000)
            if utterance.turn_id is not None:
                # Written beside playback, not in its way; finish() waits for these writes.
                write = asyncio.create_task(
                    self._update_turn(
                        utterance.turn_id,
                        tts_first_byte_ms=round(first_byte_ms),
                        response_latency_ms=round(response_ms) if response_ms else None,
                    )
                )
                self._writes.add(write)
                write.add_done_callback(self._writes.discard)
        await self._send(media_message(self.stream_sid, frame))

    async def _agent_done_speaking(self) -> None:
        if self._ending is not None:
            await self._end_line()
            return
        self._arm_silence()

    def _arm_silence(self) -> None:
        self._cancel_timer("silence")
        self._timers["silence"] = asyncio.get_running_loop().call_later(
            self.settings.silence_seconds, self._queue, Silence(self.settings.silence_seconds)
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

    # --- helpers --------------------------------------------------------------------------

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    async def _update_turn(
        self,
        turn_id: int,
        *,
        tts_first_byte_ms: int | None = None,
        response_latency_ms: int | None = None,
        interrupted: bool | None = None,
    ) -> None:
        def update() -> None:
            turn = Turn.objects.filter(pk=turn_id).first()
            if turn is not None:
                intake_services.turn_update_timings(
                    turn=turn,
                    tts_first_byte_ms=tts_first_byte_ms,
                    response_latency_ms=response_latency_ms,
                    interrupted=interrupted,
                )

        try:
            await database_sync_to_async(update)()
        except DatabaseError as exc:
            # Timings and the interrupted flag are not worth holding up the call for.
            log.warning("turn_timing_not_recorded", call_id=self.call_id, error=type(exc).__name__)
