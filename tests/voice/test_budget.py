"""The per-stream message budget: Twilio's real pace never loses a message; a flood is cut to
the budget, counted and logged once; one stream's flood leaves another's allowance whole.

Time is a stepped clock handed to the budget, so a minute of traffic takes microseconds and
the figures are exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from intake import services
from intake.models import Call
from tests.fakes.deepgram_server import FakeDeepgram, tone_mulaw
from tests.voice.test_stream_consumer import deepgram_settings, open_stream
from tests.voice.test_twilio_wire import text
from tests.voice.twilio_stream import SILENCE, TwilioStream
from voice import budget as budgets
from voice import metrics
from voice import twilio_wire as wire
from voice.tokens import stream_token_issue

MEDIA = text("media")
MARK = wire.parse(text("mark"))
MEDIA_EVENT = wire.parse(MEDIA)


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def over_budget(kind: str) -> float:
    value: float = metrics.OVER_BUDGET.labels(kind=kind)._value.get()
    return value


def offer(budget: budgets.MessageBudget, message: str) -> bool:
    """What the consumer does with one message: budget, parse, budget again for non-media."""
    if not budget.admit_message(len(message)):
        return False
    return budget.admit_event(wire.parse(message))


def test_a_real_time_twilio_stream_never_loses_a_message() -> None:
    clock = SteppedClock()
    budget = budgets.MessageBudget(clock=clock)
    mark = wire.mark_message(MEDIA_EVENT.stream_sid, "u1")  # type: ignore[union-attr]

    handled = 0
    for frame in range(50 * 600):  # ten minutes of 20 ms frames, a mark echo every 2 s
        clock.advance(0.02)
        handled += offer(budget, MEDIA)
        if frame % 100 == 0:
            handled += offer(budget, mark)

    assert handled == 50 * 600 + 300
    assert budget.dropped == {budgets.MESSAGE: 0, budgets.CONTROL: 0}


def test_frames_buffered_through_a_network_stall_all_get_through() -> None:
    clock = SteppedClock()
    budget = budgets.MessageBudget(clock=clock)
    clock.advance(30.0)  # nothing arrived for thirty seconds; now all those frames at once

    assert all(offer(budget, MEDIA) for _ in range(30 * budgets.TWILIO_MEDIA_PER_SECOND))


def test_a_flood_is_cut_to_the_budget_and_counted() -> None:
    clock = SteppedClock()
    budget = budgets.MessageBudget(clock=clock)
    before = over_budget(budgets.MESSAGE)

    admitted = 0
    sent = 0
    for _ in range(10):  # ten seconds at 2,000 messages a second: 40 times Twilio's rate
        for _ in range(2000):
            sent += 1
            admitted += budget.admit_message(len(MEDIA))
            clock.advance(1 / 2000)

    # The burst, then the sustained rate: never more, whatever the sender does.
    expected = budgets.BURST_MESSAGES + 10 * budgets.MESSAGES_PER_SECOND
    assert expected - 1 <= admitted <= expected + 1
    assert budget.dropped[budgets.MESSAGE] == sent - admitted
    assert over_budget(budgets.MESSAGE) - before == sent - admitted


def test_a_flood_of_marks_or_keypresses_is_cut_to_the_control_budget() -> None:
    clock = SteppedClock()
    budget = budgets.MessageBudget(clock=clock)
    dtmf = wire.parse(text("dtmf"))
    before = over_budget(budgets.CONTROL)

    handled = 0
    for index in range(300):  # 300 non-media events within three seconds
        clock.advance(0.01)
        handled += budget.admit_event(MARK if index % 2 else dtmf)

    expected = budgets.CONTROL_BURST + 3 * budgets.CONTROL_PER_SECOND
    assert expected - 1 <= handled <= expected + 1
    assert over_budget(budgets.CONTROL) - before == 300 - handled
    # Media in the same moment is not held back by the control budget.
    assert budget.admit_event(MEDIA_EVENT)


def test_large_messages_spend_the_budget_faster() -> None:
    clock = SteppedClock()
    budget = budgets.MessageBudget(burst_messages=100, clock=clock)
    big = json.dumps({"event": "media", "pad": "x" * (8 * budgets.MESSAGE_UNIT_BYTES - 40)})
    assert len(big) <= 8 * budgets.MESSAGE_UNIT_BYTES

    admitted = sum(budget.admit_message(len(big)) for _ in range(100))

    assert admitted == 100 // 8


def test_one_streams_flood_leaves_another_streams_allowance_whole() -> None:
    clock = SteppedClock()
    flooding, calm = budgets.MessageBudget(clock=clock), budgets.MessageBudget(clock=clock)

    for _ in range(5000):
        flooding.admit_message(len(MEDIA))
    calm_handled = 0
    for _ in range(50 * 60):
        clock.advance(0.02)
        for _ in range(10):  # 500 messages a second, over the budget all the while
            flooding.admit_message(len(MEDIA))
        calm_handled += offer(calm, MEDIA)

    # All but the burst of the first 5,000, then 300 a second for a minute.
    expected = 5000 - budgets.BURST_MESSAGES + 60 * (500 - budgets.MESSAGES_PER_SECOND)
    assert flooding.dropped[budgets.MESSAGE] >= expected - 1
    assert calm_handled == 50 * 60 and calm.dropped[budgets.MESSAGE] == 0


def test_a_flood_is_logged_every_ten_seconds_at_most_without_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SteppedClock()
    budget = budgets.MessageBudget(clock=clock)
    budget.call_id = 42

    with caplog.at_level(logging.INFO, logger="voice.budget"):
        for _ in range(30 * 1000):  # thirty seconds at 1,000 messages a second
            budget.admit_message(len(MEDIA))
            clock.advance(0.001)

    events = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    assert [event["event"] for event in events] == ["stream_over_budget"] * 3
    assert [event["call_id"] for event in events] == [42] * 3
    counts = [event["dropped"] for event in events]
    assert counts[0] == 1 and counts == sorted(counts)
    assert counts[-1] < budget.dropped[budgets.MESSAGE]
    assert MEDIA_EVENT.stream_sid not in caplog.text  # type: ignore[union-attr]


def test_a_clock_that_steps_back_mints_no_tokens() -> None:
    clock = SteppedClock()
    bucket = budgets.TokenBucket(rate=10, burst=2, clock=clock)
    assert bucket.take() and bucket.take() and not bucket.take()

    clock.advance(-100.0)
    assert not bucket.take()
    clock.advance(0.1)
    assert bucket.take()


@pytest.mark.parametrize(("rate", "burst"), [(0, 10), (-1, 10), (10, 0.5)])
def test_a_bucket_that_could_never_admit_is_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        budgets.TokenBucket(rate=rate, burst=burst)


# --- wired into the consumer: a flooding stream neither ends its call nor starves another ---


def all_over_budget() -> float:
    return over_budget(budgets.MESSAGE) + over_budget(budgets.CONTROL)


async def caller_texts(call: Call) -> list[str]:
    said = call.turns.filter(speaker="caller").values_list("text", flat=True)
    return [text async for text in said]


async def drained(count: Callable[[], float], quiet_s: float = 0.3, limit_s: float = 20) -> None:
    """Wait until ``count`` has stopped moving for ``quiet_s``: a consumer's queue is worked
    through (a slower database or a loaded machine only makes this take longer)."""
    async with asyncio.timeout(limit_s):
        last = count()
        while True:
            await asyncio.sleep(quiet_s)
            now = count()
            if now == last:
                return
            last = now


@sync_to_async
def another_call() -> tuple[Call, str]:
    call = services.call_start(call_sid="CA" + "7" * 32, caller_number="+16175550143")
    return call, stream_token_issue(call)


@pytest.mark.django_db(transaction=True)
async def test_a_flood_of_marks_is_cut_while_another_call_is_heard() -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            flooding_call, flooding = await open_stream(fake)
            await flooding.play_until_mark()
            calm_call, calm_token = await another_call()
            calm = TwilioStream(calm_call.call_sid, calm_token)
            assert (await calm.connect())[0]
            await calm.start()
            await calm.play_until_mark()

            before = all_over_budget()
            flood = 2000
            started = time.monotonic()

            async def flood_marks() -> None:
                for index in range(flood):
                    await flooding.mark(f"flood-{index}")

            async def calm_speaks() -> None:
                fake.say("I'd like to make an appointment")
                await calm.media(tone_mulaw(600) + SILENCE * 40)
                _, mark = await calm.play_until_mark()
                assert mark is not None

            await asyncio.gather(flood_marks(), calm_speaks())
            await drained(all_over_budget)  # the flooding consumer works through its queue
            elapsed = time.monotonic() - started

            # At most the control burst plus its rate reached the session; the rest was cut.
            reached = budgets.CONTROL_BURST + budgets.CONTROL_PER_SECOND * elapsed
            assert all_over_budget() - before >= flood - reached
            assert await caller_texts(calm_call) == ["I'd like to make an appointment"]

            # The flooding stream is still open, and heard again once it keeps to its budget.
            await asyncio.sleep(1.5)
            fake.say("My name is Jane")
            await flooding.media(tone_mulaw(600) + SILENCE * 40)
            _, mark = await flooding.play_until_mark()
            assert mark is not None
            assert await caller_texts(flooding_call) == ["My name is Jane"]
            for stream in (flooding, calm):
                await stream.stop()
                await stream.communicator.disconnect()
