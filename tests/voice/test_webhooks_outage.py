"""Twilio's webhooks while the database is unreachable: callers still reach people.

The outage is made with Django's own ``connection.execute_wrapper`` hook, which fails every
query the way a lost PostgreSQL connection does (``OperationalError``); nothing of ours is
replaced. The live tests (tests/live) cut a real database connection.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import OperationalError, connection

from intake.models import Call
from tests.voice.test_webhooks import (
    FRONT_DESK,
    answer_params,
    private_rate_limit_cache,  # noqa: F401 - autouse fixture
    signed_post,
    twilio_settings,  # noqa: F401 - autouse fixture
)
from voice.models import StreamGrant

pytestmark = pytest.mark.django_db

ALWAYS_OPEN = "mon-sun 00:00-23:59"
NEVER_OPEN = ""


@contextmanager
def database_down() -> Iterator[None]:
    def refuse(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    with connection.execute_wrapper(refuse):
        yield


def verbs(body: bytes) -> list[str]:
    return [element.tag for element in ET.fromstring(body)]  # noqa: S314 - our own TwiML


def test_without_a_database_the_answer_puts_the_caller_through_to_the_front_desk(
    settings: Any,
) -> None:
    settings.CLINIC_OPENING_HOURS = ALWAYS_OPEN
    params = answer_params()

    with database_down():
        response = signed_post("/voice/answer", params)

    assert response.status_code == 200
    assert verbs(response.content) == ["Dial"]
    assert FRONT_DESK in response.content.decode()
    assert "Stream" not in response.content.decode()  # no stream token without a call row
    assert not Call.objects.filter(call_sid=params["CallSid"]).exists()
    assert not StreamGrant.objects.exists()


def test_without_a_database_after_hours_the_caller_is_told_the_clinic_is_closed(
    settings: Any,
) -> None:
    settings.CLINIC_OPENING_HOURS = NEVER_OPEN

    with database_down():
        response = signed_post("/voice/answer", answer_params())

    assert response.status_code == 200
    assert verbs(response.content) == ["Say", "Hangup"]
    assert "9 1 1" in response.content.decode()


def test_without_a_database_status_callbacks_are_acknowledged() -> None:
    params = {**answer_params(), "CallStatus": "completed"}

    with database_down():
        status = signed_post("/voice/status", params)
        dial = signed_post("/voice/dial-status", {**params, "DialCallStatus": "no-answer"})

    assert status.status_code == 200
    assert dial.status_code == 200
    assert verbs(dial.content) == ["Say", "Hangup"]  # the transfer failed: tell the caller


def test_once_the_database_is_back_the_next_call_gets_the_agent(settings: Any) -> None:
    settings.CLINIC_OPENING_HOURS = ALWAYS_OPEN
    with database_down():
        signed_post("/voice/answer", answer_params())

    response = signed_post("/voice/answer", answer_params())

    assert "Stream" in response.content.decode()
