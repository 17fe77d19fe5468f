"""Twilio's webhooks end to end through Django's test client, signed as Twilio signs them.

Every request is signed with twilio's own RequestValidator over the public URL. Each test gets
a private LocMem cache, so rate-limit counters never leak between tests (nor into the Redis
default cache when REDIS_URL is set).
"""

from __future__ import annotations

import itertools
import logging
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client
from twilio.request_validator import RequestValidator

from intake.models import Call, FollowUp
from tests.factories import CallFactory
from voice import ratelimits, tokens
from voice.models import StreamGrant

pytestmark = pytest.mark.django_db

AUTH_TOKEN = "test-auth-token-for-webhooks"
PUBLIC = "https://clinic.example.org"
FRONT_DESK = "+16175550100"
CALLER = "+16175550167"
_sids = itertools.count(1)


@pytest.fixture(autouse=True)
def twilio_settings(settings: Any) -> None:
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.FRONT_DESK_NUMBER = FRONT_DESK
    settings.ALLOWED_HOSTS = ["testserver", "clinic.example.org", "10.0.0.5"]


@pytest.fixture(autouse=True)
def private_rate_limit_cache(settings: Any) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"voice-webhooks-{uuid.uuid4().hex}",
        }
    }


def new_sid() -> str:
    return f"CA{next(_sids):032x}"


def answer_params(call_sid: str | None = None, caller: str = CALLER) -> dict[str, str]:
    return {
        "CallSid": call_sid or new_sid(),
        "AccountSid": "AC" + "0" * 32,
        "From": caller,
        "To": "+16175550199",
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


def signed_post(
    path: str,
    params: dict[str, str],
    *,
    signed_url: str | None = None,
    token: str = AUTH_TOKEN,
    client: Client | None = None,
    **extra: Any,
) -> Any:
    signature = RequestValidator(token).compute_signature(signed_url or PUBLIC + path, params)
    headers = {"X-Twilio-Signature": signature, **extra.pop("headers", {})}
    return (client or Client()).post(path, params, headers=headers, **extra)


def twiml_of(response: HttpResponse) -> ET.Element:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)  # noqa: S314 - our own response, not untrusted XML
    assert root.tag == "Response"
    return root


def stream_token(root: ET.Element) -> str:
    [parameter] = root.findall("./Connect/Stream/Parameter")
    assert parameter.get("name") == "token"
    return parameter.get("value") or ""


# --- /voice/answer ---------------------------------------------------------------------------


def test_answer_connects_the_stream_with_a_token_then_dials_the_front_desk() -> None:
    params = answer_params()

    root = twiml_of(signed_post("/voice/answer", params))

    assert [child.tag for child in root] == ["Connect", "Dial"]
    [stream] = root.findall("./Connect/Stream")
    assert stream.get("url") == "wss://clinic.example.org/voice/stream/"
    dial = root.find("./Dial")
    assert dial is not None and dial.text == FRONT_DESK
    assert dial.get("action") == PUBLIC + "/voice/dial-status"
    call = Call.objects.get()
    assert call.call_sid == params["CallSid"] and call.caller_number == CALLER
    redeemed = tokens.stream_token_redeem(stream_token(root), call_sid=call.call_sid)
    assert redeemed is not None and redeemed.pk == call.pk


def test_answer_without_a_front_desk_number_only_connects_the_stream(settings: Any) -> None:
    settings.FRONT_DESK_NUMBER = ""

    root = twiml_of(signed_post("/voice/answer", answer_params()))

    assert [child.tag for child in root] == ["Connect"]


def test_answer_in_development_streams_over_plain_ws(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "http://localhost:8000"
    params = answer_params()

    root = twiml_of(
        signed_post("/voice/answer", params, signed_url="http://localhost:8000/voice/answer")
    )

    [stream] = root.findall("./Connect/Stream")
    assert stream.get("url") == "ws://localhost:8000/voice/stream/"


def test_a_replayed_answer_returns_the_same_call_and_a_fresh_token() -> None:
    params = answer_params()

    first = twiml_of(signed_post("/voice/answer", params))
    again = twiml_of(signed_post("/voice/answer", params))

    assert Call.objects.count() == 1
    assert stream_token(first) != stream_token(again)
    sid = params["CallSid"]
    assert tokens.stream_token_redeem(stream_token(again), call_sid=sid) == Call.objects.get()


def test_a_replayed_answer_before_the_stream_attaches_cannot_attach_a_second_stream() -> None:
    params = answer_params()
    sid = params["CallSid"]
    first = twiml_of(signed_post("/voice/answer", params))
    replayed = twiml_of(signed_post("/voice/answer", params))

    # Twilio's stream attaches with the token it was given; the replay's token is then useless,
    # and so is the first token once it has been used.
    assert tokens.stream_token_redeem(stream_token(first), call_sid=sid) is not None
    assert tokens.stream_token_redeem(stream_token(replayed), call_sid=sid) is None
    assert tokens.stream_token_redeem(stream_token(first), call_sid=sid) is None
    assert StreamGrant.objects.filter(used_at__isnull=False).count() == 1


def test_an_answer_replayed_after_the_stream_opened_gets_no_new_token() -> None:
    params = answer_params()
    first = twiml_of(signed_post("/voice/answer", params))
    assert tokens.stream_token_redeem(stream_token(first), call_sid=params["CallSid"]) is not None

    replay = twiml_of(signed_post("/voice/answer", params))

    assert [child.tag for child in replay] == ["Dial"]
    assert StreamGrant.objects.count() == 1


def test_a_start_for_another_call_does_not_burn_the_token_of_the_call_it_was_issued_for() -> None:
    params = answer_params()
    root = twiml_of(signed_post("/voice/answer", params))
    other = Call.objects.create(call_sid=new_sid())

    assert tokens.stream_token_redeem(stream_token(root), call_sid=other.call_sid) is None
    # ... so a later answer for the real call is not mistaken for a replay after attach, and
    # the real stream still attaches with its token.
    assert not tokens.stream_grant_redeemed(Call.objects.get(call_sid=params["CallSid"]))
    assert tokens.stream_token_redeem(stream_token(root), call_sid=params["CallSid"]) is not None


def test_an_answer_for_a_finished_call_gets_no_token(settings: Any) -> None:
    settings.FRONT_DESK_NUMBER = ""
    call = CallFactory.create(outcome=Call.Outcome.BOOKED)

    replay = twiml_of(signed_post("/voice/answer", answer_params(call.call_sid)))

    assert [child.tag for child in replay] == ["Hangup"]
    assert not StreamGrant.objects.exists()


def test_answer_with_a_bad_signature_is_forbidden_and_logged_without_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    params = answer_params()

    with caplog.at_level(logging.WARNING):
        response = signed_post("/voice/answer", params, token="not-our-auth-token")

    assert response.status_code == 403
    assert not Call.objects.exists()
    [record] = [r for r in caplog.records if "twilio_signature_rejected" in str(r.msg)]
    assert params["CallSid"] in str(record.msg)
    assert "6175550167" not in caplog.text and "6175550167" not in str(record.msg)


def test_answer_without_a_signature_is_forbidden() -> None:
    response = Client().post("/voice/answer", answer_params())

    assert response.status_code == 403
    assert not Call.objects.exists()


def test_answer_with_params_other_than_those_signed_is_forbidden() -> None:
    params = answer_params()
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        PUBLIC + "/voice/answer", {**params, "From": "+16175550111"}
    )

    response = Client().post("/voice/answer", params, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403


def test_answer_signed_for_the_forwarded_host_instead_of_the_public_url_is_forbidden() -> None:
    params = answer_params()

    response = signed_post(
        "/voice/answer",
        params,
        signed_url="https://10.0.0.5/voice/answer",
        headers={"Host": "10.0.0.5", "X-Forwarded-Host": "10.0.0.5"},
    )
    as_django_sees_it = signed_post(
        "/voice/answer", params, signed_url="http://testserver/voice/answer"
    )

    assert response.status_code == 403
    assert as_django_sees_it.status_code == 403
    assert not Call.objects.exists()


def test_answer_through_a_proxy_with_another_host_but_signed_for_the_public_url_is_accepted() -> (
    None
):
    response = signed_post(
        "/voice/answer",
        answer_params(),
        headers={"Host": "10.0.0.5", "X-Forwarded-Host": "10.0.0.5", "X-Forwarded-Proto": "http"},
    )

    root = twiml_of(response)
    assert root.find("./Connect/Stream") is not None


def test_answer_signed_under_a_webhooks_rule_is_forbidden() -> None:
    response = signed_post(
        "/voice/answer",
        answer_params(),
        headers={"X-Twilio-Webhooks-Signature-Settings": "key=KS1,algorithm=HMAC_SHA256"},
    )

    assert response.status_code == 403


def test_answer_accepts_only_post() -> None:
    assert Client().get("/voice/answer").status_code == 405


def test_a_signed_answer_without_a_call_sid_is_a_bad_request() -> None:
    params = answer_params()
    del params["CallSid"]

    assert signed_post("/voice/answer", params).status_code == 400


# --- rate limits -----------------------------------------------------------------------------


def test_the_default_limits_are_five_calls_per_caller_in_ten_minutes_and_sixty_per_address() -> (
    None
):
    assert ratelimits.caller_rate() == "5/10m"
    assert ratelimits.ip_rate() == "60/m"


def test_a_caller_over_the_limit_is_rejected_busy_without_a_call_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for _ in range(5):
        assert twiml_of(signed_post("/voice/answer", answer_params())).find("Connect") is not None

    with caplog.at_level(logging.WARNING):
        sixth = twiml_of(signed_post("/voice/answer", answer_params()))

    [reject] = list(sixth)
    assert reject.tag == "Reject" and reject.get("reason") == "busy"
    assert Call.objects.count() == 5
    [record] = [r for r in caplog.records if "call_rate_limited" in str(r.msg)]
    assert "caller" in str(record.msg) and "6175550167" not in str(record.msg)
    # Another caller on the same line is not affected.
    other = twiml_of(signed_post("/voice/answer", answer_params(caller="+16175550168")))
    assert other.find("Connect") is not None


def test_the_caller_limit_recognises_the_same_number_written_differently(settings: Any) -> None:
    settings.VOICE_ANSWER_CALLER_RATE = "1/d"
    assert twiml_of(signed_post("/voice/answer", answer_params(caller="+16175550167")))

    second = twiml_of(signed_post("/voice/answer", answer_params(caller="(617) 555-0167")))

    assert second[0].tag == "Reject"


def test_withheld_caller_ids_do_not_share_one_caller_bucket(settings: Any) -> None:
    settings.VOICE_ANSWER_CALLER_RATE = "1/d"

    for _ in range(3):
        root = twiml_of(signed_post("/voice/answer", answer_params(caller="+266696687")))
        assert root[0].tag == "Connect"
    assert twiml_of(signed_post("/voice/answer", answer_params(caller="Anonymous")))[0].tag == (
        "Connect"
    )


def test_an_address_over_its_limit_is_rejected_whoever_calls(settings: Any) -> None:
    settings.VOICE_ANSWER_IP_RATE = "2/d"

    def call_from(address: str, caller: str) -> str:
        params = answer_params(caller=caller)
        return twiml_of(signed_post("/voice/answer", params, REMOTE_ADDR=address))[0].tag

    answered = [call_from("203.0.113.7", f"+1617555{n:04d}") for n in range(3)]
    elsewhere = call_from("203.0.113.8", "+16175559999")

    assert answered == ["Connect", "Connect", "Reject"]
    assert elsewhere == "Connect"
    assert Call.objects.count() == 3


def test_forged_requests_do_not_spend_a_callers_allowance(settings: Any) -> None:
    settings.VOICE_ANSWER_CALLER_RATE = "1/d"
    settings.VOICE_ANSWER_IP_RATE = "1/d"
    for _ in range(5):
        forged = signed_post("/voice/answer", answer_params(), token="guessed-token")
        assert forged.status_code == 403

    genuine = twiml_of(signed_post("/voice/answer", answer_params()))

    assert genuine[0].tag == "Connect"


def test_an_empty_rate_turns_a_limit_off(settings: Any) -> None:
    settings.VOICE_ANSWER_CALLER_RATE = ""

    tags = [twiml_of(signed_post("/voice/answer", answer_params()))[0].tag for _ in range(7)]

    assert tags == ["Connect"] * 7


def test_calls_are_answered_when_the_rate_limit_cache_is_down(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1: every cache operation fails with a connection error.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }

    with caplog.at_level(logging.ERROR):
        root = twiml_of(signed_post("/voice/answer", answer_params()))

    assert root[0].tag == "Connect"
    assert any("rate_limit_unavailable" in str(r.msg) for r in caplog.records)


# --- /voice/status ---------------------------------------------------------------------------


def status_params(call_sid: str, call_status: str = "completed") -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "CallStatus": call_status,
        "CallDuration": "12",
        "From": CALLER,
    }


def test_status_completed_finishes_a_never_connected_call_as_dropped() -> None:
    call = CallFactory.create()

    response = signed_post("/voice/status", status_params(call.call_sid))

    assert response.status_code == 200
    call.refresh_from_db()
    assert call.outcome == Call.Outcome.ABANDONED and call.ended_at is not None
    [followup] = FollowUp.objects.filter(call=call)
    assert followup.reason == FollowUp.Reason.CALL_DROPPED


def test_a_repeated_status_callback_changes_nothing() -> None:
    call = CallFactory.create()
    signed_post("/voice/status", status_params(call.call_sid))
    call.refresh_from_db()
    ended_at = call.ended_at

    signed_post("/voice/status", status_params(call.call_sid))
    signed_post("/voice/status", status_params(call.call_sid, "failed"))

    call.refresh_from_db()
    assert call.outcome == Call.Outcome.ABANDONED and call.ended_at == ended_at
    assert FollowUp.objects.filter(call=call).count() == 1


def test_status_after_a_booking_keeps_the_booking_and_opens_nothing() -> None:
    call = CallFactory.create(outcome=Call.Outcome.BOOKED)

    assert signed_post("/voice/status", status_params(call.call_sid)).status_code == 200

    call.refresh_from_db()
    assert call.outcome == Call.Outcome.BOOKED
    assert not FollowUp.objects.exists()


@pytest.mark.parametrize(
    ("call_status", "outcome"),
    [
        ("failed", Call.Outcome.FAILED),
        ("busy", Call.Outcome.ABANDONED),
        ("no-answer", Call.Outcome.ABANDONED),
        ("canceled", Call.Outcome.ABANDONED),
    ],
)
def test_other_final_statuses_finish_the_call_without_a_follow_up(
    call_status: str, outcome: str
) -> None:
    call = CallFactory.create()

    signed_post("/voice/status", status_params(call.call_sid, call_status))

    call.refresh_from_db()
    assert call.outcome == outcome
    assert not FollowUp.objects.exists()


def test_a_status_that_is_not_final_changes_nothing() -> None:
    call = CallFactory.create()

    response = signed_post("/voice/status", status_params(call.call_sid, "in-progress"))

    assert response.status_code == 200

    call.refresh_from_db()
    assert call.outcome == Call.Outcome.IN_PROGRESS


def test_status_for_an_unknown_call_is_acknowledged_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        response = signed_post("/voice/status", status_params(new_sid()))

    assert response.status_code == 200
    assert not Call.objects.exists()
    assert any("call_status_unknown_call" in str(r.msg) for r in caplog.records)


def test_status_with_a_bad_signature_is_forbidden() -> None:
    call = CallFactory.create()

    response = signed_post("/voice/status", status_params(call.call_sid), token="wrong")

    assert response.status_code == 403
    call.refresh_from_db()
    assert call.outcome == Call.Outcome.IN_PROGRESS


# --- /voice/dial-status ----------------------------------------------------------------------


def dial_params(call_sid: str, dial_status: str) -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "DialCallStatus": dial_status,
        "DialCallSid": "CA" + "d" * 32,
    }


@pytest.mark.parametrize("dial_status", ["busy", "no-answer", "failed", "canceled"])
def test_a_transfer_that_did_not_connect_opens_a_high_priority_follow_up(dial_status: str) -> None:
    call = CallFactory.create()

    root = twiml_of(signed_post("/voice/dial-status", dial_params(call.call_sid, dial_status)))

    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert "call you back" in (root[0].text or "")
    [followup] = FollowUp.objects.filter(call=call)
    assert followup.reason == FollowUp.Reason.TRANSFER_FAILED
    assert followup.priority == FollowUp.Priority.HIGH
    call.refresh_from_db()
    assert call.outcome == Call.Outcome.CALLBACK


def test_a_repeated_failed_transfer_callback_opens_one_follow_up() -> None:
    call = CallFactory.create()

    for _ in range(3):
        signed_post("/voice/dial-status", dial_params(call.call_sid, "no-answer"))
    signed_post("/voice/status", status_params(call.call_sid))

    assert list(FollowUp.objects.values_list("reason", flat=True)) == [
        FollowUp.Reason.TRANSFER_FAILED
    ]


def test_a_connected_transfer_answers_an_empty_response_and_marks_the_call_transferred() -> None:
    call = CallFactory.create()

    root = twiml_of(signed_post("/voice/dial-status", dial_params(call.call_sid, "completed")))
    signed_post("/voice/status", status_params(call.call_sid))

    assert list(root) == []
    call.refresh_from_db()
    assert call.outcome == Call.Outcome.TRANSFERRED
    assert not FollowUp.objects.exists()


def test_a_failed_transfer_of_an_unknown_call_still_tells_the_caller() -> None:
    root = twiml_of(signed_post("/voice/dial-status", dial_params(new_sid(), "busy")))

    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert not FollowUp.objects.exists()


def test_dial_status_with_a_bad_signature_is_forbidden() -> None:
    call = CallFactory.create()

    response = signed_post(
        "/voice/dial-status", dial_params(call.call_sid, "busy"), token="wrong-token"
    )

    assert response.status_code == 403
    assert not FollowUp.objects.exists()
