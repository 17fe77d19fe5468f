"""Stream tokens: signed, short-lived, single-use across processes, and never a reason to raise."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core import signing
from django.db import connection, connections

from intake.models import Call
from tests.factories import CallFactory
from voice import tokens
from voice.models import StreamGrant

pytestmark = pytest.mark.django_db


def b62(seconds: int) -> str:
    return signing.b62_encode(seconds)


def test_an_issued_token_redeems_once_for_its_call() -> None:
    call = CallFactory.create()
    token = tokens.stream_token_issue(call)

    first = tokens.stream_token_redeem(token)
    second = tokens.stream_token_redeem(token)

    assert first is not None and first.pk == call.pk
    assert second is None
    grant = StreamGrant.objects.get()
    assert grant.call_id == call.pk and grant.used_at is not None


def test_each_issue_is_its_own_grant() -> None:
    call = CallFactory.create()
    older, newer = tokens.stream_token_issue(call), tokens.stream_token_issue(call)

    assert older != newer
    assert tokens.stream_token_redeem(newer) == call
    assert tokens.stream_token_redeem(older) == call
    assert StreamGrant.objects.filter(call=call, used_at__isnull=False).count() == 2


def test_an_expired_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    call = CallFactory.create()
    signed_at = int(time.time()) - 32
    # Sign as if a little over 30 seconds ago.
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda _: b62(signed_at))
    token = tokens.stream_token_issue(call)
    monkeypatch.undo()

    assert tokens.stream_token_redeem(token) is None
    # ... and refusing it did not use it up: with a longer allowance it still works once.
    assert tokens.stream_token_redeem(token, max_age_seconds=120) == call


def test_a_zero_max_age_refuses_even_a_fresh_token(monkeypatch: pytest.MonkeyPatch) -> None:
    call = CallFactory.create()
    signed_at = int(time.time()) - 1
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda _: b62(signed_at))
    token = tokens.stream_token_issue(call)
    monkeypatch.undo()

    assert tokens.stream_token_redeem(token, max_age_seconds=0) is None


def test_a_tampered_token_is_refused() -> None:
    call = CallFactory.create()
    token = tokens.stream_token_issue(call)
    value, timestamp, signature = token.rsplit(":", 2)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")

    assert tokens.stream_token_redeem(f"{value}:{timestamp}:{flipped}") is None
    assert tokens.stream_token_redeem(f"{value}x:{timestamp}:{signature}") is None
    assert tokens.stream_token_redeem(f"{value}:{timestamp}0:{signature}") is None
    assert tokens.stream_token_redeem(token) == call  # the genuine one is still unused


def test_a_token_signed_under_another_salt_is_refused() -> None:
    call = CallFactory.create()
    grant = StreamGrant.objects.create(call=call, nonce="nonce-for-wrong-salt")
    payload = {"sid": call.call_sid, "nonce": grant.nonce}

    wrong_salt = signing.TimestampSigner(salt="some.other.purpose").sign_object(payload)
    right_salt = signing.TimestampSigner(salt=tokens.SALT).sign_object(payload)

    assert tokens.stream_token_redeem(wrong_salt) is None
    assert tokens.stream_token_redeem(right_salt) == call


def test_a_token_made_with_another_secret_key_is_refused() -> None:
    call = CallFactory.create()
    grant = StreamGrant.objects.create(call=call, nonce="nonce-for-other-key")
    forged = signing.TimestampSigner(key="not-our-secret-key", salt=tokens.SALT).sign_object(
        {"sid": call.call_sid, "nonce": grant.nonce}
    )

    assert tokens.stream_token_redeem(forged) is None


@pytest.mark.parametrize(
    "garbage",
    [None, 42, b"bytes", "", "token", "a:b:c", ":::", "x" * 10_000, {"sid": "CA1"}],
)
def test_garbage_is_refused_without_raising(garbage: Any) -> None:
    assert tokens.stream_token_redeem(garbage) is None


@pytest.mark.parametrize(
    "payload",
    [
        ["not", "a", "dict"],
        {"sid": "CA" + "1" * 32},
        {"sid": "", "nonce": "n"},
        {"sid": 7, "nonce": "n"},
    ],
)
def test_a_well_signed_token_of_the_wrong_shape_is_refused(payload: Any) -> None:
    token = signing.TimestampSigner(salt=tokens.SALT).sign_object(payload)

    assert tokens.stream_token_redeem(token) is None


def test_a_token_for_an_unknown_grant_or_another_call_is_refused() -> None:
    call, other = CallFactory.create(), CallFactory.create()
    grant = StreamGrant.objects.create(call=call, nonce="known-nonce")
    signer = signing.TimestampSigner(salt=tokens.SALT)

    unknown = signer.sign_object({"sid": call.call_sid, "nonce": "never-issued"})
    mismatched = signer.sign_object({"sid": other.call_sid, "nonce": grant.nonce})

    assert tokens.stream_token_redeem(unknown) is None
    assert tokens.stream_token_redeem(mismatched) is None


def test_redeeming_for_another_call_sid_is_refused_without_using_the_token() -> None:
    call = CallFactory.create()
    token = tokens.stream_token_issue(call)

    assert tokens.stream_token_redeem(token, call_sid="CA" + "f" * 32) is None
    assert tokens.stream_token_redeem(token, call_sid=call.call_sid) == call


def test_the_token_carries_the_call_sid_and_a_nonce_but_not_the_caller() -> None:
    call = CallFactory.create(caller_number="+16175550167")
    token = tokens.stream_token_issue(call)
    encoded = token.rsplit(":", 2)[0]
    decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()

    assert call.call_sid in decoded
    assert StreamGrant.objects.get().nonce in decoded
    assert "6175550167" not in decoded


def test_stream_grant_redeemed_tells_whether_a_stream_attached() -> None:
    call = CallFactory.create()
    token = tokens.stream_token_issue(call)
    assert not tokens.stream_grant_redeemed(call)

    tokens.stream_token_redeem(token)

    assert tokens.stream_grant_redeemed(call)


@pytest.mark.django_db(transaction=True)
def test_concurrent_redeems_of_one_token_let_exactly_one_through() -> None:
    call = CallFactory.create()
    token = tokens.stream_token_issue(call)
    contenders = 6
    barrier = threading.Barrier(contenders)
    results: list[Call | None] = []
    lock = threading.Lock()

    def redeem() -> None:
        try:
            barrier.wait(timeout=10)
            result = tokens.stream_token_redeem(token)
            with lock:
                results.append(result)
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == contenders
    assert [result.pk for result in results if result is not None] == [call.pk]


@pytest.mark.django_db(transaction=True)
async def test_the_async_wrapper_redeems_once() -> None:
    call = await Call.objects.acreate(call_sid="CA" + "b" * 32)
    token = await sync_to_async(tokens.stream_token_issue)(call)

    try:
        first = await tokens.astream_token_redeem(token)
        second = await tokens.astream_token_redeem(token)
        garbage = await tokens.astream_token_redeem("not-a-token")
    finally:
        # The worker thread keeps its connection (CONN_MAX_AGE); let the test database go.
        await sync_to_async(connections.close_all)()

    assert first is not None and first.pk == call.pk
    assert second is None and garbage is None


@pytest.mark.django_db
def test_old_grants_are_purged_and_recent_ones_kept() -> None:
    import datetime

    from django.utils import timezone

    from intake import services
    from voice.models import StreamGrant
    from voice.tasks import purge_stream_grants
    from voice.tokens import stream_token_issue

    old_call = services.call_start(call_sid="CA" + "e" * 32)
    new_call = services.call_start(call_sid="CA" + "f" * 32)
    stream_token_issue(old_call)
    stream_token_issue(new_call)
    StreamGrant.objects.filter(call=old_call).update(
        issued_at=timezone.now() - datetime.timedelta(days=2)
    )
    assert purge_stream_grants.apply().get() == 1
    assert list(StreamGrant.objects.values_list("call_id", flat=True)) == [new_call.pk]
