"""Heartbeats, the sweep of calls whose process died, and the hand-over of a stopping process.

What staff must find whatever dies: every call finished exactly once, with its real duration,
and a follow-up when the caller was left without help.
"""

from __future__ import annotations

import datetime
import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.utils import timezone

from clinic.models import Slot
from clinic.services import slot_hold, slots_generate
from intake import liveness, services
from intake.conversation import CallEnded, Conversation
from intake.conversation.state import ConversationState
from intake.models import Call, FollowUp, Turn
from tests.clinic.factories import AppointmentTypeFactory, RuleFactory
from tests.factories import CallFactory
from voice.views import call_status_record

pytestmark = pytest.mark.django_db

STALE = datetime.timedelta(seconds=30)


def _call(*, started_s_ago: float, beat_s_ago: float | None, **fields: object) -> Call:
    now = timezone.now()
    call = CallFactory.create(started_at=now - datetime.timedelta(seconds=started_s_ago), **fields)
    if beat_s_ago is not None:
        assert liveness.call_heartbeat(
            call_id=call.pk,
            served_by="host-a:4242:1700000000",
            now=now - datetime.timedelta(seconds=beat_s_ago),
        )
    call.refresh_from_db()
    return call


# --- heartbeats -----------------------------------------------------------------------------


def test_a_heartbeat_names_the_process_and_stops_once_the_call_is_finished() -> None:
    call = _call(started_s_ago=5, beat_s_ago=None)

    assert liveness.call_heartbeat(call_id=call.pk, served_by="host-a:1:2")
    call.refresh_from_db()
    assert call.served_by == "host-a:1:2"
    assert call.heartbeat_at is not None

    services.call_finish(call=call, outcome=Call.Outcome.BOOKED)
    assert not liveness.call_heartbeat(call_id=call.pk, served_by="host-a:1:2")


# --- the sweep ------------------------------------------------------------------------------


def test_a_call_whose_heartbeat_stopped_is_finished_as_dropped_at_its_last_heartbeat() -> None:
    dead = _call(started_s_ago=100, beat_s_ago=45, phase="insurance")
    live = _call(started_s_ago=100, beat_s_ago=5)

    swept = liveness.calls_sweep_stale(stale_after=STALE)

    assert [s.call_id for s in swept] == [dead.pk]
    dead.refresh_from_db()
    assert dead.outcome == Call.Outcome.ABANDONED
    # The last moment anyone knew the caller was there, not the time of the sweep.
    assert dead.ended_at == dead.heartbeat_at
    assert dead.duration_seconds == 55
    [followup] = dead.followups.all()
    assert followup.reason == FollowUp.Reason.CALL_DROPPED
    assert "insurance" in followup.summary
    live.refresh_from_db()
    assert live.outcome == Call.Outcome.IN_PROGRESS
    assert not live.followups.exists()


def test_a_call_whose_stream_never_attached_is_left_to_twilios_callbacks_for_long() -> None:
    """Its stream may have been refused, and the caller put through to the front desk: the
    <Dial> callback finishes it, however long the conversation there."""
    at_the_front_desk = _call(started_s_ago=20 * 60, beat_s_ago=None)

    assert liveness.calls_sweep_stale(stale_after=STALE) == []

    at_the_front_desk.refresh_from_db()
    assert at_the_front_desk.outcome == Call.Outcome.IN_PROGRESS


def test_a_call_whose_stream_never_attached_is_finished_once_the_backstop_has_passed() -> None:
    backstop = liveness.UNATTACHED_BACKSTOP.total_seconds()
    never = _call(started_s_ago=backstop + 60, beat_s_ago=None)
    answering = _call(started_s_ago=3, beat_s_ago=None)

    swept = liveness.calls_sweep_stale(stale_after=STALE)

    assert [s.call_id for s in swept] == [never.pk]
    never.refresh_from_db()
    assert never.outcome == Call.Outcome.ABANDONED
    assert never.duration_seconds == 0
    assert never.followups.get().reason == FollowUp.Reason.CALL_DROPPED
    answering.refresh_from_db()
    assert answering.outcome == Call.Outcome.IN_PROGRESS


def test_sweeping_twice_finishes_nothing_more_and_opens_no_second_follow_up() -> None:
    dead = _call(started_s_ago=100, beat_s_ago=60)

    first = liveness.calls_sweep_stale(stale_after=STALE)
    second = liveness.calls_sweep_stale(stale_after=STALE)

    assert [s.call_id for s in first] == [dead.pk]
    assert second == []
    assert FollowUp.objects.count() == 1


def test_a_heartbeat_that_arrives_after_the_sweep_read_the_call_keeps_it_alive() -> None:
    call = _call(started_s_ago=100, beat_s_ago=40)
    as_read_by_the_sweep = Call.objects.get(pk=call.pk)

    assert liveness.call_heartbeat(call_id=call.pk, served_by="host-a:4242:1700000000")
    result = liveness.call_sweep(call=as_read_by_the_sweep, now=timezone.now())

    assert result is None
    call.refresh_from_db()
    assert call.outcome == Call.Outcome.IN_PROGRESS
    assert not call.followups.exists()


def test_a_status_callback_between_read_and_update_wins_and_the_sweep_adds_nothing() -> None:
    call = _call(started_s_ago=100, beat_s_ago=40)
    as_read_by_the_sweep = Call.objects.get(pk=call.pk)

    call_status_record(call_sid=call.call_sid, call_status="completed")
    result = liveness.call_sweep(call=as_read_by_the_sweep, now=timezone.now())

    assert result is None
    assert [f.reason for f in call.followups.all()] == [FollowUp.Reason.CALL_DROPPED]


def test_a_late_status_callback_keeps_the_sweeps_outcome_duration_and_single_follow_up() -> None:
    call = _call(started_s_ago=100, beat_s_ago=40)
    [swept] = liveness.calls_sweep_stale(stale_after=STALE)

    call_status_record(call_sid=call.call_sid, call_status="completed")

    call.refresh_from_db()
    assert call.outcome == Call.Outcome.ABANDONED
    assert call.duration_seconds == swept.duration_seconds == 60
    assert call.followups.count() == 1


def test_a_goal_already_reached_is_the_outcome_and_needs_no_follow_up() -> None:
    state = ConversationState(goal="booked", question="anything_else").to_dict()
    call = _call(started_s_ago=200, beat_s_ago=50, state=state)

    [swept] = liveness.calls_sweep_stale(stale_after=STALE)

    assert swept.outcome == Call.Outcome.BOOKED
    call.refresh_from_db()
    assert call.outcome == Call.Outcome.BOOKED
    assert not call.followups.exists()


def test_the_sweep_gives_back_a_slot_the_dead_call_was_holding() -> None:
    kind = AppointmentTypeFactory()
    RuleFactory(weekdays=[0, 1, 2, 3, 4, 5, 6])
    slots_generate(horizon_days=7)
    slot = Slot.objects.filter(start__gt=timezone.now()).order_by("start").first()
    assert slot is not None and kind is not None
    token = slot_hold(slot_id=slot.pk)
    state = ConversationState(chosen_slot_id=slot.pk, hold_token=token).to_dict()
    _call(started_s_ago=200, beat_s_ago=50, state=state)

    liveness.calls_sweep_stale(stale_after=STALE)

    slot.refresh_from_db()
    assert slot.status == Slot.Status.FREE


@pytest.mark.django_db(transaction=True)  # the conversation runs on its database thread
def test_a_session_reaching_max_duration_after_the_sweep_records_no_second_duration() -> None:
    """The orphaned session that finished itself 900 s in must not overwrite the sweep."""
    call = _call(started_s_ago=900, beat_s_ago=893)
    liveness.calls_sweep_stale(stale_after=STALE)

    actions = async_to_sync(Conversation(call.pk).handle)(CallEnded("max_duration"))

    assert actions == []
    call.refresh_from_db()
    assert call.outcome == Call.Outcome.ABANDONED
    assert call.duration_seconds == 7
    assert call.followups.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweepers_finish_each_call_exactly_once() -> None:
    dead = [_call(started_s_ago=120, beat_s_ago=60 + i) for i in range(6)]
    barrier = threading.Barrier(3)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            swept = liveness.calls_sweep_stale(stale_after=STALE)
            results.append([s.call_id for s in swept])
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    finished = sorted(call_id for swept in results for call_id in swept)
    assert finished == sorted(call.pk for call in dead)
    assert FollowUp.objects.filter(reason=FollowUp.Reason.CALL_DROPPED).count() == len(dead)


# --- hand-over (the process is stopping) ------------------------------------------------------


def test_a_hand_over_finishes_the_call_as_transferred_with_a_follow_up_and_the_line() -> None:
    call = _call(started_s_ago=30, beat_s_ago=2, phase="insurance")

    result = liveness.call_hand_over(
        call_id=call.pk, line="Passing you over.", transfer=True, reason="drain"
    )

    assert result.finished_here and result.outcome == Call.Outcome.TRANSFERRED
    call.refresh_from_db()
    assert call.outcome == Call.Outcome.TRANSFERRED
    assert ConversationState.from_dict(call.state).finished
    turn = Turn.objects.get(pk=result.turn_id)
    assert (turn.speaker, turn.text) == (Turn.Speaker.AGENT, "Passing you over.")
    [followup] = call.followups.all()
    assert followup.reason == FollowUp.Reason.HANDED_OVER
    assert "insurance" in followup.summary


def test_a_hand_over_when_the_front_desk_is_closed_is_a_callback() -> None:
    call = _call(started_s_ago=30, beat_s_ago=2)

    result = liveness.call_hand_over(
        call_id=call.pk, line="Goodbye.", transfer=False, reason="drain"
    )

    assert result.outcome == Call.Outcome.CALLBACK
    assert call.followups.get().reason == FollowUp.Reason.CALLBACK_REQUESTED


def test_a_hand_over_of_a_call_finished_elsewhere_changes_only_the_transcript() -> None:
    call = _call(started_s_ago=30, beat_s_ago=2)
    services.call_finish(call=call, outcome=Call.Outcome.ABANDONED)
    call.refresh_from_db()

    result = liveness.call_hand_over(
        call_id=call.pk, line="Passing you over.", transfer=True, reason="finished_elsewhere"
    )

    assert not result.finished_here
    assert result.outcome == Call.Outcome.ABANDONED
    assert not call.followups.exists()
    assert call.turns.count() == 1


def test_a_hand_over_after_a_booking_keeps_the_booking_and_needs_no_follow_up() -> None:
    state = ConversationState(goal="booked", question="anything_else").to_dict()
    call = _call(started_s_ago=30, beat_s_ago=2, state=state)

    result = liveness.call_hand_over(call_id=call.pk, line="Bye.", transfer=True, reason="drain")

    assert result.outcome == Call.Outcome.BOOKED
    assert not call.followups.exists()
