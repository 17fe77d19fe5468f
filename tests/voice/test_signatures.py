"""Twilio signatures are checked against the public URL, never against what the request claims.

Signatures are computed with twilio's own RequestValidator, as Twilio computes them.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory
from twilio.request_validator import RequestValidator

from voice import signatures

AUTH_TOKEN = "test-auth-token-for-signatures"
PUBLIC = "https://clinic.example.org"
STREAM = "wss://clinic.example.org/voice/stream/"


@pytest.fixture(autouse=True)
def twilio_settings(settings: Any) -> None:
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.ALLOWED_HOSTS = ["*"]


def sign(url: str, params: dict[str, str] | None = None, token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params or {}))


def scope(
    signature: str | None,
    *,
    path: str = "/voice/stream/",
    query: bytes = b"",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    headers = [(b"host", b"10.0.0.5:8000"), *(extra or [])]
    if signature is not None:
        headers.append((b"x-twilio-signature", signature.encode()))
    return {"type": "websocket", "path": path, "query_string": query, "headers": headers}


# --- URLs ------------------------------------------------------------------------------------


def test_stream_url_is_wss_on_the_public_host_for_an_https_base() -> None:
    assert signatures.stream_url() == STREAM


def test_stream_url_is_plain_ws_for_an_http_development_base(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "http://localhost:8000"

    assert signatures.stream_url() == "ws://localhost:8000/voice/stream/"


def test_urls_keep_a_path_prefix_of_the_public_base(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://phones.example.org/clinic/"

    assert signatures.stream_url() == "wss://phones.example.org/clinic/voice/stream/"
    answer = signatures.public_url("/voice/answer")
    assert answer == "https://phones.example.org/clinic/voice/answer"


# --- WebSocket upgrade -----------------------------------------------------------------------


def test_websocket_upgrade_signed_for_the_public_stream_url_is_valid() -> None:
    assert signatures.valid_websocket_signature(scope(sign(STREAM)))


def test_websocket_upgrade_with_a_wrong_signature_is_invalid() -> None:
    assert not signatures.valid_websocket_signature(scope(sign(STREAM, token="someone-else")))
    assert not signatures.valid_websocket_signature(scope("bm90IGEgc2lnbmF0dXJl"))


def test_websocket_upgrade_without_a_signature_is_invalid() -> None:
    assert signatures.websocket_signature_problem(scope(None)) == signatures.MISSING
    assert signatures.websocket_signature_problem(scope("")) == signatures.MISSING


def test_websocket_upgrade_signed_for_the_internal_host_is_invalid() -> None:
    # What Django sees behind the proxy is not what Twilio signed.
    assert not signatures.valid_websocket_signature(scope(sign("ws://10.0.0.5:8000/voice/stream/")))


def test_websocket_upgrade_signed_for_another_path_is_invalid() -> None:
    signature = sign("wss://clinic.example.org/voice/other/")

    assert not signatures.valid_websocket_signature(scope(signature))


def test_websocket_signature_covers_the_query_string() -> None:
    signed = sign(STREAM + "?region=us1")

    assert signatures.valid_websocket_signature(scope(signed, query=b"region=us1"))
    assert not signatures.valid_websocket_signature(scope(signed, query=b"region=ie1"))
    assert not signatures.valid_websocket_signature(scope(signed))


def test_websocket_signature_accepts_the_url_with_the_default_port() -> None:
    signature = sign("wss://clinic.example.org:443/voice/stream/")

    assert signatures.valid_websocket_signature(scope(signature))


def test_websocket_signature_for_a_development_http_base_uses_ws(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "http://localhost:8000"

    assert signatures.valid_websocket_signature(scope(sign("ws://localhost:8000/voice/stream/")))
    assert not signatures.valid_websocket_signature(scope(sign(STREAM)))


def test_websocket_upgrade_with_two_signature_headers_is_refused() -> None:
    good = sign(STREAM)
    doubled = scope(good, extra=[(b"x-twilio-signature", b"forged")])

    assert signatures.websocket_signature_problem(doubled) == signatures.MALFORMED_SCOPE


def test_websocket_upgrade_signed_under_a_webhooks_rule_is_refused_with_its_reason() -> None:
    settings_header = (b"x-twilio-webhooks-signature-settings", b"key=KS1,algorithm=HMAC_SHA256")

    problem = signatures.websocket_signature_problem(scope(sign(STREAM), extra=[settings_header]))

    assert problem == signatures.UNSUPPORTED_SIGNING


@pytest.mark.parametrize(
    "bad_scope",
    [
        {},
        {"path": None, "headers": []},
        {"path": "/voice/stream/", "headers": None},
        {"path": "/voice/stream/", "headers": [("x-twilio-signature", "abc")]},
        {"path": "/voice/stream/", "headers": [(b"x-twilio-signature",)]},
        {"path": "/voice/stream/", "query_string": "a=1", "headers": []},
        {"path": "/voice/stream/", "query_string": "é".encode(), "headers": []},
    ],
)
def test_a_malformed_scope_is_invalid_and_never_raises(bad_scope: dict[str, Any]) -> None:
    assert not signatures.valid_websocket_signature(bad_scope)


def test_an_oversized_signature_is_invalid() -> None:
    assert signatures.websocket_signature_problem(scope("A" * 4096)) == signatures.INVALID


# --- HTTP webhooks ---------------------------------------------------------------------------


def test_http_signature_over_public_url_and_post_params_is_valid() -> None:
    params = {"CallSid": "CA" + "a" * 32, "From": "+16175550167", "CallStatus": "ringing"}
    request = RequestFactory().post(
        "/voice/answer?attempt=2",
        params,
        headers={"X-Twilio-Signature": sign(PUBLIC + "/voice/answer?attempt=2", params)},
        HTTP_HOST="10.0.0.5:8000",
    )

    assert signatures.valid_http_signature(request)


def test_http_signature_for_other_params_is_invalid() -> None:
    params = {"CallSid": "CA" + "a" * 32, "From": "+16175550167"}
    signature = sign(PUBLIC + "/voice/answer", {**params, "From": "+16175550100"})
    request = RequestFactory().post(
        "/voice/answer", params, headers={"X-Twilio-Signature": signature}
    )

    assert signatures.http_signature_problem(request) == signatures.INVALID


def test_http_request_without_a_signature_is_missing() -> None:
    request = RequestFactory().post("/voice/answer", {"CallSid": "CA" + "a" * 32})

    assert signatures.http_signature_problem(request) == signatures.MISSING


def test_only_call_sid_shaped_values_are_loggable() -> None:
    sid = "CA" + "0123456789abcdef" * 2

    assert signatures.loggable_call_sid(sid) == sid
    assert signatures.loggable_call_sid("+16175550167") == ""
    assert signatures.loggable_call_sid(sid + "x") == ""
    assert signatures.loggable_call_sid(None) == ""
