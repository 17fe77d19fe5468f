"""Bind a request id to every log line of a request and log its outcome (no PHI)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from clinic.logs import get_logger

log = get_logger(__name__)

# Accept a caller-supplied id (from a proxy) only if it looks like an id, never free text.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _request_id(request: HttpRequest) -> str:
    supplied = request.headers.get("X-Request-ID", "")
    return supplied if _SAFE_REQUEST_ID.match(supplied) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Works in both sync and async stacks so that Daphne does not hop threads for it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        started = self._begin(request)
        response: HttpResponseBase = self.get_response(request)
        return self._end(request, response, started)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        started = self._begin(request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        return self._end(request, response, started)

    @staticmethod
    def _begin(request: HttpRequest) -> float:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=_request_id(request))
        return time.perf_counter()

    @staticmethod
    def _end(request: HttpRequest, response: HttpResponseBase, started: float) -> HttpResponseBase:
        request_id = structlog.contextvars.get_contextvars().get("request_id", "")
        response["X-Request-ID"] = request_id
        log.info(
            "http_request",
            method=request.method,
            path=request.path,
            status_code=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        # The thread (or task) serves other work next: do not lend it this request's id.
        structlog.contextvars.clear_contextvars()
        return response
