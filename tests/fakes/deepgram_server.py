"""A loopback Deepgram that speaks the real wire protocol, for tests and the call simulator.

``GET /v1/listen`` (WebSocket): checks ``Authorization: Token <key>`` and the query, takes binary
audio frames and the JSON control messages ``KeepAlive``, ``Finalize``, ``CloseStream`` and
``Configure``, and answers with ``SpeechStarted``, ``Results`` (interim, then final),
``UtteranceEnd``, ``ConfigureSuccess``, ``Metadata`` and ``Error`` messages of the real shapes.

It cannot recognise speech, so it is scripted: the test queues the transcripts the caller
"says" (:meth:`FakeDeepgram.say`). The fake runs an energy VAD over the mu-law it receives;
each speech segment followed by ``endpointing`` ms of silence is one utterance, answered
with the next scripted transcript. It can drop the socket instead of answering an utterance
(to exercise reconnection) and records what the client sent.

``POST /v1/speak``: streams mu-law back in chunks (a tone, or espeak-ng's rendering of the
text) after a configurable first-byte delay, and can fail the next N requests with an HTTP
error, by cutting the body short, or by hanging (never answering until the client gives up).

Outages: :meth:`FakeDeepgram.stop_accepting` refuses connections (and drops open ones) until
:meth:`FakeDeepgram.start_accepting`; ``hang_handshakes`` makes ``/v1/listen`` accept the TCP
connection but never answer the WebSocket upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from aiohttp import WSMsgType, web

from tests.fakes.outage import start_accepting, stop_accepting
from voice.audio import (
    TWILIO_RATE,
    VadConfig,
    VadEventKind,
    VoiceActivityDetector,
    mulaw_to_pcm,
    pcm_to_mulaw,
)

SpeakFailure = Literal["status", "abort", "hang"]
HANG_LIMIT_S = 30.0  # a hung request is answered (with a 504) at the latest after this


@dataclass
class ListenSession:
    """What one ``/v1/listen`` connection received."""

    params: dict[str, list[str]]
    keyterms: list[str]
    audio_bytes: int = 0
    keepalives: int = 0
    finalizes: int = 0
    close_stream: bool = False
    configures: list[list[str] | None] = field(default_factory=list)
    utterances: int = 0
    dropped: bool = False

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


@dataclass
class SpeakRequest:
    text: str
    params: dict[str, str]
    client_port: int  # tells whether requests came over one kept-alive connection


@dataclass
class _Outgoing:
    due: float
    message: dict[str, Any]


class FakeDeepgram:
    """Run with ``async with FakeDeepgram(...) as fake:``; point clients at ``fake.base_url``."""

    def __init__(
        self,
        *,
        api_key: str = "test-deepgram-key",
        script: Iterable[str] = (),
        latency_s: float = 0.0,
        utterance_end_delay_s: float = 0.05,
        min_speech_ms: float = 100.0,
        speak_audio: Literal["tone", "espeak"] = "tone",
        speak_first_byte_s: float = 0.0,
        speak_chunk_bytes: int = 1600,
        speak_chunk_interval_s: float = 0.002,
        speak_ms_per_character: float = 60.0,
    ) -> None:
        self.api_key = api_key
        self.script: deque[str] = deque(script)
        self.latency_s = latency_s
        self.utterance_end_delay_s = utterance_end_delay_s
        self.min_speech_ms = min_speech_ms
        self.speak_audio = speak_audio
        self.speak_first_byte_s = speak_first_byte_s
        self.speak_chunk_bytes = speak_chunk_bytes
        self.speak_chunk_interval_s = speak_chunk_interval_s
        self.speak_ms_per_character = speak_ms_per_character
        self.listen_sessions: list[ListenSession] = []
        self.speak_requests: list[SpeakRequest] = []
        self.rejected_handshakes = 0
        self.speak_disconnects = 0
        self.speak_disconnected = asyncio.Event()
        self.transcribed = 0  # utterances answered, over all connections
        self.hang_handshakes = False
        self.handshakes = 0  # /v1/listen upgrade requests received, answered or not
        self._released = asyncio.Event()  # ends every hang at shutdown
        self._speak_arrived = asyncio.Event()
        self._drop_after: int | None = None
        self._speak_failures: deque[tuple[SpeakFailure, int, int]] = deque()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.port = 0

    # --- control from the test -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def say(self, *transcripts: str) -> None:
        """Queue what the caller's next utterances will be transcribed as."""
        self.script.extend(transcripts)

    def drop_after(self, utterances: int) -> None:
        """Once ``utterances`` have been answered, drop the socket instead of answering the next.

        The drop is an abnormal close (1011) as the next utterance ends, so all of its audio
        went to the old socket and no result came back for it: the client must re-send that
        audio on a new socket or lose the words.
        """
        self._drop_after = utterances

    def fail_speak(
        self,
        count: int = 1,
        *,
        mode: SpeakFailure = "status",
        status: int = 500,
        after_bytes: int = 1600,
    ) -> None:
        """Make the next ``count`` speak requests fail: an HTTP error, a body cut short, or no
        answer at all (``hang``: the request waits until the client gives up)."""
        for _ in range(count):
            self._speak_failures.append((mode, status, after_bytes))

    async def wait_for_speak_requests(self, count: int, limit_s: float = 5.0) -> None:
        """Wait until ``count`` speak requests have arrived (answered or not)."""
        async with asyncio.timeout(limit_s):
            while len(self.speak_requests) < count:
                self._speak_arrived.clear()
                await self._speak_arrived.wait()

    @property
    def keepalives(self) -> int:
        return sum(session.keepalives for session in self.listen_sessions)

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> FakeDeepgram:
        app = web.Application()
        app.router.add_get("/v1/listen", self._listen)
        app.router.add_post("/v1/speak", self._speak)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop_accepting(self) -> None:
        """An outage: connections are refused, and open ones (WebSockets too) are dropped."""
        assert self._runner is not None
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1011, message=b"fake outage")
        await stop_accepting(self._runner)

    async def start_accepting(self) -> None:
        """The end of the outage: listen on the same port again."""
        assert self._runner is not None
        await start_accepting(self._runner, self.port)

    async def __aexit__(self, *exc_info: object) -> None:
        self._released.set()
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Token {self.api_key}"

    # --- /v1/listen ----------------------------------------------------------------------

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        if self.hang_handshakes:
            await self._hang(request)
            return web.json_response({"err_code": "TIMEOUT"}, status=504)
        if not self._authorised(request):
            self.rejected_handshakes += 1
            return web.json_response({"err_code": "INVALID_AUTH"}, status=401)
        params = {key: request.query.getall(key) for key in request.query}
        encoding = params.get("encoding", [""])[0]
        rate = params.get("sample_rate", [""])[0]
        if encoding not in {"mulaw", "linear16", "alaw"} or not rate.isdigit():
            return web.json_response({"err_code": "Bad Request"}, status=400)
        session = ListenSession(params=params, keyterms=params.get("keyterm", []))
        self.listen_sessions.append(session)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await _ListenConnection(self, session, ws, int(rate)).run()
        finally:
            self._sockets.discard(ws)
        return ws

    def _next_transcript(self) -> str:
        self.transcribed += 1
        return self.script.popleft() if self.script else ""

    def _should_drop(self) -> bool:
        if self._drop_after is not None and self.transcribed >= self._drop_after:
            self._drop_after = None
            return True
        return False

    # --- /v1/speak -----------------------------------------------------------------------

    async def _speak(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return web.json_response({"err_code": "INVALID_AUTH"}, status=401)
        query = dict(request.query)
        body = await request.json()
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return web.json_response({"err_code": "Bad Request"}, status=400)
        if query.get("encoding") != "mulaw" or query.get("sample_rate") != str(TWILIO_RATE):
            return web.json_response({"err_code": "UNSUPPORTED_AUDIO_FORMAT"}, status=400)
        if query.get("container", "none") != "none" or not query.get("model"):
            return web.json_response({"err_code": "Bad Request"}, status=400)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        port = int(peer[1]) if peer else 0
        self.speak_requests.append(SpeakRequest(text=text, params=query, client_port=port))
        self._speak_arrived.set()
        failure = self._speak_failures.popleft() if self._speak_failures else None
        if failure is not None and failure[0] == "hang":
            await self._hang(request)
            return web.json_response({"err_code": "TIMEOUT"}, status=504)
        if failure is not None and failure[0] == "status":
            return web.json_response(
                {"err_code": "INTERNAL_SERVER_ERROR", "err_msg": "fake failure"}, status=failure[1]
            )
        audio = await self._speak_audio_for(text)
        await asyncio.sleep(self.speak_first_byte_s)
        response = web.StreamResponse(headers={"Content-Type": "audio/mulaw"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        for start in range(0, len(audio), self.speak_chunk_bytes):
            chunk = audio[start : start + self.speak_chunk_bytes]
            try:
                await response.write(chunk)
            except ConnectionError:
                self.speak_disconnects += 1  # the client went away mid-stream (barge-in)
                self.speak_disconnected.set()
                return response
            sent += len(chunk)
            if failure is not None and sent >= failure[2]:
                # Cut the connection mid-body: the client sees a truncated chunked stream.
                assert request.transport is not None
                request.transport.abort()
                return response
            await asyncio.sleep(self.speak_chunk_interval_s)
        await response.write_eof()
        return response

    async def _hang(self, request: web.Request) -> None:
        """Answer nothing until the client hangs up (or the fake stops, or HANG_LIMIT_S)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANG_LIMIT_S
        while loop.time() < deadline and not self._released.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), 0.05)

    async def _speak_audio_for(self, text: str) -> bytes:
        if self.speak_audio == "espeak":
            from voice.tts.espeak import EspeakTTS

            return b"".join([chunk async for chunk in EspeakTTS().synthesize(text)])
        return tone_mulaw(len(text) * self.speak_ms_per_character)


class _ListenConnection:
    """One ``/v1/listen`` socket: VAD over the audio, scripted results out."""

    def __init__(
        self, fake: FakeDeepgram, session: ListenSession, ws: web.WebSocketResponse, rate: int
    ) -> None:
        self.fake = fake
        self.session = session
        self.ws = ws
        self.rate = rate
        endpointing = session.param("endpointing") or "10"
        self.vad = VoiceActivityDetector(
            VadConfig(
                hangover_ms=float(endpointing) if endpointing.isdigit() else 10.0,
                min_speech_ms=fake.min_speech_ms,
                sample_rate=rate,
            )
        )
        self.request_id = str(uuid.uuid4())
        self.received = 0  # samples
        self.cursor_s = 0.0  # end of the audio covered by the last final
        self.in_speech = False
        self.outgoing: asyncio.Queue[_Outgoing | None] = asyncio.Queue()
        self.sender: asyncio.Task[None] | None = None
        self.interim_results = session.param("interim_results") == "true"
        self.vad_events = session.param("vad_events") == "true"
        utterance_end = session.param("utterance_end_ms")
        self.utterance_end = utterance_end is not None and utterance_end.isdigit()

    async def run(self) -> None:
        self.sender = asyncio.create_task(self._send_loop())
        try:
            async for message in self.ws:
                if message.type == WSMsgType.BINARY:
                    if await self._audio(message.data):
                        return
                elif message.type == WSMsgType.TEXT:
                    if await self._control(message.data):
                        return
                else:
                    break
        finally:
            self.outgoing.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.sender), 2.0)

    @property
    def now_s(self) -> float:
        return self.received / self.rate

    def _queue(self, message: dict[str, Any], delay_s: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        self.outgoing.put_nowait(_Outgoing(loop.time() + delay_s, message))

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while (item := await self.outgoing.get()) is not None:
            wait = item.due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.ws.closed:
                continue
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(json.dumps(item.message))

    async def _audio(self, data: bytes) -> bool:
        """Account for received audio; True when the fake dropped the socket."""
        self.session.audio_bytes += len(data)
        pcm = mulaw_to_pcm(data) if self.session.param("encoding") == "mulaw" else None
        if pcm is None:
            self.received += len(data) // 2
            return False
        frame = self.rate // 50
        for start in range(0, pcm.size, frame):
            piece = pcm[start : start + frame]
            self.received += piece.size
            event = self.vad.feed(piece)
            if event is None:
                continue
            if event.kind is VadEventKind.SPEECH_START:
                self._speech_started(event.at_ms / 1000.0)
            elif self.fake._should_drop():
                self.session.dropped = True
                await self.ws.close(code=1011, message=b"fake drop")
                return True
            else:
                self._speech_ended(from_finalize=False)
        return False

    def _speech_started(self, at_s: float) -> None:
        self.in_speech = True
        if self.vad_events:
            self._queue({"type": "SpeechStarted", "channel": [0], "timestamp": round(at_s, 3)})
        if self.interim_results and self.fake.script:
            first_word = self.fake.script[0].split(" ")[0]
            self._queue(self._results(first_word, is_final=False, speech_final=False))

    def _speech_ended(self, *, from_finalize: bool) -> None:
        self.in_speech = False
        transcript = self.fake._next_transcript()
        self.session.utterances += 1
        results = self._results(
            transcript, is_final=True, speech_final=not from_finalize, from_finalize=from_finalize
        )
        self.cursor_s = self.now_s
        self._queue(results, self.fake.latency_s)
        if transcript and self.utterance_end:
            self._queue(
                {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(self.now_s, 3)},
                self.fake.latency_s + self.fake.utterance_end_delay_s,
            )

    def _results(
        self, transcript: str, *, is_final: bool, speech_final: bool, from_finalize: bool = False
    ) -> dict[str, Any]:
        start, end = self.cursor_s, self.now_s
        words = transcript.split()
        step = (end - start) / max(1, len(words))
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - start, 4),
            "start": round(start, 4),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {
                "alternatives": [
                    {
                        "transcript": transcript,
                        "confidence": 0.98 if transcript else 0.0,
                        "words": [
                            {
                                "word": word.lower().strip(".,?!"),
                                "start": round(start + i * step, 3),
                                "end": round(start + (i + 1) * step, 3),
                                "confidence": 0.98,
                                "punctuated_word": word,
                            }
                            for i, word in enumerate(words)
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": "general-nova-3", "version": "2025-01-01", "arch": "nova-3"},
                "model_uuid": "00000000-0000-0000-0000-000000000003",
            },
            "from_finalize": from_finalize,
        }

    async def _control(self, text: str) -> bool:
        """Handle a JSON control message; True when the socket should close."""
        try:
            message = json.loads(text)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            self._queue(
                {"type": "Error", "variant": "SchemaError", "description": "bad control message"}
            )
            return False
        if kind == "KeepAlive":
            self.session.keepalives += 1
        elif kind == "Finalize":
            self.session.finalizes += 1
            if self.in_speech:
                self.vad.reset()
                self._speech_ended(from_finalize=True)
        elif kind == "Configure":
            keyterms = message.get("keyterms")
            self.session.configures.append(keyterms)
            self._queue(
                {"type": "ConfigureSuccess", "request_id": self.request_id, "keyterms": keyterms}
            )
        elif kind == "CloseStream":
            self.session.close_stream = True
            if self.in_speech:
                self._speech_ended(from_finalize=True)
            self._queue(self._metadata(), self.fake.latency_s)
            self.outgoing.put_nowait(None)
            await self._drain_then_close()
            return True
        else:
            self._queue({"type": "Error", "variant": "SchemaError", "description": "unknown type"})
        return False

    async def _drain_then_close(self) -> None:
        """Send what is queued (the sender stops at the None queued after it), then close."""
        if self.sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.sender), 2.0)
        await self.ws.close(code=1000)

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "0" * 64,
            "created": datetime.now(tz=UTC).isoformat(),
            "duration": round(self.now_s, 3),
            "channels": 1,
        }


def tone_mulaw(duration_ms: float, frequency: float = 440.0, level_db: float = -12.0) -> bytes:
    """A sine tone as 8 kHz mu-law: stand-in synthetic speech for the speak endpoint."""
    count = int(duration_ms * TWILIO_RATE / 1000)
    amplitude = 32767 * math.pow(10, level_db / 20)
    t = np.arange(count) / TWILIO_RATE
    return pcm_to_mulaw((amplitude * np.sin(2 * math.pi * frequency * t)).astype(np.int16))
