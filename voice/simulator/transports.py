"""How the caller reaches the server: over the network, or in this process for tests."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

from clinic.logs import get_logger
from voice.simulator.wire import SimulatorError

log = get_logger(__name__)


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
