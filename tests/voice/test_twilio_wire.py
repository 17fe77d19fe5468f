"""Twilio Media Streams messages: recorded inbound fixtures parse to typed events, malformed
messages are refused with a reason that carries no content, outbound builders match the
documented shapes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from voice import twilio_wire as wire

FIXTURES = Path(__file__).parent / "fixtures" / "twilio"
STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL_SID = "CA5f8b7c4e2a9d41c3b6e0f1a2d3c4b5a6"


def fixture(name: str) -> dict[str, Any]:
    message: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return message


def text(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text()


def altered(name: str, path: str, value: Any) -> str:
    """The fixture with one field replaced (``...`` removes it)."""
    message = fixture(name)
    *parents, leaf = path.split(".")
    node = message
    for part in parents:
        node = node[part]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return json.dumps(message)


def test_connected() -> None:
    assert wire.parse(text("connected")) == wire.Connected(protocol="Call", version="1.0.0")


def test_start() -> None:
    event = wire.parse(text("start"))
    assert isinstance(event, wire.Start)
    assert event.stream_sid == STREAM_SID
    assert event.call_sid == CALL_SID
    assert event.account_sid.startswith("AC")
    assert event.tracks == ("inbound",)
    assert event.custom_parameters == {"token": "eyJjYWxsIjoxMn0.c2lnbmF0dXJl"}
    assert event.media_format == wire.MediaFormat("audio/x-mulaw", 8000, 1)
    assert event.media_format.is_mulaw_8k_mono
    assert event.sequence_number == 1


def test_media_payload_is_decoded_to_mulaw_bytes() -> None:
    event = wire.parse(text("media"))
    assert isinstance(event, wire.Media)
    assert event.stream_sid == STREAM_SID
    assert event.track == "inbound"
    assert (event.chunk, event.timestamp_ms, event.sequence_number) == (1, 5, 3)
    assert event.payload == base64.b64decode(fixture("media")["media"]["payload"])
    assert len(event.payload) == 160
    assert "payload" not in repr(event)  # caller audio stays out of logs and tracebacks


def test_dtmf() -> None:
    event = wire.parse(text("dtmf"))
    assert event == wire.Dtmf(
        stream_sid=STREAM_SID, digit="0", track="inbound_track", sequence_number=5
    )


def test_mark() -> None:
    event = wire.parse(text("mark"))
    assert event == wire.Mark(stream_sid=STREAM_SID, name="utterance-3", sequence_number=4)


def test_stop() -> None:
    event = wire.parse(text("stop"))
    assert isinstance(event, wire.Stop)
    assert (event.stream_sid, event.call_sid) == (STREAM_SID, CALL_SID)


def test_a_recorded_call_parses_in_order() -> None:
    messages = json.loads((FIXTURES / "short_call.json").read_text())
    events = [wire.parse(json.dumps(message)) for message in messages]
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["Connected", "Start"] + ["Media"] * 10 + ["Mark", "Dtmf", "Stop"]
    media = [event for event in events if isinstance(event, wire.Media)]
    assert [event.chunk for event in media] == list(range(1, 11))
    assert all(len(event.payload) == 160 for event in media)


def test_bytes_and_numeric_counters_are_accepted() -> None:
    event = wire.parse(altered("media", "media.chunk", 7).encode())
    assert isinstance(event, wire.Media) and event.chunk == 7


def test_optional_fields_take_twilio_defaults() -> None:
    start = wire.parse(altered("start", "start.customParameters", ...))
    assert isinstance(start, wire.Start) and start.custom_parameters == {}
    media = wire.parse(altered("media", "media.track", ...))
    assert isinstance(media, wire.Media) and media.track == "inbound"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("not json at all", "not_json"),
        ("", "not_json"),
        ('["media"]', "not_object"),
        ('{"streamSid": "MZ1"}', "missing_field:event"),
        ('{"event": "hangup"}', "unknown_event"),
        ('{"event": 7}', "unknown_event"),
        (altered("media", "media.payload", ...), "missing_field:media.payload"),
        (altered("media", "media.payload", "!!not base64!!"), "bad_base64"),
        (altered("media", "media.payload", "AAA"), "bad_base64"),
        (altered("media", "media", ...), "missing_field:media"),
        (altered("media", "media", "abc"), "bad_field:media"),
        (altered("media", "streamSid", ...), "missing_field:streamSid"),
        (altered("media", "media.chunk", "one"), "bad_field:media.chunk"),
        (altered("media", "media.timestamp", -5), "bad_field:media.timestamp"),
        (altered("media", "sequenceNumber", True), "bad_field:sequenceNumber"),
        (altered("start", "start.streamSid", ...), "missing_field:start.streamSid"),
        (altered("start", "start.callSid", ""), "missing_field:start.callSid"),
        (altered("start", "start.mediaFormat", ...), "missing_field:start.mediaFormat"),
        (
            altered("start", "start.mediaFormat.sampleRate", "8k"),
            "bad_field:start.mediaFormat.sampleRate",
        ),
        (altered("start", "start.tracks", "inbound"), "bad_field:start.tracks"),
        (altered("start", "start.customParameters", {"n": 1}), "bad_field:start.customParameters"),
        (altered("start", "streamSid", "MZother"), "bad_field:streamSid"),
        (altered("dtmf", "dtmf.digit", ...), "missing_field:dtmf.digit"),
        (altered("dtmf", "dtmf.digit", "12"), "bad_field:dtmf.digit"),
        (altered("mark", "mark.name", ...), "missing_field:mark.name"),
        (altered("mark", "mark", ...), "missing_field:mark"),
        (altered("stop", "stop", "x"), "bad_field:stop"),
        ("[" * 100_000, "not_json"),
        ('{"event": "media", "pad": "' + "x" * 300_000 + '"}', "too_large"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(message: str, reason: str) -> None:
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(message)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_reasons_never_carry_message_content() -> None:
    secret = "Jane Doe 1980-02-03"
    message = altered("start", "start.customParameters", {"name": ["nested", secret]})
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(message)
    assert secret not in str(caught.value)
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(altered("media", "media.payload", secret))
    assert secret not in str(caught.value)


def test_outbound_media() -> None:
    audio = bytes(range(160))
    message = json.loads(wire.media_message(STREAM_SID, audio))
    assert message == {
        "event": "media",
        "streamSid": STREAM_SID,
        "media": {"payload": base64.b64encode(audio).decode()},
    }


def test_outbound_mark_and_clear() -> None:
    assert json.loads(wire.mark_message(STREAM_SID, "utterance-4")) == {
        "event": "mark",
        "streamSid": STREAM_SID,
        "mark": {"name": "utterance-4"},
    }
    assert json.loads(wire.clear_message(STREAM_SID)) == {
        "event": "clear",
        "streamSid": STREAM_SID,
    }


def test_outbound_mark_echo_parses_back() -> None:
    # Twilio echoes our mark with the same shape plus a sequence number.
    echoed = json.loads(wire.mark_message(STREAM_SID, "bye"))
    echoed["sequenceNumber"] = "42"
    assert wire.parse(json.dumps(echoed)) == wire.Mark(STREAM_SID, "bye", 42)
