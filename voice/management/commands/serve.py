"""Serve the clinic (HTTP, webhooks and media streams) with Daphne, and stop without dropping calls.

    python manage.py serve --bind 127.0.0.1 --port 8000
    python manage.py serve --bind 127.0.0.1 --port 8001 --proxy-headers   # behind nginx

This is Daphne's own server (``daphne.server.Server`` on Twisted's asyncio reactor, the same
as ``daphne clinic.asgi:application``) run in-process so that this process, not Daphne,
decides what a signal means:

- start-up, before the port opens: calls left in progress by a process that died are swept
  (:mod:`voice.heartbeat`), the speech recogniser is loaded, and the fixed prompts (and the
  hand-over lines) are synthesised into the prompt cache, so the first caller waits for none
  of it;
- while serving: the sweep runs every ``CALL_SWEEP_SECONDS`` (the embedded default has no
  Celery beat, and with beat it is a second line of defence);
- SIGTERM or SIGINT: the process drains (:mod:`voice.drain`): readiness answers 503, new
  callers go to the front desk, new streams are refused, live calls are handed over at a
  safe point within ``DRAIN_GRACE_SECONDS`` and finished, deferred writes are flushed; then
  Daphne stops. Exit status 0 when every call was handed over and written, 1 otherwise. A
  second signal stops at once (status 1).

The process manager must allow :func:`stop_timeout_seconds` between SIGTERM and SIGKILL:
``DRAIN_GRACE_SECONDS`` + 35 s with today's constants (60 s with the default 20 s grace).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from clinic import lifecycle
from clinic.logs import get_logger
from clinic.outbox import outbox_relay_forever
from voice import drain, heartbeat
from voice import stt as voice_stt
from voice.deferred import deferred_writes

log = get_logger(__name__)

DEFERRED_FLUSH_SECONDS = 5.0
"""After the drain, how long writes waiting for the database may take to go through."""


def stop_timeout_seconds() -> float:
    """The longest a stop can take with this configuration: the process manager's minimum."""
    return drain.stop_timeout_seconds(float(settings.DRAIN_GRACE_SECONDS)) + DEFERRED_FLUSH_SECONDS


class Command(BaseCommand):
    help = "Serve HTTP and Twilio media streams with Daphne; drain live calls on SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1", help="interface (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="trust X-Forwarded-For/-Port/-Proto from the proxy in front (nginx)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port = int(options["port"])
        if not 0 < port < 65536:
            raise CommandError(f"--port must be 1-65535, got {port}")
        process = ServeProcess(
            host=str(options["bind"]), port=port, proxy_headers=bool(options["proxy_headers"])
        )
        try:
            code = process.run()
        except ImproperlyConfigured as exc:  # e.g. the recogniser's model failed its check
            raise CommandError(str(exc), returncode=2) from None
        if code:
            raise SystemExit(code)


class ServeProcess:
    """One server process: start-up work, Daphne, signals, the drain."""

    def __init__(self, *, host: str, port: int, proxy_headers: bool) -> None:
        self.host = host
        self.port = port
        self.proxy_headers = proxy_headers
        self.exit_code = 0
        self._signals = 0
        self._server: Any = None
        self._background: list[asyncio.Task[Any]] = []

    def run(self) -> int:
        # Importing daphne.server installs Twisted's asyncio reactor on its own event loop; it
        # must come before anything imports twisted.internet.reactor.
        from daphne import server as daphne_server
        from daphne.endpoints import build_endpoint_description_strings

        loop: asyncio.AbstractEventLoop = daphne_server.twisted_loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._start_up())
        connections.close_all()  # start-up ran on this thread; calls use their own

        from clinic.asgi import application

        forwarded = self.proxy_headers
        self._server = daphne_server.Server(
            application=drain.RefuseStreamsWhileDraining(application),
            endpoints=build_endpoint_description_strings(host=self.host, port=self.port),
            signal_handlers=False,
            proxy_forwarded_address_header="X-Forwarded-For" if forwarded else None,
            proxy_forwarded_port_header="X-Forwarded-Port" if forwarded else None,
            proxy_forwarded_proto_header="X-Forwarded-Proto" if forwarded else None,
            # A session finishing after its socket closed writes the call's end: give it the
            # time the drain gives it before Daphne cancels it.
            application_close_timeout=drain.SESSION_CLEANUP_SECONDS,
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        from twisted.internet import reactor

        reactor.callWhenRunning(self._on_running)
        self._server.run()
        if not self._server.listening_addresses:
            log.error("server_not_listening", host=self.host, port=self.port)
            self.exit_code = self.exit_code or 1
        connections.close_all()
        log.info("server_exited", exit_code=self.exit_code)
        return self.exit_code

    async def _start_up(self) -> None:
        from voice.consumers import prompt_cache_ready

        try:
            swept = await database_sync_to_async(heartbeat.sweep_once)()
        except DatabaseError as exc:
            log.warning("call_sweep_failed", at="start_up", error=type(exc).__name__)
        else:
            log.info("start_up_sweep", calls=len(swept))
        # The recogniser's model is joined, verified, loaded and warmed up before the first
        # call (a model that fails its hash check stops start-up here, in one line).
        await voice_stt.preload_from_settings()
        log.info("stt_preloaded", provider=settings.STT_PROVIDER)
        cached = await prompt_cache_ready()
        log.info("start_up_done", prompts_cached=cached)

    def _on_running(self) -> None:
        addresses = [f"{host}:{port}" for host, port in self._server.listening_addresses]
        log.info("server_listening", addresses=addresses, pid=os.getpid())
        loop = asyncio.get_event_loop()
        self._background += [
            loop.create_task(heartbeat.sweep_periodically(), name="call-sweep"),
            # Work for Celery written while the broker was down goes out from here too, so the
            # embedded default and a deployment whose beat cannot reach a worker both drain it.
            loop.create_task(outbox_relay_forever(), name="outbox-relay"),
        ]

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            log.warning("server_stop_forced", signal=name)
            self.exit_code = 1
            self._server.stop()
            return
        lifecycle.begin_draining()
        log.info("server_draining", signal=name, calls=len(drain.live_sessions()))
        loop = asyncio.get_event_loop()
        self._background.append(loop.create_task(self._drain_and_stop(), name="drain"))

    async def _drain_and_stop(self) -> None:
        try:
            report = await drain.drain_live_calls(grace_seconds=float(settings.DRAIN_GRACE_SECONDS))
            left = await deferred_writes().flush(DEFERRED_FLUSH_SECONDS)
            if not report.clean or left:
                self.exit_code = 1
        except Exception:
            log.exception("drain_failed")
            self.exit_code = 1
        finally:
            current = asyncio.current_task()
            others = [task for task in self._background if task is not current]
            for task in others:
                task.cancel()
            if others:  # each closes its database connection as it stops
                await asyncio.wait(others, timeout=DEFERRED_FLUSH_SECONDS)
            self._server.stop()
