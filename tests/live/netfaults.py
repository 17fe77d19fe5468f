"""Network pieces the live harness controls: a cuttable TCP proxy, an SMTP sink, Twilio.

:class:`TcpProxy` sits between the product and PostgreSQL, so that a test can make the
database unreachable (existing connections reset, new ones refused) and bring it back,
without touching the machine's PostgreSQL that other work depends on. :class:`SmtpSink`
accepts the booking confirmations production sends over SMTP and counts them.
:class:`TwilioRest` answers the one REST call the product makes (complete a call, to hang
up), with Twilio's URL, authentication and response shape.

Both run in threads of the test process, bound to loopback only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import selectors
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from tests.live.processes import free_port


class TcpProxy:
    """Forward ``127.0.0.1:port`` to ``target``; :meth:`cut` and :meth:`restore` the link.

    While cut, every open connection is reset and new ones are accepted and closed at once,
    which is what a client sees when the database host goes away (psycopg raises
    ``OperationalError`` at once rather than hanging; a hang is the other half of "down",
    and the product's timeouts cover it).
    """

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()
        self.connections = 0
        self.refused = 0

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        """Reset every connection and refuse new ones until :meth:`restore`."""
        self._cut.set()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            self.connections += 1
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(
                target=self._pump, args=(client, upstream), name="tcp-proxy-pump", daemon=True
            ).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        client.settimeout(None)
        upstream.settimeout(None)
        peer = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(upstream, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    for key, _ in selector.select(timeout=0.5):
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        data = sock.recv(65536)
                        if not data:
                            return
                        peer[sock].sendall(data)
            except (OSError, ValueError):
                return
            finally:
                with self._lock:
                    if (client, upstream) in self._pairs:
                        self._pairs.remove((client, upstream))
                client.close()
                upstream.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a vanished host's network stack would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Enough of RFC 5321 for Django's SMTP backend: EHLO/HELO, MAIL, RCPT, DATA, RSET, QUIT."""

    server: _SmtpServer

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        self._reply("220 live-test smtp sink")
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            verb = raw.decode("ascii", "replace").strip().split(" ", 1)[0].upper()
            if verb == "EHLO":
                self._reply("250-sink")
                self._reply("250 8BITMIME")
            elif verb in {"HELO", "MAIL", "RCPT", "RSET", "NOOP"}:
                self._reply("250 OK")
            elif verb == "DATA":
                self._reply("354 end with <CRLF>.<CRLF>")
                while self.rfile.readline(65536) not in (b".\r\n", b".\n", b""):
                    continue
                with self.server.lock:
                    self.server.messages += 1
                self._reply("250 OK queued")
            elif verb == "QUIT":
                self._reply("221 bye")
                return
            else:
                self._reply("502 not implemented")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _SmtpHandler)
        self.lock = threading.Lock()
        self.messages = 0


class SmtpSink:
    """An SMTP server on a free loopback port that accepts and counts messages (no content
    is kept: confirmations are PHI-free by design, but a sink has no reason to store them)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server = _SmtpServer(self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="smtp-sink", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> int:
        with self._server.lock:
            return self._server.messages

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_CALL_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Calls/(CA[0-9a-f]{32})\.json$")


class _TwilioHandler(BaseHTTPRequestHandler):
    server: _TwilioServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's name)
        return  # the product logs its side; the test reads :attr:`TwilioRest.completed`

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        match = _CALL_PATH.match(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("ascii", "replace"))
        expected = base64.b64encode(
            f"{self.server.account_sid}:{self.server.auth_token}".encode()
        ).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        if match is None or match.group(1) != self.server.account_sid:
            self._answer(404, {"code": 20404, "message": "Not found", "status": 404})
            return
        status = form.get("Status", [""])[0]
        with self.server.lock:
            self.server.completed.append(match.group(2))
        self._answer(
            200,
            {
                "sid": match.group(2),
                "account_sid": match.group(1),
                "status": status or "in-progress",
                "api_version": "2010-04-01",
            },
        )

    def _answer(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _TwilioServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, account_sid: str, auth_token: str) -> None:
        super().__init__(("127.0.0.1", port), _TwilioHandler)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.lock = threading.Lock()
        self.completed: list[str] = []


class TwilioRest:
    """Twilio's REST API on loopback, for ``TWILIO_API_BASE_URL``: ``POST
    /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with HTTP Basic auth (account SID
    and auth token), as the twilio library sends it to complete a call."""

    def __init__(self, *, account_sid: str, auth_token: str) -> None:
        self.port = free_port()
        self._server = _TwilioServer(self.port, account_sid, auth_token)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="twilio-rest", daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def completed(self) -> list[str]:
        """CallSids the product asked Twilio to complete (hang up), in order."""
        with self._server.lock:
            return list(self._server.completed)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
