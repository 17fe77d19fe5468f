"""A call whose database goes away mid-way: the caller is handed over, nothing they said is lost.

The outage is made below our code, in Django's cursor: every query from any thread fails the
way a lost PostgreSQL connection does (``OperationalError``) until the outage ends. The live
tests (tests/live) cut a real database connection instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError
from django.db.backends import utils as db_utils
from django.test import override_settings

from intake.conversation import prompts
from intake.models import Call, FollowUp
from tests.fakes.deepgram_server import FakeDeepgram
from tests.voice.test_stream_consumer import deepgram_settings, open_stream, speak

pytestmark = pytest.mark.django_db(transaction=True)


class DatabaseOutage:
    """Every query fails while ``down`` is set (any thread, any connection)."""

    def __init__(self) -> None:
        self.down = False
        self.refused = 0


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseOutage]:
    state = DatabaseOutage()
    original = db_utils.CursorWrapper._execute_with_wrappers  # type: ignore[attr-defined]

    def execute(self: Any, sql: str, params: Any, many: bool, executor: Any) -> Any:
        if state.down:
            state.refused += 1
            raise OperationalError("server closed the connection unexpectedly")
        return original(self, sql, params, many, executor)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute_with_wrappers", execute)
    yield state


async def until(predicate: Any, limit_s: float = 15.0) -> None:
    """Poll the database (written by another task of the server) until ``predicate`` holds."""
    for _ in range(int(limit_s * 10)):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not true within {limit_s} s")


async def test_a_database_outage_mid_call_hands_the_caller_over_and_keeps_their_words(
    outage: DatabaseOutage,
) -> None:
    async with FakeDeepgram() as fake:
        with override_settings(
            **deepgram_settings(fake),
            CLINIC_OPENING_HOURS="mon-sun 00:00-23:59",
            FRONT_DESK_NUMBER="+16175550000",
            CALL_DATABASE_RETRY_SECONDS=1.5,
        ):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()  # the greeting
            outage.down = True
            await speak(stream, fake, "I'd like to book for my daughter")
            # "One moment, please." while the turn is retried, then the apology...
            frames, mark = await stream.play_until_mark()
            assert frames > 10 and mark
            frames, mark = await stream.play_until_mark()
            assert frames > 50 and mark
            # ...and the server closes the stream, so that Twilio runs the <Dial>.
            assert await stream.receive() is None
            await stream.communicator.disconnect()  # Twilio's side of the close
            assert outage.refused > 0
            outage.down = False

            async def recorded() -> bool:
                row = await Call.objects.aget(pk=call.pk)
                return bool(row.outcome == Call.Outcome.FAILED)

            await until(recorded)
    call = await Call.objects.aget(pk=call.pk)
    assert call.ended_at is not None
    caller = [t.text async for t in call.turns.filter(speaker="caller")]
    assert caller == ["I'd like to book for my daughter"]
    agent = [t.text async for t in call.turns.filter(speaker="agent").order_by("sequence")]
    assert agent[-1] == prompts.TROUBLE_TRANSFER  # staff read what the caller was told
    followups = [f async for f in FollowUp.objects.filter(call=call)]
    assert [f.reason for f in followups] == [FollowUp.Reason.CALLBACK_REQUESTED]
    assert "database unavailable" in followups[0].summary


async def test_a_short_outage_is_ridden_out_without_the_caller_noticing(
    outage: DatabaseOutage,
) -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake), CALL_DATABASE_RETRY_SECONDS=10):
            call, stream = await open_stream(fake)
            await stream.play_until_mark()
            outage.down = True
            asyncio.get_running_loop().call_later(0.6, setattr, outage, "down", False)
            await speak(stream, fake, "I'd like to make an appointment")
            # "One moment, please", then the answer to what they said: the call goes on.
            await stream.play_until_mark()
            frames, mark = await stream.play_until_mark()
            assert frames > 10 and mark
            await stream.stop()
            await stream.communicator.disconnect()
    call = await Call.objects.aget(pk=call.pk)
    assert call.outcome == Call.Outcome.ABANDONED  # hung up mid-intake, as in the normal test
    caller = [t.text async for t in call.turns.filter(speaker="caller")]
    assert caller == ["I'd like to make an appointment"]
    assert not await FollowUp.objects.filter(
        call=call, reason=FollowUp.Reason.CALLBACK_REQUESTED
    ).aexists()
