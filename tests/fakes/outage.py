"""Outages for the loopback fakes: a provider that refuses connections, then comes back.

A real outage closes the listening port (connections are refused at once) and drops the
connections that were open, kept-alive HTTP connections and live WebSockets alike. Coming
back listens again on the same port, so clients configured with the fake's URL reconnect to
it without being told anything.
"""

from __future__ import annotations

import contextlib

from aiohttp import web


async def stop_accepting(runner: web.AppRunner) -> None:
    """Close the port and drop every open connection (WebSockets are closed by their owner)."""
    for site in list(runner.sites):
        await site.stop()
    server = runner.server
    if server is not None:
        for connection in server.connections:
            with contextlib.suppress(Exception):
                connection.force_close()


async def start_accepting(runner: web.AppRunner, port: int) -> None:
    """Listen on ``port`` again (the one the clients know)."""
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
