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
        ("[" * 10_000, "not_json"),
        ('{"event": "media", "pad": "' + "x" * 300_000 + '"}', "too_large"),
        ("{" + '"a": 1,' * 3_000 + '"event": "mark"}', "too_large"),
        (
            altered("start", "start.mediaFormat.sampleRate", 0),
            "bad_field:start.mediaFormat.sampleRate",
        ),
        (altered("start", "start.mediaFormat.channels", 0), "bad_field:start.mediaFormat.channels"),
        (
            altered("start", "start.mediaFormat.channels", "2000"),
            "bad_field:start.mediaFormat.channels",
        ),
        (
            altered("start", "start.mediaFormat.sampleRate", 8000.0),
            "bad_field:start.mediaFormat.sampleRate",
        ),
        (altered("media", "media.chunk", "²"), "bad_field:media.chunk"),
        (altered("media", "media.chunk", ""), "bad_field:media.chunk"),
        (altered("media", "media.chunk", " 7"), "bad_field:media.chunk"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(message: str, reason: str) -> None:
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(message)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


# --- bounds: nothing unbounded reaches int(), b64decode or a log line ---------------------------

INTEGER_FIELDS = [
    ("media", "sequenceNumber"),
    ("media", "media.chunk"),
    ("media", "media.timestamp"),
    ("start", "sequenceNumber"),
    ("start", "start.mediaFormat.sampleRate"),
    ("start", "start.mediaFormat.channels"),
    ("dtmf", "sequenceNumber"),
    ("mark", "sequenceNumber"),
    ("stop", "sequenceNumber"),
]


@pytest.mark.parametrize(("name", "path"), INTEGER_FIELDS)
@pytest.mark.parametrize("digits", [11, 4_300, 4_301, 5_000, 12_000])
def test_an_overlong_numeric_string_is_a_bad_field_not_a_crash(
    name: str, path: str, digits: int
) -> None:
    # 4,301 digits and more is past Python's int-conversion limit: int() itself would raise.
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(altered(name, path, "9" * digits))
    assert caught.value.reason == f"bad_field:{path}"


@pytest.mark.parametrize(("name", "path"), INTEGER_FIELDS)
def test_a_numeric_literal_out_of_range_is_a_bad_field(name: str, path: str) -> None:
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(altered(name, path, 10**4_000))
    assert caught.value.reason == f"bad_field:{path}"
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(altered(name, path, -1))
    assert caught.value.reason == f"bad_field:{path}"


@pytest.mark.parametrize(("name", "path"), INTEGER_FIELDS)
def test_a_numeric_literal_past_the_conversion_limit_is_not_json(name: str, path: str) -> None:
    # json.loads converts the literal itself and refuses it with a ValueError of its own.
    message = fixture(name)
    message.pop("sequenceNumber", None)
    text = json.dumps(message)
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(text[:-1] + ', "sequenceNumber": ' + "9" * 4_400 + "}")
    assert caught.value.reason == "not_json"


def test_counters_up_to_the_bound_are_accepted_in_either_form() -> None:
    top = str(wire.MAX_COUNTER)
    assert len(top) == wire.MAX_COUNTER_DIGITS
    event = wire.parse(altered("media", "media.timestamp", top))
    assert isinstance(event, wire.Media) and event.timestamp_ms == wire.MAX_COUNTER
    event = wire.parse(altered("media", "media.chunk", wire.MAX_COUNTER))
    assert isinstance(event, wire.Media) and event.chunk == wire.MAX_COUNTER
    event = wire.parse(
        altered("media", "sequenceNumber", "0" * (wire.MAX_COUNTER_DIGITS - 1) + "7")
    )
    assert isinstance(event, wire.Media) and event.sequence_number == 7
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(altered("media", "media.timestamp", str(wire.MAX_COUNTER + 1)))
    assert caught.value.reason == "bad_field:media.timestamp"


def test_the_media_format_keeps_what_was_sent() -> None:
    event = wire.parse(altered("start", "start.mediaFormat.channels", 2))
    assert isinstance(event, wire.Start)
    assert event.media_format.channels == 2 and not event.media_format.is_mulaw_8k_mono
    event = wire.parse(altered("start", "start.mediaFormat.channels", ...))
    assert isinstance(event, wire.Start) and event.media_format.channels == 1


def test_a_media_payload_is_capped_before_it_is_decoded() -> None:
    largest = base64.b64encode(b"\xff" * wire.MAX_MEDIA_PAYLOAD_BYTES).decode()
    assert len(largest) == wire.MAX_MEDIA_PAYLOAD_CHARS
    event = wire.parse(altered("media", "media.payload", largest))
    assert isinstance(event, wire.Media) and len(event.payload) == wire.MAX_MEDIA_PAYLOAD_BYTES

    too_much = base64.b64encode(b"\xff" * (wire.MAX_MEDIA_PAYLOAD_BYTES + 3)).decode()
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(altered("media", "media.payload", too_much))
    assert caught.value.reason == "too_large:media.payload"
    # Not even valid base64 is decoded when it is too long.
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(altered("media", "media.payload", "!" * (wire.MAX_MEDIA_PAYLOAD_CHARS + 1)))
    assert caught.value.reason == "too_large:media.payload"


def test_a_real_frame_is_far_inside_every_bound() -> None:
    assert len(text("media")) * 10 < wire.MAX_MESSAGE_CHARS
    assert len(fixture("media")["media"]["payload"]) * 5 < wire.MAX_MEDIA_PAYLOAD_CHARS


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("media", "streamSid", "MZ1"),
        ("media", "streamSid", "MZ" + "g" * 32),
        ("media", "streamSid", "CA" + "a" * 32),
        ("media", "streamSid", "MZ" + "a" * 33),
        ("media", "streamSid", "MZ" + "a" * 31 + "\n"),
        ("mark", "streamSid", "\ud800" * 34),
        ("dtmf", "streamSid", 12345),
        ("stop", "streamSid", "MZ" + "a" * 10_000),
        ("start", "start.streamSid", "MZ-" + "a" * 31),
        ("start", "start.callSid", "CA" + "a" * 31),
        ("start", "start.callSid", "ca" + "a" * 32),
        ("start", "start.callSid", "CA" + "a" * 31 + "\u0000"),
        ("start", "start.accountSid", "AC"),
        ("stop", "stop.callSid", "Jane Doe"),
    ],
)
def test_sids_must_have_twilios_shape(name: str, path: str, value: Any) -> None:
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(altered(name, path, value))
    assert caught.value.reason in {f"bad_field:{path}", f"too_large:{path}"}


@pytest.mark.parametrize(
    ("name", "path", "value", "reason"),
    [
        ("mark", "mark.name", "m" * 257, "too_large:mark.name"),
        ("media", "media.track", "t" * 257, "too_large:media.track"),
        ("dtmf", "dtmf.track", "t" * 257, "too_large:dtmf.track"),
        ("start", "start.mediaFormat.encoding", "e" * 257, "too_large:start.mediaFormat.encoding"),
        ("start", "start.tracks", ["inbound"] * 5, "too_large:start.tracks"),
        ("start", "start.tracks", ["t" * 257], "bad_field:start.tracks"),
        ("start", "start.tracks", [""], "bad_field:start.tracks"),
        (
            "start",
            "start.customParameters",
            {f"p{i}": "v" for i in range(17)},
            "too_large:start.customParameters",
        ),
        (
            "start",
            "start.customParameters",
            {"token": "v" * 1025},
            "too_large:start.customParameters",
        ),
        (
            "start",
            "start.customParameters",
            {"n" * 65: "v"},
            "too_large:start.customParameters",
        ),
    ],
)
def test_strings_and_collections_are_bounded(name: str, path: str, value: Any, reason: str) -> None:
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.parse(altered(name, path, value))
    assert caught.value.reason == reason


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
