"""Retention: transcript text older than the setting is deleted; call metadata stays."""

from __future__ import annotations

import datetime
import time

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from intake import services
from intake.models import Call, Turn
from intake.tasks import purge_old_transcripts
from tests.factories import CallFactory, TurnFactory

DAY = datetime.timedelta(days=1)


def _call_with_turns(age: datetime.timedelta, sid: str) -> Call:
    started = timezone.now() - age
    call = CallFactory.create(call_sid=sid, started_at=started, phase="booking")
    for sequence, text in enumerate(("Hello, clinic.", "My knee is swollen."), start=1):
        TurnFactory.create(
            call=call, sequence=sequence, text=text, created_at=started, stt_final_ms=200
        )
    services.call_update(call=call, state={"reason": "My knee is swollen."})
    services.call_finish(
        call=call, outcome=Call.Outcome.BOOKED, ended_at=started + datetime.timedelta(seconds=90)
    )
    return call


@pytest.mark.django_db
def test_purge_empties_old_text_and_keeps_metadata() -> None:
    old = _call_with_turns(40 * DAY, "CA" + "0" * 32)
    recent = _call_with_turns(5 * DAY, "CA" + "1" * 32)

    result = services.transcripts_purge(older_than_days=30)

    assert (result.turns, result.calls) == (2, 1)
    old_turns = list(old.turns.order_by("sequence"))
    assert [t.text for t in old_turns] == ["", ""]
    assert all(t.text_purged_at is not None for t in old_turns)
    assert [(t.sequence, t.speaker, t.stt_final_ms) for t in old_turns] == [
        (1, "caller", 200),
        (2, "caller", 200),
    ]
    old.refresh_from_db()
    assert (old.outcome, old.duration_seconds, old.phase) == ("booked", 90, "booking")
    assert old.state == {} and old.state_purged_at is not None
    assert [t.text for t in recent.turns.order_by("sequence")] == [
        "Hello, clinic.",
        "My knee is swollen.",
    ]
    assert Call.objects.get(pk=recent.pk).state == {"reason": "My knee is swollen."}


@pytest.mark.django_db
def test_purge_is_idempotent_and_leaves_no_ciphertext_behind() -> None:
    _call_with_turns(40 * DAY, "CA" + "0" * 32)
    services.transcripts_purge(older_than_days=30)

    again = services.transcripts_purge(older_than_days=30)

    assert (again.turns, again.calls) == (0, 0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT text FROM intake_turn")
        assert {text for (text,) in cursor.fetchall()} == {""}


@pytest.mark.django_db
def test_a_call_still_in_progress_keeps_its_state_until_it_is_old() -> None:
    call = CallFactory.create(started_at=timezone.now() - 2 * DAY)
    services.call_update(call=call, state={"step": "dob"})

    assert services.transcripts_purge(older_than_days=30).calls == 0
    assert services.transcripts_purge(older_than_days=1).calls == 1


@pytest.mark.django_db
def test_purge_refuses_a_zero_retention() -> None:
    with pytest.raises(ValueError):
        services.transcripts_purge(older_than_days=0)


def test_the_purge_runs_daily_from_beat() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["intake-purge-old-transcripts"]
    assert entry["task"] == purge_old_transcripts.name
    # Once a day: the crontab fires at exactly one hour and minute.
    assert len(entry["schedule"].hour) == 1 and len(entry["schedule"].minute) == 1


@pytest.mark.needs_broker
@pytest.mark.django_db(transaction=True)
@override_settings(TRANSCRIPT_RETENTION_DAYS=3)
def test_task_purges_with_the_configured_retention(celery_worker_if_broker: None) -> None:
    four_days = _call_with_turns(4 * DAY, "CA" + "4" * 32)
    two_days = _call_with_turns(2 * DAY, "CA" + "2" * 32)

    purge_old_transcripts.delay()

    deadline = time.monotonic() + 30
    while Turn.objects.filter(call=four_days, text_purged_at__isnull=True).exists():
        assert time.monotonic() < deadline, "the purge task did not run"
        time.sleep(0.1)
    assert not Turn.objects.filter(call=two_days, text_purged_at__isnull=False).exists()
    assert Call.objects.get(pk=four_days.pk).outcome == Call.Outcome.BOOKED
