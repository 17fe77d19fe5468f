"""Stream tokens: signed, short-lived, single-use across processes, and never a reason to raise."""

from __future__ import annotations

import base64
import datetime
import threading
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core import signing
from django.db import IntegrityError, connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from intake.models import Call
from tests.factories import CallFactory
from tests.fakes.deepgram_server import FakeDeepgram
from tests.voice.test_stream_consumer import deepgram_settings
from tests.voice.twilio_stream import TwilioStream
from voice import tokens
from voice.consumers import CLOSE_BAD_TOKEN
from voice.models import StreamGrant

pytestmark = pytest.mark.django_db


def b62(seconds: int) -> str:
    return signing.b62_encode(seconds)


def test_an_issued_token_redeems_once_for_its_call() -> None:
    call = CallFactory.create()
    token = tokens.stream_token_issue(call)

    first = tokens.stream_token_redeem(token, call_sid=call.call_sid)
    second = tokens.stream_token_redeem(token, call_sid=call.call_sid)

    assert first is not None and first.pk == call.pk
    assert second is None
    grant = StreamGrant.objects.get()
    assert grant.call_id == call.pk and grant.used_at is not None


def test_each_issue_is_its_own_grant_but_only_one_stream_attaches_per_call() -> None:
    call = CallFactory.create()
    older, newer = tokens.stream_token_issue(call), tokens.stream_token_issue(call)
    assert older != newer

    assert tokens.stream_token_redeem(newer, call_sid=call.call_sid) == call
    assert tokens.stream_token_redeem(older, call_sid=call.call_sid) is None

    used = StreamGrant.objects.filter(call=call, used_at__isnull=False)
    assert used.count() == 1 and StreamGrant.objects.filter(call=call).count() == 2


def test_the_first_token_to_attach_wins_whichever_was_issued_first() -> None:
    call = CallFactory.create()
    older, newer = tokens.stream_token_issue(call), tokens.stream_token_issue(call)

    assert tokens.stream_token_redeem(older, call_sid=call.call_sid) == call
    assert tokens.stream_token_redeem(newer, call_sid=call.call_sid) is None
    assert tokens.stream_token_redeem(older, call_sid=call.call_sid) is None


def test_one_attach_per_call_is_enforced_by_the_database_itself() -> None:
    call = CallFactory.create()
    first = StreamGrant.objects.create(call=call, call_sid=call.call_sid, nonce="n-1")
    second = StreamGrant.objects.create(call=call, call_sid=call.call_sid, nonce="n-2")
    other_call = CallFactory.create()
    elsewhere = StreamGrant.objects.create(
        call=other_call, call_sid=other_call.call_sid, nonce="n-3"
    )
    StreamGrant.objects.filter(pk=first.pk).update(used_at=timezone.now())

    with pytest.raises(IntegrityError), transaction.atomic():
        StreamGrant.objects.filter(pk=second.pk).update(used_at=timezone.now())
    # Another call's stream is not affected, and unused grants may pile up.
    StreamGrant.objects.filter(pk=elsewhere.pk).update(used_at=timezone.now())
    StreamGrant.objects.create(call=call, call_sid=call.call_sid, nonce="n-4")


def test_an_expired_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    call = CallFactory.create()
    signed_at = int(time.time()) - 32
    # Sign as if a little over 30 seconds ago.
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda _: b62(signed_at))
    token = tokens.stream_token_issue(call)
    monkeypatch.undo()

    assert tokens.stream_token_redeem(token, call_sid=call.call_sid) is None
    # ... and refusing it did not use it up: with a longer allowance it still works once.
    assert tokens.stream_token_redeem(token, call_sid=call.call_sid, max_age_seconds=120) == call


def test_a_zero_max_age_refuses_even_a_fresh_token(monkeypatch: pytest.MonkeyPatch) -> None:
    call = CallFactory.create()
    signed_at = int(time.time()) - 1
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda _: b62(signed_at))
    token = tokens.stream_token_issue(call)
    monkeypatch.undo()

    assert tokens.stream_token_redeem(token, call_sid=call.call_sid, max_age_seconds=0) is None


def test_a_tampered_token_is_refused() -> None:
    call = CallFactory.create()
    token = tokens.stream_token_issue(call)
    value, timestamp, signature = token.rsplit(":", 2)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")

    assert (
        tokens.stream_token_redeem(f"{value}:{timestamp}:{flipped}", call_sid=call.call_sid) is None
    )
    assert (
        tokens.stream_token_redeem(f"{value}x:{timestamp}:{signature}", call_sid=call.call_sid)
        is None
    )
    assert (
        tokens.stream_token_redeem(f"{value}:{timestamp}0:{signature}", call_sid=call.call_sid)
        is None
    )
    assert (
        tokens.stream_token_redeem(token, call_sid=call.call_sid) == call
    )  # the genuine one is still unused


def test_a_token_signed_under_another_salt_is_refused() -> None:
    call = CallFactory.create()
    grant = StreamGrant.objects.create(call=call, call_sid=call.call_sid, nonce="nonce-wrong-salt")
    payload = {"sid": call.call_sid, "nonce": grant.nonce}

    wrong_salt = signing.TimestampSigner(salt="some.other.purpose").sign_object(payload)
    right_salt = signing.TimestampSigner(salt=tokens.SALT).sign_object(payload)

    assert tokens.stream_token_redeem(wrong_salt, call_sid=call.call_sid) is None
    assert tokens.stream_token_redeem(right_salt, call_sid=call.call_sid) == call


def test_a_token_made_with_another_secret_key_is_refused() -> None:
    call = CallFactory.create()
    grant = StreamGrant.objects.create(call=call, call_sid=call.call_sid, nonce="nonce-other-key")
    forged = signing.TimestampSigner(key="not-our-secret-key", salt=tokens.SALT).sign_object(
        {"sid": call.call_sid, "nonce": grant.nonce}
    )

    assert tokens.stream_token_redeem(forged, call_sid=call.call_sid) is None


@pytest.mark.parametrize(
    "garbage",
    [None, 42, b"bytes", "", "token", "a:b:c", ":::", "x" * 10_000, {"sid": "CA1"}],
)
def test_garbage_is_refused_without_raising(garbage: Any) -> None:
    assert tokens.stream_token_redeem(garbage, call_sid="CA" + "0" * 32) is None


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

    assert tokens.stream_token_redeem(token, call_sid="CA" + "1" * 32) is None


def test_a_token_for_an_unknown_grant_or_another_call_is_refused() -> None:
    call, other = CallFactory.create(), CallFactory.create()
    grant = StreamGrant.objects.create(call=call, call_sid=call.call_sid, nonce="known-nonce")
    signer = signing.TimestampSigner(salt=tokens.SALT)

    unknown = signer.sign_object({"sid": call.call_sid, "nonce": "never-issued"})
    mismatched = signer.sign_object({"sid": other.call_sid, "nonce": grant.nonce})

    assert tokens.stream_token_redeem(unknown, call_sid=call.call_sid) is None
    assert tokens.stream_token_redeem(mismatched, call_sid=call.call_sid) is None
    # Signed for the other call's SID, and the start says that SID too: the check before the
    # UPDATE passes, and the UPDATE's own condition (the grant row's CallSid) refuses it.
    assert tokens.stream_token_redeem(mismatched, call_sid=other.call_sid) is None
    assert not StreamGrant.objects.filter(used_at__isnull=False).exists()


def test_redeeming_for_another_call_sid_is_refused_without_using_the_token() -> None:
    call, other = CallFactory.create(), CallFactory.create()
    token = tokens.stream_token_issue(call)

    assert tokens.stream_token_redeem(token, call_sid="CA" + "f" * 32) is None
    assert tokens.stream_token_redeem(token, call_sid=other.call_sid) is None
    assert tokens.stream_token_redeem(token, call_sid="") is None
    assert not StreamGrant.objects.filter(used_at__isnull=False).exists()
    assert tokens.stream_token_redeem(token, call_sid=call.call_sid) == call


def test_the_token_carries_the_call_sid_and_a_nonce_but_not_the_caller() -> None:
    call = CallFactory.create(caller_number="+16175550167")
    token = tokens.stream_token_issue(call)
    encoded = token.rsplit(":", 2)[0]
    decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()

    assert call.call_sid in decoded
    assert StreamGrant.objects.get().nonce in decoded
    assert "6175550167" not in decoded


def test_a_grant_records_its_calls_sid() -> None:
    call = CallFactory.create()
    tokens.stream_token_issue(call)

    assert StreamGrant.objects.get().call_sid == call.call_sid


def test_stream_grant_redeemed_tells_whether_a_stream_attached() -> None:
    call = CallFactory.create()
    token = tokens.stream_token_issue(call)
    assert not tokens.stream_grant_redeemed(call)

    tokens.stream_token_redeem(token, call_sid=call.call_sid)

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
            result = tokens.stream_token_redeem(token, call_sid=call.call_sid)
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
def test_concurrent_attaches_with_different_tokens_of_one_call_let_exactly_one_through() -> None:
    # A replayed answer handed out several tokens; streams race to attach with them. On
    # PostgreSQL each UPDATE waits on the partial unique index for the first to commit, then
    # fails; on SQLite writes are serialised. Either way exactly one stream attaches.
    call = CallFactory.create()
    contenders = 6
    issued = [tokens.stream_token_issue(call) for _ in range(contenders)]
    barrier = threading.Barrier(contenders)
    results: list[Call | None] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def redeem(token: str) -> None:
        try:
            barrier.wait(timeout=10)
            result = tokens.stream_token_redeem(token, call_sid=call.call_sid)
            with lock:
                results.append(result)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            with lock:
                errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem, args=(token,)) for token in issued]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(results) == contenders
    assert [result.pk for result in results if result is not None] == [call.pk]
    assert StreamGrant.objects.filter(call=call, used_at__isnull=False).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_one_attach_per_call_and_fills_the_call_sids() -> None:
    from django.db.migrations.executor import MigrationExecutor

    call, other = CallFactory.create(), CallFactory.create()
    executor = MigrationExecutor(connection)
    executor.migrate([("voice", "0001_initial")])
    try:
        executor.loader.build_graph()
        old = executor.loader.project_state([("voice", "0001_initial")]).apps
        Grant = old.get_model("voice", "StreamGrant")
        now = timezone.now()
        Grant.objects.create(call_id=call.pk, nonce="a", used_at=now)
        Grant.objects.create(call_id=call.pk, nonce="b", used_at=now + datetime.timedelta(1))
        Grant.objects.create(call_id=call.pk, nonce="c")
        Grant.objects.create(call_id=other.pk, nonce="d", used_at=now)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    grants = {g.nonce: g for g in StreamGrant.objects.all()}
    assert sorted(grants) == ["a", "c", "d"]
    assert grants["a"].call_sid == grants["c"].call_sid == call.call_sid
    assert grants["d"].call_sid == other.call_sid


@pytest.mark.django_db(transaction=True)
async def test_the_async_wrapper_redeems_once() -> None:
    call = await Call.objects.acreate(call_sid="CA" + "b" * 32)
    token = await sync_to_async(tokens.stream_token_issue)(call)

    try:
        first = await tokens.astream_token_redeem(token, call_sid=call.call_sid)
        second = await tokens.astream_token_redeem(token, call_sid=call.call_sid)
        garbage = await tokens.astream_token_redeem("not-a-token", call_sid=call.call_sid)
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


# --- over the real consumer: one session per call, and a wrong CallSid burns nothing -------


async def _greeted(stream: TwilioStream) -> bool:
    connected, _ = await stream.connect()
    assert connected
    await stream.start()
    frames, mark = await stream.play_until_mark()
    return frames > 0 and mark is not None


async def _refused(stream: TwilioStream) -> int | None:
    connected, _ = await stream.connect()
    assert connected
    await stream.start()
    output = await stream.communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    code: int | None = output.get("code")
    await stream.communicator.disconnect()
    return code


@pytest.mark.django_db(transaction=True)
async def test_a_replayed_answers_token_cannot_attach_a_second_session(
    deepgram: FakeDeepgram,
) -> None:
    with override_settings(**deepgram_settings(deepgram)):
        call = await Call.objects.acreate(call_sid="CA" + "c" * 32)
        genuine = await sync_to_async(tokens.stream_token_issue)(call)
        replayed = await sync_to_async(tokens.stream_token_issue)(call)

        first = TwilioStream(call.call_sid, genuine)
        assert await _greeted(first)
        assert await _refused(TwilioStream(call.call_sid, replayed)) == CLOSE_BAD_TOKEN
        # The live call goes on, undisturbed.
        await first.mark("still-here")
        await first.stop()
        await first.communicator.disconnect()

    assert await StreamGrant.objects.filter(call=call, used_at__isnull=False).acount() == 1


@pytest.mark.django_db(transaction=True)
async def test_a_start_with_the_wrong_call_sid_leaves_the_token_for_the_real_stream(
    deepgram: FakeDeepgram,
) -> None:
    with override_settings(**deepgram_settings(deepgram)):
        call = await Call.objects.acreate(call_sid="CA" + "d" * 32)
        token = await sync_to_async(tokens.stream_token_issue)(call)

        assert await _refused(TwilioStream("CA" + "e" * 32, token)) == CLOSE_BAD_TOKEN
        real = TwilioStream(call.call_sid, token)
        assert await _greeted(real)
        await real.stop()
        await real.communicator.disconnect()
