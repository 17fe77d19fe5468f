"""Deepgram live streaming speech-to-text (``/v1/listen`` WebSocket) through deepgram-sdk v7.

The caller's 8 kHz mu-law goes to Deepgram untouched (no resampling on our side). Deepgram
answers with ``Results`` (interim and final), ``SpeechStarted`` and ``UtteranceEnd``, which
are mapped to the events of :mod:`voice.stt.base`.

A phone call outlives many network hiccups, so a dropped socket is reconnected within the call.
To lose no words, every byte of audio sent since the last final transcript is kept (the
"replay buffer") and sent again on the new socket before live audio resumes. Finals tell us
how far Deepgram has got: ``start + duration`` of an ``is_final`` result is the end of the
audio it covers, and everything before that point is dropped from the buffer.

Hints become Nova-3 key terms: ``keyterm`` query parameters when the socket opens, and a
``Configure`` message when they change mid-call (no reconnect needed).

Given an :class:`clinic.circuit.Attempt` of the process's ``deepgram_stt`` breaker, the call
reports how Deepgram did: connecting at the start (or any reconnect) is the service answering;
giving up, at the start or mid-call once the reconnects are spent, is a failure. While the
breaker is open, :func:`voice.stt.stt_from_settings` gives new calls the offline recogniser.

Timeouts: the WebSocket handshake (TCP, TLS, upgrade) is bounded by ``connect_timeout_s`` and
closing by ``close_timeout_s``. A socket that goes quiet mid-call is found by the websockets
library's keep-alive pings (every 20 s, 20 s to answer; the SDK does not let them be set) and
by Deepgram closing a stream that gets no audio for 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.listen.v1 import (
    ListenV1Configure,
    ListenV1ConfigureFailure,
    ListenV1ConfigureSuccess,
    ListenV1Error,
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from deepgram.listen.v1.socket_client import AsyncV1SocketClient

from clinic.circuit import Attempt
from clinic.logs import get_logger
from voice.audio import TWILIO_RATE
from voice.stt._events import EventStream
from voice.stt.base import (
    Final,
    Interim,
    NothingHeard,
    SpeechStarted,
    SpeechToTextError,
    TranscriptEvent,
    UtteranceEnd,
    normalise_hints,
)

log = get_logger(__name__)

PRODUCTION_HTTP = DeepgramClientEnvironment.PRODUCTION.base
CIRCUIT = "deepgram_stt"
"""This provider's name for its circuit breaker and the breaker gauge."""
_REPLAY_CHUNK = 3200  # 400 ms per message when re-sending buffered audio


def deepgram_environment(base_url: str) -> DeepgramClientEnvironment:
    """The SDK environment for ``DEEPGRAM_BASE_URL`` (empty: the real service).

    The SDK keeps one URL for REST (``base``) and one for WebSockets (``production``); the
    setting may be given as either scheme and the other is derived from it.
    """
    if not base_url:
        return DeepgramClientEnvironment.PRODUCTION
    base = base_url.rstrip("/")
    scheme, _, rest = base.partition("://")
    http_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    return DeepgramClientEnvironment(
        base=f"{http_scheme}://{rest}",
        production=f"{ws_scheme}://{rest}",
        agent=f"{ws_scheme}://{rest}",
        agent_rest=f"{http_scheme}://{rest}",
    )


@dataclass(frozen=True)
class DeepgramSttOptions:
    """Recognition and resilience settings (the defaults suit phone intake)."""

    model: str = "nova-3"
    language: str = "en-US"
    endpointing_ms: int = 300
    """Silence after which Deepgram finalises with ``speech_final`` (end of a turn)."""
    utterance_end_ms: int = 1000
    """Gap between words after which Deepgram sends ``UtteranceEnd`` (noisy lines)."""
    smart_format: bool = True
    max_reconnect_attempts: int = 4
    """Attempts to reopen a lost socket before giving up (``events()`` then raises)."""
    reconnect_backoff_s: float = 0.25
    """Delay before the second attempt; it doubles per attempt (the first is immediate)."""
    max_reconnects_per_call: int = 20
    """A socket that keeps dropping is not worth chasing for the rest of the call."""
    connect_timeout_s: float = 5.0
    """One WebSocket handshake (TCP, TLS, HTTP upgrade)."""
    start_timeout_s: float = 5.0
    """All of connecting at the start of a call, retries included: the caller is waiting for
    the greeting, and the offline recogniser can take the call instead."""
    close_timeout_s: float = 3.0
    max_replay_s: float = 60.0
    """Upper bound on the replay buffer; older audio is dropped (and logged) beyond it."""


class DeepgramSTT:
    """:class:`voice.stt.base.SpeechToText` on Deepgram's streaming API."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "",
        options: DeepgramSttOptions | None = None,
        call_id: str = "",
        attempt: Attempt | None = None,
    ) -> None:
        """``attempt``: this call's permission from the ``deepgram_stt`` breaker, on which the
        outcome of connecting is reported (none: nothing is reported)."""
        self.options = options or DeepgramSttOptions()
        self._attempt = attempt
        self._api_key = api_key
        self._environment = deepgram_environment(base_url)
        self._call_id = call_id
        self._client: AsyncDeepgramClient | None = None
        self._events = EventStream()
        self._hints: list[str] = []
        # The open socket, and whether live audio may go to it (replay flushed).
        self._socket: AsyncV1SocketClient | None = None
        self._socket_stack: contextlib.AsyncExitStack | None = None
        self._live = False
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        # Replay buffer: audio from global byte offset ``_replay_start`` up to ``_received``.
        self._replay = bytearray()
        self._replay_start = 0
        self._received = 0
        self._connection_base = 0  # global offset of the current socket's time zero
        self._arrivals: deque[tuple[int, float]] = deque()  # (end offset, monotonic time)
        self._turn_open = False
        self._configure_pending = False
        self._configure_wanted = False
        self._configure_supported = True
        # Counters, for logs and tests.
        self.connections = 0
        self.reconnects = 0
        self.keepalives_sent = 0
        self.replayed_bytes = 0

    # --- the SpeechToText protocol -------------------------------------------------------

    async def start(self, hints: Sequence[str] = ()) -> None:
        if self._client is not None:
            raise RuntimeError("start() was already called")
        self._hints = normalise_hints(hints)
        self._client = AsyncDeepgramClient(api_key=self._api_key, environment=self._environment)
        try:
            async with asyncio.timeout(self.options.start_timeout_s):
                await self._connect_with_retries()
        except (SpeechToTextError, TimeoutError):
            self._report_failure()
            raise SpeechToTextError("deepgram_unavailable") from None
        self._supervisor = asyncio.create_task(self._supervise(), name="deepgram-stt")

    async def send(self, mulaw_8k: bytes) -> None:
        if self._closing or not mulaw_8k:
            return
        self._received += len(mulaw_8k)
        self._replay.extend(mulaw_8k)
        self._arrivals.append((self._received, time.monotonic()))
        self._bound_replay()
        socket = self._socket
        if self._live and socket is not None:
            try:
                await socket.send_media(mulaw_8k)
            except Exception as exc:  # any send failure means the socket is gone
                # The audio is in the replay buffer; the supervisor reconnects and re-sends it.
                self._live = False
                log.info("stt_send_failed", call_id=self._call_id, error=type(exc).__name__)

    async def set_hints(self, hints: Sequence[str]) -> None:
        self._hints = normalise_hints(hints)
        if not self._configure_supported:
            return  # applied as query parameters on the next connection
        self._configure_wanted = True
        await self._maybe_configure()

    async def keep_alive(self) -> None:
        socket = self._socket
        if self._live and socket is not None:
            try:
                await socket.send_keep_alive()
                self.keepalives_sent += 1
            except Exception as exc:  # the supervisor handles a dead socket
                log.info("stt_keepalive_failed", call_id=self._call_id, error=type(exc).__name__)

    def events(self) -> AsyncIterator[TranscriptEvent]:
        return self._events.iterate()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        socket = self._socket
        if self._live and socket is not None:
            # CloseStream makes Deepgram flush its last results and close the socket itself.
            with contextlib.suppress(Exception):
                await socket.send_close_stream()
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._supervisor), self.options.close_timeout_s
                )
            except TimeoutError:
                self._supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._supervisor
        await self._disconnect()
        self._events.finish()
        if self._attempt is not None:
            self._attempt.abandoned()  # closed before connecting: no verdict (else a no-op)
        log.info(
            "stt_closed",
            call_id=self._call_id,
            engine="deepgram",
            connections=self.connections,
            reconnects=self.reconnects,
            replayed_bytes=self.replayed_bytes,
            audio_ms=self._received * 1000 // TWILIO_RATE,
        )

    # --- connection management -----------------------------------------------------------

    def _report_failure(self) -> None:
        attempt = self._attempt
        if attempt is None:
            return
        if attempt.reported:
            attempt.breaker.record_failure()  # mid-call, after connecting had succeeded
        else:
            attempt.failed()
        log.warning("stt_gave_up", call_id=self._call_id, engine="deepgram")

    async def _supervise(self) -> None:
        try:
            while True:
                await self._read_until_closed()
                await self._disconnect()
                if self._closing:
                    return
                self.reconnects += 1
                if self.reconnects > self.options.max_reconnects_per_call:
                    raise SpeechToTextError("deepgram_unstable")
                log.warning(
                    "stt_connection_lost",
                    call_id=self._call_id,
                    buffered_ms=len(self._replay) * 1000 // TWILIO_RATE,
                )
                await self._connect_with_retries()
        except SpeechToTextError as exc:
            self._report_failure()  # reconnects spent: Deepgram failed this call
            self._events.fail(exc)
        except Exception:
            log.exception("stt_supervisor_crashed", call_id=self._call_id)
            self._events.fail(SpeechToTextError("deepgram_failed"))
        finally:
            if self._closing:
                self._events.finish()

    async def _connect_with_retries(self) -> None:
        attempts = self.options.max_reconnect_attempts + 1
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.options.reconnect_backoff_s * 2 ** (attempt - 1))
            if self._closing:
                return
            try:
                await self._connect()
            except Exception as exc:  # network, HTTP and protocol errors alike
                log.warning(
                    "stt_connect_failed",
                    call_id=self._call_id,
                    attempt=attempt + 1,
                    error=type(exc).__name__,
                )
                continue
            if self._closing and self._socket is not None:
                # close() ran while we were connecting: let Deepgram flush and hang up.
                with contextlib.suppress(Exception):
                    await self._socket.send_close_stream()
            return
        raise SpeechToTextError("deepgram_unavailable")

    async def _connect(self) -> None:
        assert self._client is not None
        options = self.options
        context = self._client.listen.v1.connect(
            model=options.model,
            language=options.language,
            encoding="mulaw",
            sample_rate=TWILIO_RATE,
            channels=1,
            interim_results=True,
            endpointing=options.endpointing_ms,
            utterance_end_ms=options.utterance_end_ms,
            vad_events=True,
            smart_format=options.smart_format,
            keyterm=list(self._hints) or None,
        )
        stack = contextlib.AsyncExitStack()
        try:
            socket = await asyncio.wait_for(
                stack.enter_async_context(context), options.connect_timeout_s
            )
            self._socket, self._socket_stack = socket, stack
            self._connection_base = self._replay_start
            self._configure_pending = False
            self._configure_wanted = False
            self._turn_open = False
            await self._flush_replay(socket)
        except BaseException:
            self._socket, self._socket_stack, self._live = None, None, False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stack.aclose(), options.close_timeout_s)
            raise
        self.connections += 1
        if self._attempt is not None:
            self._attempt.succeeded()  # the first connection reports; later ones count too
            if self.connections > 1:
                self._attempt.breaker.record_success()
        log.info(
            "stt_connected",
            call_id=self._call_id,
            connection=self.connections,
            keyterms=len(self._hints),
        )

    async def _flush_replay(self, socket: AsyncV1SocketClient) -> None:
        """Re-send the audio Deepgram has not finalised, then let live audio through.

        ``send()`` keeps appending while this awaits; the loop re-reads the length, and live
        sending is switched on with no await between the last chunk and the switch, so every
        byte goes out exactly once and in order.
        """
        offset = 0
        while offset < len(self._replay):
            chunk = bytes(self._replay[offset : offset + _REPLAY_CHUNK])
            await socket.send_media(chunk)
            offset += len(chunk)
        self.replayed_bytes += offset
        self._live = True

    async def _disconnect(self) -> None:
        self._live = False
        stack, self._socket, self._socket_stack = self._socket_stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stack.aclose(), self.options.close_timeout_s)

    async def _read_until_closed(self) -> None:
        socket = self._socket
        while socket is not None:
            try:
                message = await socket.recv()
            except ValueError:
                log.warning("stt_bad_message", call_id=self._call_id)
                continue
            except Exception as exc:  # closed (cleanly or not), reset, EOF
                log.info("stt_socket_closed", call_id=self._call_id, error=type(exc).__name__)
                return
            await self._handle(message)

    # --- messages from Deepgram ----------------------------------------------------------

    async def _handle(self, message: Any) -> None:
        if isinstance(message, ListenV1Results):
            self._on_results(message)
        elif isinstance(message, ListenV1SpeechStarted):
            self._events.put(SpeechStarted())
        elif isinstance(message, ListenV1UtteranceEnd):
            # Deepgram sends UtteranceEnd even when speech_final already closed the turn.
            if self._turn_open:
                self._turn_open = False
                self._events.put(UtteranceEnd())
        elif isinstance(message, ListenV1ConfigureSuccess | ListenV1ConfigureFailure):
            self._configure_pending = False
            if isinstance(message, ListenV1ConfigureFailure):
                log.warning("stt_configure_rejected", call_id=self._call_id, code=message.code)
                if message.code == "CONFIGURE_KEYTERMS_NOT_SUPPORTED":
                    self._configure_supported = False
            await self._maybe_configure()
        elif isinstance(message, ListenV1Error):
            self._configure_pending = False
            log.warning("stt_server_error", call_id=self._call_id, variant=message.variant)
        elif isinstance(message, ListenV1Metadata):
            log.info("stt_metadata", call_id=self._call_id, request_id=message.request_id)

    def _on_results(self, message: ListenV1Results) -> None:
        alternatives = message.channel.alternatives
        best = alternatives[0] if alternatives else None
        text = best.transcript.strip() if best is not None else ""
        confidence = float(best.confidence) if best is not None else 0.0
        if not message.is_final:
            if text:
                self._events.put(Interim(text=text, confidence=confidence))
            return
        end = self._connection_base + round((message.start + message.duration) * TWILIO_RATE)
        latency_ms = self._latency_ms(end)
        self._trim_replay(end)
        if text:
            self._turn_open = True
            self._events.put(Final(text=text, confidence=confidence, stt_latency_ms=latency_ms))
        if message.speech_final and self._turn_open:
            self._turn_open = False
            self._events.put(UtteranceEnd())
        elif message.speech_final:
            self._events.put(NothingHeard())  # speech that came to no words: noise, a cough

    async def _maybe_configure(self) -> None:
        socket = self._socket
        if not (self._configure_wanted and self._live and socket is not None):
            return
        if self._configure_pending:
            return  # Deepgram takes one Configure at a time; resent when this one is answered
        self._configure_wanted = False
        self._configure_pending = True
        try:
            await socket.send_configure(ListenV1Configure(type="Configure", keyterms=self._hints))
        except Exception as exc:  # applied on reconnect instead
            self._configure_pending = False
            log.info("stt_configure_failed", call_id=self._call_id, error=type(exc).__name__)

    # --- replay buffer -------------------------------------------------------------------

    def _latency_ms(self, end_offset: int) -> float:
        """Time since the audio at ``end_offset`` (global bytes) was handed to ``send()``."""
        arrived = None
        for offset, moment in self._arrivals:
            if offset >= end_offset:
                arrived = moment
                break
        if arrived is None:
            arrived = self._arrivals[-1][1] if self._arrivals else time.monotonic()
        return max(0.0, (time.monotonic() - arrived) * 1000.0)

    def _trim_replay(self, end_offset: int) -> None:
        drop = min(end_offset - self._replay_start, len(self._replay))
        if drop <= 0:
            return
        del self._replay[:drop]
        self._replay_start += drop
        while self._arrivals and self._arrivals[0][0] <= self._replay_start:
            self._arrivals.popleft()

    def _bound_replay(self) -> None:
        limit = int(self.options.max_replay_s * TWILIO_RATE)
        excess = len(self._replay) - limit
        if excess <= 0:
            return
        del self._replay[:excess]
        self._replay_start += excess
        while self._arrivals and self._arrivals[0][0] <= self._replay_start:
            self._arrivals.popleft()
        if not self._live:
            # While connected this only trims what Deepgram already has; while reconnecting
            # it loses audio, which must show up in the logs.
            log.warning("stt_replay_truncated", call_id=self._call_id, dropped_bytes=excess)
