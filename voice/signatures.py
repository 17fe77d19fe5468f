"""Is this really Twilio? Signatures of the webhooks and of the media-stream upgrade.

Twilio signs each request with HMAC-SHA1, keyed with the account's Auth Token, over the URL it
requested followed by the sorted POST parameters, and sends the result in
``X-Twilio-Signature``. The URL is the *public* one Twilio was given. Behind a load balancer
or proxy that is not what Django sees (the Host header may be an internal name, the scheme
http), so the URL is rebuilt from ``PUBLIC_BASE_URL`` plus the request's path and query, and
never from ``Host`` or ``X-Forwarded-Host``: those are chosen by whoever sends the request, so
letting them decide which URL is checked would let a signature made for another URL pass.

``PUBLIC_BASE_URL`` is the public origin, plus any path prefix the proxy strips before the
request reaches Django.

The media-stream WebSocket upgrade carries the same header, signed over the public ``wss://``
URL (``ws://`` for an ``http://`` base in development) with no parameters. That signature is
the same for every call, so it proves only that Twilio made it at some point; the per-call,
single-use token (:mod:`voice.tokens`) proves the rest.

Requests signed under a Twilio *Webhooks Rule* (a SharedKey instead of the Auth Token, marked
by ``X-Twilio-Webhooks-Signature-Settings``) are refused with their own reason: there is no
setting for a SharedKey secret, and the reason in the log tells the operator why calls fail.

Everything here is pure: no database, no logging. Callers log the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.http import HttpRequest
from django.utils.encoding import escape_uri_path
from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
STREAM_PATH = "/voice/stream/"
"""Where the media-stream consumer is routed (``voice/routing.py``)."""

# A base64 HMAC-SHA1 is 28 characters; anything far longer is not a signature.
_MAX_SIGNATURE_CHARS = 128
_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")

# Reasons a signature check fails; short codes, safe to log.
MISSING = "missing"
INVALID = "invalid"
UNSUPPORTED_SIGNING = "unsupported_signing"
MALFORMED_SCOPE = "malformed_scope"


def public_url(path: str) -> str:
    """The public ``http(s)://`` URL of a path on this site, as Twilio knows it."""
    return _base_url() + path


def public_websocket_url(path: str) -> str:
    """The public ``wss://`` URL of a path (``ws://`` when ``PUBLIC_BASE_URL`` is http)."""
    parts = urlsplit(_base_url())
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path, "", "")) + path


def stream_url() -> str:
    """The media-stream URL put in the answer TwiML's ``<Stream url=...>``."""
    return public_websocket_url(STREAM_PATH)


def http_signature_problem(request: HttpRequest) -> str | None:
    """Why a webhook's signature is not acceptable (a reason code), or None when it is."""
    if request.headers.get(SIGNATURE_SETTINGS_HEADER):
        return UNSUPPORTED_SIGNING
    return _check(
        url=public_url(request.get_full_path()),
        params=request.POST,
        signature=request.headers.get(SIGNATURE_HEADER, ""),
    )


def valid_http_signature(request: HttpRequest) -> bool:
    """True when the request carries Twilio's signature over its public URL and POST body."""
    return http_signature_problem(request) is None


def websocket_signature_problem(scope: Mapping[str, Any]) -> str | None:
    """Why a WebSocket upgrade's signature is not acceptable, or None when it is.

    ``scope`` is the ASGI connection scope; a scope of the wrong shape is refused, never
    raised on.
    """
    try:
        path = scope["path"]
        query = scope.get("query_string", b"")
        headers = _headers(scope.get("headers", ()))
        if not isinstance(path, str) or not isinstance(query, bytes):
            return MALFORMED_SCOPE
        query_text = query.decode("ascii")
    except (KeyError, TypeError, ValueError, AttributeError):
        return MALFORMED_SCOPE
    if headers.get(SIGNATURE_SETTINGS_HEADER.lower()):
        return UNSUPPORTED_SIGNING
    url = public_websocket_url(escape_uri_path(path))
    if query_text:
        url = f"{url}?{query_text}"
    signature = headers.get(SIGNATURE_HEADER.lower(), "")
    problem = _check(url=url, params={}, signature=signature)
    if problem == INVALID:
        # twilio's validator adds only http(s) default ports (it would try wss://host:80), so
        # the ws form with its own default port is tried here.
        problem = _check(url=_with_default_port(url), params={}, signature=signature)
    return problem


def valid_websocket_signature(scope: Mapping[str, Any]) -> bool:
    """True when the upgrade carries Twilio's signature over the public ``wss://`` URL."""
    return websocket_signature_problem(scope) is None


def loggable_call_sid(value: object) -> str:
    """``value`` if it is shaped like a CallSid, else "".

    A CallSid from an unsigned request is attacker-controlled text, and ``call_sid`` is a key
    the log redaction trusts; only the expected shape is allowed into a log line.
    """
    return value if isinstance(value, str) and _CALL_SID.fullmatch(value) else ""


def _base_url() -> str:
    return str(settings.PUBLIC_BASE_URL).rstrip("/")


def _with_default_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.port is not None or not parts.hostname:
        return url
    port = 443 if parts.scheme == "wss" else 80
    return urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))


def _check(*, url: str, params: Any, signature: str) -> str | None:
    if not signature:
        return MISSING
    if len(signature) > _MAX_SIGNATURE_CHARS:
        return INVALID
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    # validate() also tries the URL with and without the default port, as Twilio may sign
    # either form.
    return None if validator.validate(url, params, signature) else INVALID


def _headers(raw: Iterable[Any]) -> dict[str, str]:
    """ASGI headers (pairs of bytes, lower-case names) as a dict; a repeated name is refused."""
    headers: dict[str, str] = {}
    for name, value in raw:
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError("ASGI headers are pairs of bytes")
        key = name.decode("latin-1").lower()
        if key in headers:
            if key in (SIGNATURE_HEADER.lower(), SIGNATURE_SETTINGS_HEADER.lower()):
                # Two signatures: which one would a proxy have checked? Neither is trusted.
                raise ValueError("repeated signature header")
            continue
        headers[key] = value.decode("latin-1")
    return headers
