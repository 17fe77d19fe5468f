"""The Twilio media-stream WebSocket: checks who is connecting, then feeds one CallSession.

Thin by design: the wire format lives in :mod:`voice.twilio_wire`, the call in
:mod:`voice.session`. The handshake must carry a valid Twilio signature for the public
``wss://`` URL, and the first ``start`` must carry a valid, unexpired, unused per-call token
(issued by ``/voice/answer``); otherwise the socket closes with a 44xx code. Malformed or
out-of-order messages are logged (without PHI), counted and dropped: they never end a call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from clinic.logs import get_logger
from intake.conversation import Conversation, prompts
from voice import metrics
from voice.budget import MessageBudget
from voice.session import CallSession, SessionSettings
from voice.signatures import valid_websocket_signature
from voice.stt import stt_from_settings
from voice.tokens import astream_token_redeem
from voice.tts import PromptCache, prompt_engine_from_settings, tts_from_settings
from voice.twilio_wire import Connected, Dtmf, MalformedMessage, Mark, Media, Start, Stop, parse

log = get_logger(__name__)

CLOSE_BAD_SIGNATURE = 4403
CLOSE_BAD_TOKEN = 4401
CLOSE_NO_START = 4408
CLOSE_BAD_FORMAT = 4415
CLOSE_UNAVAILABLE = 1013  # "try again later": the stream's dependencies are down
START_TIMEOUT_SECONDS = 10.0


class MediaStreamConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    # The media stream takes nothing from the channel layer: audio, marks and control stay on
    # this socket, so a Redis outage or restart can never end a call. Naming a layer alias that
    # is not configured makes Channels run the consumer without one (get_channel_layer -> None).
    channel_layer_alias = "media-stream:no-channel-layer"

    session: CallSession | None = None
    budget: MessageBudget
    _start_timer: asyncio.TimerHandle | None = None
    _stopped = False
    _call_sid = ""

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its per-message ``close_old_connections``.

        Channels runs that in the process's single thread for synchronous work before every
        message, which for a media stream is 50 thread hops a second per call, queued with
        every call's database work. This consumer touches the database only through
        ``database_sync_to_async``, which closes stale connections itself.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.budget = MessageBudget()
        if not valid_websocket_signature(self.scope):
            log.warning("stream_rejected", reason="bad_signature")
            await self.close(code=CLOSE_BAD_SIGNATURE)
            return
        await self.accept()
        loop = asyncio.get_running_loop()
        self._start_timer = loop.call_later(
            START_TIMEOUT_SECONDS, lambda: asyncio.ensure_future(self._no_start())
        )

    async def _no_start(self) -> None:
        if self.session is None:
            log.warning("stream_rejected", reason="no_start")
            await self.close(code=CLOSE_NO_START)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"")
        if not self.budget.admit_message(len(raw)):
            return  # a flood: dropped unread, counted (voice.budget)
        try:
            event = parse(raw)
        except MalformedMessage as exc:
            self._drop(exc.reason)
            return
        if isinstance(event, Connected) or not self.budget.admit_event(event):
            return
        if isinstance(event, Start):
            await self._start(event)
            return
        session = self.session
        if session is None or event.stream_sid != session.stream_sid:
            self._drop(f"before_start:{type(event).__name__.lower()}")
            return
        if isinstance(event, Media):
            if event.track in ("inbound", "inbound_track"):
                await session.on_media(event.payload)
        elif isinstance(event, Dtmf):
            await session.on_dtmf(event.digit)
        elif isinstance(event, Mark):
            await session.on_mark(event.name)
        elif isinstance(event, Stop):
            self._stopped = True
            await session.finish("stop")

    async def _start(self, start: Start) -> None:
        if self.session is not None:
            self._drop("duplicate_start")
            return
        if not start.media_format.is_mulaw_8k_mono:
            log.warning("stream_rejected", reason="media_format")
            await self.close(code=CLOSE_BAD_FORMAT)
            return
        token = start.custom_parameters.get("token", "")
        try:
            call = await astream_token_redeem(token, call_sid=start.call_sid)
        except DatabaseError as exc:
            # Closing the stream lets Twilio run the <Dial> after it: the caller reaches the
            # front desk; the call row is finished by the sweep once the database is back.
            log.error("stream_rejected", reason="database_unavailable", error=type(exc).__name__)
            await self.close(code=CLOSE_UNAVAILABLE)
            return
        if call is None or call.call_sid != start.call_sid:
            log.warning("stream_rejected", reason="bad_token", call_sid=start.call_sid)
            await self.close(code=CLOSE_BAD_TOKEN)
            return
        if self._start_timer is not None:
            self._start_timer.cancel()
        self._call_sid = start.call_sid

        self.budget.call_id = call.pk
        self.session = CallSession(
            call_id=call.pk,
            stream_sid=start.stream_sid,
            send=self._send_text,
            close=self._hang_up,
            stt=stt_from_settings(call_id=str(call.pk)),
            tts=tts_from_settings(cache=prompt_cache(), call_id=str(call.pk)),
            conversation=Conversation(call.pk),
            settings=SessionSettings(
                silence_seconds=settings.CALL_SILENCE_SECONDS,
                max_call_seconds=settings.CALL_MAX_SECONDS,
                database_retry_seconds=settings.CALL_DATABASE_RETRY_SECONDS,
            ),
        )
        log.info("stream_started", call_id=call.pk, call_sid=start.call_sid)
        await self.session.start()

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def _hang_up(self, reason: str) -> None:
        """The agent is done (goodbye or transfer): close the stream.

        TwiML continues after <Connect>: with a front-desk number that is the <Dial> that
        hands the caller over; a hang-up additionally ends the call through Twilio's REST API
        when credentials are configured (see voice.telephony).
        """
        from voice.telephony import end_call

        if reason != "transfer" and self._call_sid:
            await end_call(self._call_sid)
        await self.close(code=1000)

    async def disconnect(self, code: int) -> None:
        if self._start_timer is not None:
            self._start_timer.cancel()
        if self.session is not None:
            await self.session.finish("stop" if self._stopped else "socket_lost")

    def _drop(self, reason: str) -> None:
        metrics.MALFORMED.labels(reason=reason.split(":")[0]).inc()
        log.warning("stream_message_dropped", reason=reason)


_PROMPT_CACHE: PromptCache | None = None


def prompt_texts() -> list[str]:
    """Every sentence the agent says word for word: the greeting, the conversation's fixed
    prompts and the drain's hand-over lines (a stopping server must not need live synthesis)."""
    from voice.drain import HANDOVER_LINES

    greeting = prompts.GREETING.format(clinic=settings.CLINIC_NAME)
    return [greeting, *prompts.FIXED_PROMPTS, *HANDOVER_LINES]


def prompt_cache() -> PromptCache:
    """The process's cache of fixed prompts, warming in the background from first use.

    ``manage.py serve`` waits for it (:func:`prompt_cache_ready`) before opening its port;
    a call that starts before warming ends (tests, a bare Daphne) synthesises live.
    """
    global _PROMPT_CACHE, _WARMING
    if _PROMPT_CACHE is None:
        _PROMPT_CACHE = PromptCache()
        _WARMING = asyncio.create_task(
            _PROMPT_CACHE.warm(prompt_texts(), prompt_engine_from_settings())
        )
    return _PROMPT_CACHE


async def prompt_cache_ready() -> int:
    """Start warming if nothing has yet, wait for it; returns how many prompts are cached."""
    cache = prompt_cache()
    if _WARMING is not None:
        await asyncio.shield(_WARMING)
    return len(cache)


_WARMING: asyncio.Task[int] | None = None
