"""Network pieces the live harness controls: a cuttable TCP proxy and an SMTP sink.

:class:`TcpProxy` sits between the product and PostgreSQL, so that a test can make the
database unreachable (existing connections reset, new ones refused) and bring it back,
without touching the machine's PostgreSQL that other work depends on. :class:`SmtpSink`
accepts the booking confirmations production sends over SMTP and counts them.

Both run in threads of the test process, bound to loopback only.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import threading

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
