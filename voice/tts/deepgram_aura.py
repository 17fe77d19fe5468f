"""Deepgram Aura text-to-speech over REST (``POST /v1/speak``) through deepgram-sdk v7.

Aura streams the response body as it synthesises. Asking for ``encoding=mulaw``,
``sample_rate=8000`` and ``container=none`` gets exactly what Twilio plays, so chunks pass
through untouched and the first one can be sent to the caller as soon as it arrives.

The SDK's raw client exposes the HTTP response as an async context manager; leaving it (on
completion, cancellation or ``aclose()`` of the generator) closes the HTTP stream, so a
barge-in stops the download as well as the playback.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator

import httpx
from deepgram import AsyncDeepgramClient

from clinic.logs import get_logger
from voice.audio import TWILIO_RATE
from voice.stt.deepgram import deepgram_environment
from voice.tts.base import TextToSpeechError

log = get_logger(__name__)

DEFAULT_VOICE = "aura-2-thalia-en"
CIRCUIT = "deepgram_tts"
"""This provider's name for its circuit breaker (clinic.circuit) and the breaker gauge."""

# Every timeout of the HTTP client is set here, none left to httpx's defaults (5 s each) or
# the SDK's (60 s, which it drops anyway when given a client). Aura answers in a few hundred
# milliseconds; a caller hears silence for as long as a request waits, and FallbackTTS
# speaks instead once it gives up, so the waits are short.
CONNECT_TIMEOUT_S = 2.0
"""TCP and TLS handshake with Deepgram."""
READ_TIMEOUT_S = 5.0
"""Longest wait for the first audio byte, and then between two chunks of the stream."""
WRITE_TIMEOUT_S = 5.0
"""Sending the request (a sentence of JSON)."""
POOL_TIMEOUT_S = 2.0
"""Waiting for a free connection of the shared pool (all calls of a process share it)."""
MAX_CONNECTIONS = 100
"""Concurrent Aura requests per process (about one per live call)."""

_shared_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def http_client(
    *, connect_timeout_s: float = CONNECT_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S
) -> httpx.AsyncClient:
    """A new HTTP client for Aura: no SDK retries wrap it, short explicit timeouts."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=connect_timeout_s,
            read=read_timeout_s,
            write=WRITE_TIMEOUT_S,
            pool=POOL_TIMEOUT_S,
        ),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=20),
    )


def shared_http_client() -> httpx.AsyncClient | None:
    """The HTTP client shared by the calls on the running event loop (None outside a loop).

    A client per call would open a new TLS connection for every call's first sentence; a
    shared one keeps connections to Deepgram alive between calls. httpx clients belong to
    the loop they first ran on, hence one per loop.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    client = _shared_clients.get(loop)
    if client is None or client.is_closed:
        client = http_client()
        _shared_clients[loop] = client
    return client


class DeepgramAuraTTS:
    """:class:`voice.tts.base.TextToSpeech` on Deepgram Aura (REST, streamed)."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "",
        model: str = DEFAULT_VOICE,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``client``: an HTTP client to share (not closed by :meth:`aclose`); by default the
        instance opens its own."""
        self.model = model
        self._owns_http = client is None
        self._http = client or http_client()
        # No SDK retries: a retry costs the caller seconds of silence, and FallbackTTS has a
        # better answer.
        self._client = AsyncDeepgramClient(
            api_key=api_key,
            environment=deepgram_environment(base_url),
            httpx_client=self._http,
            max_retries=0,
        )
        self.requests = 0

    @property
    def name(self) -> str:
        return "deepgram"

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        self.requests += 1
        audio = self._client.speak.v1.audio.with_raw_response
        received = 0
        try:
            async with audio.generate(
                text=text,
                model=self.model,
                encoding="mulaw",
                sample_rate=TWILIO_RATE,
                container="none",
            ) as response:
                async for chunk in response.data:
                    if chunk:
                        received += len(chunk)
                        yield chunk
        except TextToSpeechError:
            raise
        except Exception as exc:
            # Status, connection reset, truncated body: one short code, never the text.
            status = getattr(exc, "status_code", None)
            log.warning(
                "tts_request_failed",
                engine="deepgram",
                error=type(exc).__name__,
                status=status,
                received_bytes=received,
            )
            raise TextToSpeechError(
                f"deepgram_speak_failed:{status or type(exc).__name__}"
            ) from exc

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
