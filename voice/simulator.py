"""A caller that behaves like Twilio: the call simulator, end-to-end tests and the load bench.

:class:`TwilioCaller` plays one scenario file (:mod:`intake.scenario`) as a phone call. It does
what Twilio does for an inbound call on ``<Connect><Stream>``:

1. POSTs the ``/voice/answer`` webhook, form-encoded and signed (``X-Twilio-Signature``
   over ``PUBLIC_BASE_URL + "/voice/answer"``, the URL the server validates against), and
   reads the TwiML for the stream URL and its ``<Parameter>`` values.
2. Opens the stream's WebSocket with the handshake signed over the URL given in the TwiML,
   sends ``connected`` and ``start``, then caller audio as ``media`` every 20 ms for the
   whole call (mu-law silence when the caller is quiet), on a monotonic schedule so that
   the pace does not drift however long the call.
3. Plays the agent's audio on a playback clock: a ``mark`` is echoed only once the audio
   queued before it would have finished playing, and ``clear`` drops the queue and echoes
   every pending mark at once. Turn-taking depends on this: the server starts its silence
   timer and decides what is a barge-in from the marks, so echoing them early or late
   would test a different conversation from the one a caller has.

The caller speaks each scenario line once the agent has finished its prompt (audio played,
marks echoed, a short pause), like a polite person; a ``barge_in`` line talks over the
prompt instead. The text is synthesised by espeak-ng (or, for load tests, a plain tone that
any voice-activity detector takes as one utterance).

The same caller runs over the network (``websockets`` and ``urllib``, against a running
Daphne) and in-process (Django's ``AsyncClient`` and Channels' ``WebsocketCommunicator``),
through the small :class:`Transport` protocol. ``speed`` plays the call faster than real
time for tests: caller audio and agent playback run ``speed`` times faster; the server's
own timers (silence, max duration) still run on its wall clock. At high speeds a speech
engine that streams slower than ``speed`` times real time leaves gaps in playback, which the
caller takes for the end of a prompt (as a person would hear a pause), so keep barge-in and
latency figures that matter to ``speed=1``.

Agent text is not in the media stream, so the transcript printed at the end is read from
the database (:class:`intake.models.Turn`), next to the latencies measured here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import functools
import json
import math
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from twilio.request_validator import RequestValidator

from clinic.logs import get_logger
from intake import scenario as scenarios
from intake.models import Call, Turn
from voice.audio import (
    FRAME_BYTES,
    FRAME_MS,
    MULAW_SILENCE,
    TWILIO_RATE,
    frame_energy_db,
    frame_mulaw,
    mulaw_to_pcm,
    pcm_to_mulaw,
)

log = get_logger(__name__)

ANSWER_PATH = "/voice/answer"
SILENCE_FRAME = bytes([MULAW_SILENCE]) * FRAME_BYTES
FRAME_SECONDS = FRAME_MS / 1000
VOICED_DB = -50.0
"""Frames above this level count as speech when trimming synthesised lines."""
DTMF_GAP_SECONDS = 0.15
"""Time between two keys of one ``press`` line (a person dialling, not a machine)."""
BARGE_IN_AFTER_SECONDS = 1.0
"""How far into the agent's prompt a ``barge_in`` line starts talking (playback time)."""
MAX_AGENT_TURN_SECONDS = 180.0
"""Give up waiting for a prompt to finish after this long (a stuck stream, not a person)."""
KNOWN_EVENTS = frozenset({"slot_taken"})

Voice = Literal["espeak", "tone"]


class SimulatorError(RuntimeError):
    """The call could not be placed: the server is unreachable or refused it.

    The message is one line, meant for a person at a terminal.
    """


# --- identifiers and signatures ------------------------------------------------------------


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits (``CA...``, ``MZ...``, ``AC...``)."""
    return prefix + secrets.token_hex(16)


def twilio_signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """``X-Twilio-Signature`` as Twilio computes it (HMAC-SHA1 of URL and sorted params).

    Twilio's own helper, so that a mismatch between this and the server's check can only
    come from the URL or the parameters, never from a second implementation of the hash.
    """
    signature: str = RequestValidator(auth_token).compute_signature(url, params or {})
    return signature


# --- TwiML ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamInstruction:
    """What the TwiML answer asks Twilio to do: stream to ``url``, then dial ``dial``."""

    url: str
    parameters: dict[str, str]
    dial: str = ""


def parse_twiml(text: str) -> StreamInstruction:
    """Read ``<Response><Connect><Stream url>`` (with its ``<Parameter>``s) and ``<Dial>``.

    Raises :class:`SimulatorError` when the answer is not TwiML with a stream, which is what
    Twilio would do too: it would play an application error and hang up.
    """
    try:
        # The XML is our own server's answer over loopback or to an operator's command,
        # not input from the public.
        root = ElementTree.fromstring(text)  # noqa: S314
    except ElementTree.ParseError:
        raise SimulatorError("/voice/answer did not return XML") from None
    if root.tag != "Response":
        raise SimulatorError(f"/voice/answer returned <{root.tag}>, not TwiML <Response>")
    reject = root.find("Reject")
    if reject is not None:
        reason = reject.get("reason", "rejected")
        raise SimulatorError(f"the server rejected the call ({reason}; rate limited?)")
    stream = root.find("./Connect/Stream")
    url = stream.get("url", "") if stream is not None else ""
    if stream is None or not url:
        raise SimulatorError("the TwiML answer has no <Connect><Stream url=...>")
    parameters = {
        name: parameter.get("value", "")
        for parameter in stream.findall("Parameter")
        if (name := parameter.get("name"))
    }
    dial = root.find("Dial")
    number = "".join(dial.itertext()).strip() if dial is not None else ""
    return StreamInstruction(url=url, parameters=parameters, dial=number)


# --- Twilio's messages ---------------------------------------------------------------------


class StreamMessages:
    """Builds the JSON messages Twilio sends on a media stream, numbered as Twilio numbers them.

    Shapes follow Twilio's "Media Streams - WebSocket Messages": ``connected`` carries no
    sequence number; ``start`` is ``"1"`` and every later message counts up by one; numbers,
    media chunks and timestamps are decimal strings. Media timestamps are the audio clock
    (milliseconds of caller audio since the stream started), which is what Twilio reports.
    """

    def __init__(self, *, stream_sid: str, call_sid: str, account_sid: str) -> None:
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self._sequence = 0
        self._chunk = 0

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    @staticmethod
    def _dump(message: dict[str, Any]) -> str:
        return json.dumps(message, separators=(",", ":"))

    def connected(self) -> str:
        return self._dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: dict[str, str]) -> str:
        return self._dump(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": TWILIO_RATE,
                        "channels": 1,
                    },
                    "customParameters": dict(custom_parameters),
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, payload: bytes) -> str:
        timestamp = self._chunk * FRAME_MS
        self._chunk += 1
        return self._dump(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(timestamp),
                    "payload": base64.b64encode(payload).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )

    def dtmf(self, digit: str) -> str:
        return self._dump(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return self._dump(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        return self._dump(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )


# --- the caller's ear: Twilio's playback buffer ---------------------------------------------


@dataclass
class _PendingMark:
    name: str
    due: float


class Playback:
    """Twilio's outbound audio queue for one call, on a clock (times are ``time.monotonic``).

    Audio plays in arrival order from when it arrives or when earlier audio ends, at
    ``speed`` times real time. A mark is due when the audio queued before it has played
    (at once if nothing is queued). ``clear`` drops the queue and returns every pending mark,
    which Twilio then echoes immediately.

    It also keeps the bench's measure of smoothness: within one utterance (the media between
    two marks), frame ``i`` must arrive by the first frame's arrival plus the play time of the
    ``i`` frames before it, give or take ``late_tolerance_s``; a frame later than that would
    have left the caller hearing a gap.
    """

    def __init__(self, *, speed: float = 1.0, late_tolerance_s: float = 0.03) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.late_tolerance_s = late_tolerance_s
        self.ends_at = 0.0
        self.pending: deque[_PendingMark] = deque()
        self.frames = 0
        self.late_frames = 0
        self.max_lateness_s = 0.0
        self._segment_start: float | None = None
        self._segment_audio_s = 0.0

    def play_time(self, nbytes: int) -> float:
        """Seconds that ``nbytes`` of mu-law take to play at this speed."""
        return nbytes / TWILIO_RATE / self.speed

    def idle(self, now: float) -> bool:
        """Nothing is playing and no mark is waiting to be echoed."""
        return self.ends_at <= now and not self.pending

    def media(self, nbytes: int, now: float) -> bool:
        """Queue ``nbytes`` of agent audio that arrived at ``now``; True when it was late."""
        if self._segment_start is None:
            self._segment_start = now
            self._segment_audio_s = 0.0
        deadline = self._segment_start + self._segment_audio_s + self.late_tolerance_s
        self._segment_audio_s += self.play_time(nbytes)
        self.ends_at = max(self.ends_at, now) + self.play_time(nbytes)
        self.frames += 1
        late = now > deadline
        if late:
            self.late_frames += 1
            self.max_lateness_s = max(self.max_lateness_s, now - deadline)
        return late

    def mark(self, name: str, now: float) -> list[str]:
        """A mark arrived: return it if it is due at once (nothing queued before it)."""
        self._segment_start = None
        if self.ends_at <= now and not self.pending:
            return [name]
        self.pending.append(_PendingMark(name, max(self.ends_at, now)))
        return []

    def due(self, now: float) -> list[str]:
        """Marks whose audio has finished playing by ``now``, in order; they leave the queue."""
        names = []
        while self.pending and self.pending[0].due <= now:
            names.append(self.pending.popleft().name)
        return names

    def next_due_at(self) -> float | None:
        return self.pending[0].due if self.pending else None

    def clear(self, now: float) -> list[str]:
        """Drop queued audio; return every pending mark (Twilio echoes them all at once)."""
        names = [mark.name for mark in self.pending]
        self.pending.clear()
        self.ends_at = min(self.ends_at, now)
        self._segment_start = None
        return names


class FrameSchedule:
    """When caller frame ``k`` is due: ``start + k * 20 ms / speed``, never ``now + 20 ms``.

    Sleeping 20 ms after each send drifts by the send time and the scheduler's lateness on
    every frame (seconds over a call); computing each due time from the start keeps the
    average rate exact, and a late frame is followed by on-time ones instead of shifting
    all of them.
    """

    def __init__(self, start: float, *, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.interval = FRAME_SECONDS / speed

    def due(self, index: int) -> float:
        return self.start + index * self.interval

    def delay(self, index: int, now: float) -> float:
        """Seconds to wait before sending frame ``index`` (0 when it is already due)."""
        return max(0.0, self.due(index) - now)


# --- the caller's voice --------------------------------------------------------------------


def is_voiced(frame: bytes) -> bool:
    return frame_energy_db(mulaw_to_pcm(frame)) > VOICED_DB


def trim_silence(frames: Sequence[bytes]) -> list[bytes]:
    """Drop leading and trailing quiet frames, so that "end of speech" is the last word."""
    voiced = [i for i, frame in enumerate(frames) if is_voiced(frame)]
    if not voiced:
        return []
    return list(frames[voiced[0] : voiced[-1] + 1])


def tone_frames(text: str, *, ms_per_character: float = 55.0) -> list[bytes]:
    """A steady tone as long as ``text`` would take to say: speech for a detector, cheaply.

    Load tests use it so that the bench measures the server, not espeak-ng, and so that
    every line is exactly one utterance to a voice-activity detector (espeak-ng pauses at
    commas, which a short endpointing window may take for the end of a turn).
    """
    count = int(max(400.0, ms_per_character * len(text)) * TWILIO_RATE / 1000)
    t = np.arange(count) / TWILIO_RATE
    amplitude = 32767 * 10 ** (-16 / 20)
    pcm = (amplitude * np.sin(2 * math.pi * 220.0 * t)).astype(np.int16)
    return frame_mulaw(pcm_to_mulaw(pcm))


_SPOKEN: dict[tuple[Voice, str], list[bytes]] = {}
"""Synthesised lines by (voice, text): calls in a test run or a bench repeat the same lines."""


async def caller_frames(text: str, voice: Voice = "espeak") -> list[bytes]:
    """``text`` as the caller's 20 ms mu-law frames, without leading or trailing silence."""
    key = (voice, text)
    cached = _SPOKEN.get(key)
    if cached is not None:
        return cached
    if voice == "tone":
        frames = tone_frames(text)
    else:
        from voice.tts.espeak import EspeakTTS

        audio = b"".join([chunk async for chunk in EspeakTTS().synthesize(text)])
        frames = trim_silence(frame_mulaw(audio))
    _SPOKEN[key] = frames
    return frames


# --- transports ----------------------------------------------------------------------------


class StreamSocket(Protocol):
    """One media-stream WebSocket, as the caller needs it."""

    @property
    def close_code(self) -> int | None: ...

    async def send(self, text: str) -> None:
        """Send one text message; raises or drops silently once the socket is closed."""
        ...

    async def receive(self) -> str | None:
        """The next text message, or None once the socket is closed (by either side)."""
        ...

    async def close(self) -> None:
        """Close from the caller's side (after ``stop``); safe to call twice."""
        ...


class Transport(Protocol):
    """How the caller reaches the server: the webhook and the stream."""

    async def post_answer(
        self, path: str, params: dict[str, str], signature: str
    ) -> tuple[int, str]:
        """POST the form to ``path``; return (HTTP status, body)."""
        ...

    async def open_stream(self, url: str, signature: str) -> StreamSocket:
        """Open the stream TwiML named; raise :class:`SimulatorError` if refused."""
        ...


class _WebsocketsSocket:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    @property
    def close_code(self) -> int | None:
        code: int | None = self._connection.close_code
        return code

    async def send(self, text: str) -> None:
        await self._connection.send(text)

    async def receive(self) -> str | None:
        from websockets.exceptions import ConnectionClosed

        try:
            message = await self._connection.recv()
        except ConnectionClosed:
            return None
        return message if isinstance(message, str) else bytes(message).decode("utf-8", "replace")

    async def close(self) -> None:
        await self._connection.close(code=1000)


class NetworkTransport:
    """A running server at ``base_url`` (``http://127.0.0.1:8000``): urllib and websockets.

    The stream is opened at ``base_url``'s host and port with the path from the TwiML: the
    TwiML names the public ``wss://`` host (a tunnel or load balancer in front of the
    server), which a local run cannot reach, but the signature is computed over that
    public URL, because that is the one the server checks.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SimulatorError(f"--base-url must be http(s)://host:port, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        # No proxies: the simulator talks to the server it was pointed at, never via a proxy
        # from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def stream_address(self, url: str) -> str:
        base = urllib.parse.urlsplit(self.base_url)
        target = urllib.parse.urlsplit(url)
        scheme = "wss" if base.scheme == "https" else "ws"
        return urllib.parse.urlunsplit((scheme, base.netloc, target.path, target.query, ""))

    async def post_answer(
        self, path: str, params: dict[str, str], signature: str
    ) -> tuple[int, str]:
        return await asyncio.to_thread(self._post, path, params, signature)

    def _post(self, path: str, params: dict[str, str], signature: str) -> tuple[int, str]:
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self.base_url + path,
            data=urllib.parse.urlencode(params).encode("ascii"),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                "User-Agent": "TwilioProxy/1.1",
            },
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return int(response.status), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SimulatorError(
                f"cannot reach the server at {self.base_url}: {reason} "
                "(is it running? `make run`, or pass --base-url)"
            ) from None

    async def open_stream(self, url: str, signature: str) -> StreamSocket:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        address = self.stream_address(url)
        try:
            connection = await connect(
                address,
                additional_headers={"X-Twilio-Signature": signature},
                compression=None,
                proxy=None,
                open_timeout=self.timeout_s,
                max_size=2**20,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise SimulatorError(f"the stream {address} was refused (HTTP {status})") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise SimulatorError(f"cannot open the stream {address}: {exc}") from None
        return _WebsocketsSocket(connection)


class _CommunicatorSocket:
    """A Channels ``WebsocketCommunicator`` seen as a socket.

    Reads the communicator's output queue directly: its ``receive_output(timeout)`` cancels
    the application when the timeout passes, and a caller waits on the agent for as long
    as a prompt lasts.
    """

    def __init__(self, communicator: Any, *, finish_timeout_s: float = 20.0) -> None:
        self._communicator = communicator
        self._finish_timeout_s = finish_timeout_s
        self._close_code: int | None = None
        self._closed = False

    @property
    def close_code(self) -> int | None:
        return self._close_code

    async def send(self, text: str) -> None:
        if self._closed:
            return
        await self._communicator.send_input({"type": "websocket.receive", "text": text})

    async def receive(self) -> str | None:
        while not self._closed:
            getter: asyncio.Future[Any] = asyncio.ensure_future(
                self._communicator.output_queue.get()
            )
            application: asyncio.Future[Any] = self._communicator.future
            done, _ = await asyncio.wait({getter, application}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                if not self._closed:
                    self._closed = True
                    self._close_code = 1006  # the application ended without closing
                application.result()  # an exception in the consumer surfaces here
                return None
            message = getter.result()
            if message["type"] == "websocket.send":
                text = message.get("text")
                if text is None:
                    text = bytes(message.get("bytes") or b"").decode("utf-8", "replace")
                return str(text)
            if message["type"] == "websocket.close":
                self._closed = True
                self._close_code = int(message.get("code", 1000))
                await self._finish(self._close_code)
                return None
        return None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_code = 1000
        await self._finish(1000)

    async def _finish(self, code: int) -> None:
        """Tell the application the socket is gone (as Daphne does) and let it finish."""
        if not self._communicator.future.done():
            await self._communicator.input_queue.put({"type": "websocket.disconnect", "code": code})
        try:
            await self._communicator.wait(timeout=self._finish_timeout_s)
        except TimeoutError:
            log.warning("simulated_stream_slow_to_finish", timeout_s=self._finish_timeout_s)


class InProcessTransport:
    """The server in this process: ``AsyncClient`` for the webhook, a communicator for the stream.

    ``application`` handles the WebSocket (default: ``clinic.asgi.application``); the webhook
    goes through Django's URL configuration like any test client request.
    """

    def __init__(self, application: Any | None = None) -> None:
        self._application = application

    @property
    def application(self) -> Any:
        if self._application is None:
            from clinic.asgi import application

            self._application = application
        return self._application

    async def post_answer(
        self, path: str, params: dict[str, str], signature: str
    ) -> tuple[int, str]:
        from django.test import AsyncClient

        response = await AsyncClient().post(
            path,
            data=urllib.parse.urlencode(params),
            content_type="application/x-www-form-urlencoded",
            headers={"X-Twilio-Signature": signature},
        )
        return int(response.status_code), response.content.decode("utf-8", "replace")

    async def open_stream(self, url: str, signature: str) -> StreamSocket:
        from channels.testing import WebsocketCommunicator

        target = urllib.parse.urlsplit(url)
        path = target.path + (f"?{target.query}" if target.query else "")
        communicator = WebsocketCommunicator(
            self.application,
            path,
            headers=[
                (b"host", target.netloc.encode("ascii")),
                (b"x-twilio-signature", signature.encode("ascii")),
            ],
        )
        connected, code = await communicator.connect(timeout=10)
        if not connected:
            raise SimulatorError(f"the stream {path} was refused (close code {code})")
        return _CommunicatorSocket(communicator)


# --- what happened -------------------------------------------------------------------------


@dataclass
class AgentSpeech:
    """One stretch of agent audio, from the first frame after quiet until quiet again."""

    started_at: float
    line: int
    """Index of the scenario line it answers (0: the greeting, before any line)."""
    audio_ms: float = 0.0
    cleared: bool = False


@dataclass
class LineResult:
    """One scenario line as played, with what the agent did in answer."""

    index: int
    line: scenarios.Line
    started_at: float
    started_wall: dt.datetime
    action_ended_at: float | None = None
    """Monotonic time the caller's last voiced frame (or last key) was sent."""
    speech_ms: float = 0.0
    reply_ms: float | None = None
    """End of the caller's speech (or keys) to the first frame of the agent's answer: audio
    that starts after quiet or a ``clear``, not the rest of a prompt the caller talked over."""
    agent_ms: float = 0.0
    """How long the agent spoke in answer (audio received, cleared audio included)."""
    interrupted_agent: bool = False

    @property
    def kind(self) -> str:
        line = self.line
        if line.event:
            return "event"
        if line.hangup:
            return "hangup"
        if line.press:
            return "press"
        if line.silence:
            return "silence"
        return "say"

    @property
    def label(self) -> str:
        return self.describe(self.line)

    @staticmethod
    def describe(line: scenarios.Line) -> str:
        if line.event:
            return f"({line.event})"
        if line.hangup:
            return "(hangs up)"
        if line.press:
            return f"(presses {line.press})"
        if line.silence:
            return f"(silent {line.silence:g} s)"
        return line.caller


@dataclass(frozen=True)
class TranscriptTurn:
    """A stored turn, decrypted, as the transcript shows it."""

    sequence: int
    speaker: str
    text: str
    created_at: dt.datetime
    response_latency_ms: int | None = None
    stt_final_ms: int | None = None
    interrupted: bool = False


@dataclass
class CallResult:
    """Everything the caller observed, and the call as the database has it afterwards."""

    scenario: scenarios.Scenario
    call_sid: str
    stream_sid: str
    account_sid: str
    started_at: float
    lines: list[LineResult] = field(default_factory=list)
    agent_speech: list[AgentSpeech] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    server_closed: bool = False
    close_code: int | None = None
    dial: str = ""
    warnings: list[str] = field(default_factory=list)
    greeting_ms: float | None = None
    """``start`` sent to the first agent frame."""
    duration_s: float = 0.0
    frames_late: int = 0
    max_lateness_ms: float = 0.0
    call: Call | None = None
    transcript: list[TranscriptTurn] = field(default_factory=list)

    @property
    def reply_latencies_ms(self) -> list[float]:
        return [line.reply_ms for line in self.lines if line.reply_ms is not None]

    def turns_for_line(self, index: int) -> list[TranscriptTurn]:
        """Stored turns made in answer to line ``index`` (0: before the first line)."""
        return [turn for turn in self.transcript if self._line_of(turn) == index]

    def _line_of(self, turn: TranscriptTurn) -> int:
        # A turn answers the latest caller action begun before it was stored. Events are
        # the world acting, not the caller: they open no window of their own.
        owner = 0
        for line in self.lines:
            if line.kind != "event" and line.started_wall <= turn.created_at:
                owner = line.index
        return owner


# --- the caller ----------------------------------------------------------------------------


class TwilioCaller:
    """Plays one scenario as an inbound Twilio call; :meth:`play` returns a :class:`CallResult`.

    Options: ``speed`` (caller audio and agent playback run that many times faster than
    real time), ``voice`` (``"espeak"`` or ``"tone"``), ``barge_in`` (every spoken line
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
        voice: Voice = "espeak",
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
        unknown = {line.event for line in scenario.lines if line.event} - KNOWN_EVENTS
        if unknown:
            raise ValueError(f"unknown scenario events: {sorted(unknown)}")
        self.transport = transport
        self.scenario = scenario
        self.speed = speed
        self.voice: Voice = voice
        self.barge_in = barge_in
        self.auth_token = auth_token if auth_token is not None else settings.TWILIO_AUTH_TOKEN
        self.public_base_url = (
            public_base_url if public_base_url is not None else settings.PUBLIC_BASE_URL
        ).rstrip("/")
        self.to_number = to_number
        self.reply_timeout_s = reply_timeout_s
        self.settle_s = settle_s
        self.hangup_timeout_s = hangup_timeout_s
        self.load_from_db = load_from_db

        sid = account_sid if account_sid is not None else settings.TWILIO_ACCOUNT_SID
        self.messages = StreamMessages(
            stream_sid=new_sid("MZ"), call_sid=new_sid("CA"), account_sid=sid or new_sid("AC")
        )
        self.playback = Playback(speed=speed, late_tolerance_s=late_tolerance_s)
        self.result = CallResult(
            scenario=scenario,
            call_sid=self.messages.call_sid,
            stream_sid=self.messages.stream_sid,
            account_sid=self.messages.account_sid,
            started_at=time.monotonic(),
        )
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
            result.call, result.transcript = await _load_call(result.call_sid)
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
            await _take_offered_slot(self.messages.call_sid)

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


# --- the database side ---------------------------------------------------------------------


def _take_offered_slot_sync(call_sid: str) -> None:
    scenarios.take_offered_slot(Call.objects.get(call_sid=call_sid))


async def _take_offered_slot(call_sid: str) -> None:
    await database_sync_to_async(_take_offered_slot_sync)(call_sid)


def _load_call_sync(call_sid: str) -> tuple[Call | None, list[TranscriptTurn]]:
    call = Call.objects.filter(call_sid=call_sid).first()
    if call is None:
        return None, []
    turns = [
        TranscriptTurn(
            sequence=turn.sequence,
            speaker=turn.speaker,
            text=turn.text,
            created_at=turn.created_at,
            response_latency_ms=turn.response_latency_ms,
            stt_final_ms=turn.stt_final_ms,
            interrupted=turn.interrupted,
        )
        for turn in Turn.objects.filter(call=call).order_by("sequence")
    ]
    return call, turns


async def _load_call(
    call_sid: str, *, timeout_s: float = 10.0
) -> tuple[Call | None, list[TranscriptTurn]]:
    """The call and its turns, once the server has finished it (or ``timeout_s`` passed).

    A server in another process finishes the call after the socket closes; in-process, the
    consumer has finished before the communicator lets go.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        loaded: tuple[Call | None, list[TranscriptTurn]] = await database_sync_to_async(
            _load_call_sync
        )(call_sid)
        call = loaded[0]
        if call is None or call.finished or time.monotonic() > deadline:
            return loaded
        await asyncio.sleep(0.1)


def check(scenario: scenarios.Scenario, result: CallResult) -> list[str]:
    """What went wrong: :func:`intake.scenario.check` on the call, each line's ``agent_says``
    against the turns stored in answer to it, and the caller's own warnings (no answer, no
    hang-up). Empty when the call went as the scenario says. Uses the ORM: call it from
    synchronous code, or await :func:`acheck`.
    """
    if result.call is None:
        return [f"no call with CallSid {result.call_sid} in the database"]
    problems = list(result.warnings)
    for line in result.lines:
        wanted = line.line.agent_says
        if not wanted:
            continue
        said = " ".join(
            turn.text for turn in result.turns_for_line(line.index) if turn.speaker == "agent"
        )
        if wanted.lower() not in said.lower():
            problems.append(f"line {line.index} {line.label!r}: expected {wanted!r} in {said!r}")
    problems += scenarios.check(scenario, result.call)
    return problems


async def acheck(scenario: scenarios.Scenario, result: CallResult) -> list[str]:
    """:func:`check` from async code (tests)."""
    problems: list[str] = await database_sync_to_async(check)(scenario, result)
    return problems


# --- the transcript ------------------------------------------------------------------------


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


def format_transcript(result: CallResult) -> list[str]:
    """The call as lines of text: what the caller did, what the agent said, how fast.

    ``reply`` is measured here (end of the caller's speech to the first agent frame
    received); ``server`` is the latency the server stored for the turn.
    """
    out = [f"{result.scenario.name} [{result.scenario.slug}]  CallSid {result.call_sid}"]
    if result.greeting_ms is not None:
        out.append(f"    greeting after {result.greeting_ms:.0f} ms")

    def agent_lines(index: int) -> None:
        for turn in result.turns_for_line(index):
            if turn.speaker == "caller":
                out.append(f"    heard:  {turn.text}")
                continue
            extra = []
            if turn.response_latency_ms is not None:
                extra.append(f"server {turn.response_latency_ms} ms")
            if turn.interrupted:
                extra.append("interrupted")
            suffix = f"  [{', '.join(extra)}]" if extra else ""
            out.append(f"    {turn.speaker}:  {turn.text}{suffix}")

    agent_lines(0)
    greeting_ms = sum(s.audio_ms for s in result.agent_speech if s.line == 0)
    if greeting_ms:
        out.append(f"    (agent spoke {_seconds(greeting_ms)})")
    for line in result.lines:
        spoke = f"  ({_seconds(line.speech_ms)})" if line.speech_ms else ""
        barge = "  [talks over the agent]" if line.interrupted_agent else ""
        out.append(f"{line.index:>3} caller: {line.label}{spoke}{barge}")
        agent_lines(line.index)
        facts = []
        if line.reply_ms is not None:
            facts.append(f"reply {line.reply_ms:.0f} ms")
        if line.agent_ms:
            facts.append(f"agent spoke {_seconds(line.agent_ms)}")
        if facts:
            out.append(f"    ({', '.join(facts)})")
    call = result.call
    if call is not None:
        out.append(
            f"Call #{call.pk}: outcome={call.outcome} phase={call.phase or '-'} "
            f"duration={call.duration_seconds if call.duration_seconds is not None else '-'} s"
        )
    ending = "the agent hung up" if result.server_closed else "the caller hung up"
    out.append(
        f"{ending} (close code {result.close_code}) after {result.duration_s:.1f} s"
        + (f"; TwiML dials {result.dial} next" if result.dial and result.server_closed else "")
    )
    latencies = sorted(result.reply_latencies_ms)
    if latencies:
        middle = latencies[len(latencies) // 2]
        out.append(
            f"reply latency: median {middle:.0f} ms, max {latencies[-1]:.0f} ms "
            f"over {len(latencies)} turns"
        )
    out.append(
        "sent: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(result.sent.items()))
        + "; received: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(result.received.items()))
    )
    return out
