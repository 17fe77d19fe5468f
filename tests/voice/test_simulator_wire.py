"""The call simulator's wire: Twilio's message shapes as the caller sends them, the webhook's
signature, the TwiML it parses, and where the network transport connects.
"""

from __future__ import annotations

import base64
import json

import pytest
from twilio.request_validator import RequestValidator

from tests.voice.simulator_helpers import ACCOUNT_SID, CALL_SID, STREAM_SID
from voice import simulator, twiml
from voice import twilio_wire as wire
from voice.audio import FRAME_BYTES
from voice.simulator import (
    SILENCE_FRAME,
    NetworkTransport,
    SimulatorError,
    StreamMessages,
)


def messages() -> StreamMessages:
    return StreamMessages(stream_sid=STREAM_SID, call_sid=CALL_SID, account_sid=ACCOUNT_SID)


# --- Twilio's message shapes -----------------------------------------------------------------


def test_connected_is_the_documented_first_message_without_a_sequence_number() -> None:
    assert json.loads(messages().connected()) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }


def test_start_carries_the_call_the_format_and_the_custom_parameters() -> None:
    message = json.loads(messages().start({"token": "abc.def"}))
    assert message == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ACCOUNT_SID,
            "streamSid": STREAM_SID,
            "callSid": CALL_SID,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "abc.def"},
        },
        "streamSid": STREAM_SID,
    }


def test_media_numbers_chunks_and_stamps_them_on_the_audio_clock() -> None:
    builder = messages()
    builder.start({})
    first = json.loads(builder.media(SILENCE_FRAME))
    second = json.loads(builder.media(b"\x00" * FRAME_BYTES))
    assert first == {
        "event": "media",
        "sequenceNumber": "2",
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "0",
            "payload": base64.b64encode(SILENCE_FRAME).decode(),
        },
        "streamSid": STREAM_SID,
    }
    assert (second["sequenceNumber"], second["media"]["chunk"]) == ("3", "2")
    assert second["media"]["timestamp"] == "20"
    assert base64.b64decode(second["media"]["payload"]) == b"\x00" * FRAME_BYTES


def test_dtmf_mark_and_stop_have_the_documented_shapes() -> None:
    builder = messages()
    builder.start({})
    assert json.loads(builder.dtmf("0")) == {
        "event": "dtmf",
        "streamSid": STREAM_SID,
        "sequenceNumber": "2",
        "dtmf": {"track": "inbound_track", "digit": "0"},
    }
    assert json.loads(builder.mark("u1")) == {
        "event": "mark",
        "sequenceNumber": "3",
        "streamSid": STREAM_SID,
        "mark": {"name": "u1"},
    }
    assert json.loads(builder.stop()) == {
        "event": "stop",
        "sequenceNumber": "4",
        "streamSid": STREAM_SID,
        "stop": {"accountSid": ACCOUNT_SID, "callSid": CALL_SID},
    }


def test_the_servers_parser_reads_every_message_the_caller_sends() -> None:
    builder = messages()
    parsed = [
        wire.parse(builder.connected()),
        wire.parse(builder.start({"token": "t"})),
        wire.parse(builder.media(SILENCE_FRAME)),
        wire.parse(builder.dtmf("#")),
        wire.parse(builder.mark("u1")),
        wire.parse(builder.stop()),
    ]
    assert [type(event).__name__ for event in parsed] == [
        "Connected",
        "Start",
        "Media",
        "Dtmf",
        "Mark",
        "Stop",
    ]
    start = parsed[1]
    assert isinstance(start, wire.Start)
    assert start.custom_parameters == {"token": "t"}
    assert start.media_format.is_mulaw_8k_mono
    media = parsed[2]
    assert isinstance(media, wire.Media)
    assert media.payload == SILENCE_FRAME


def test_signature_is_the_one_twilios_validator_accepts() -> None:
    params = {"CallSid": CALL_SID, "From": "+16175550142"}
    url = "https://clinic.example.com/voice/answer"
    signature = simulator.twilio_signature("token", url, params)
    assert RequestValidator("token").validate(url, params, signature)
    assert not RequestValidator("other").validate(url, params, signature)


# --- TwiML -----------------------------------------------------------------------------------


def test_twiml_from_the_answer_view_gives_the_stream_url_token_and_dial() -> None:
    document = twiml.answer_with_stream(
        stream_url="wss://clinic.example.com/voice/stream/",
        token="tok.en",
        front_desk_number="+16175550000",
        dial_action="https://clinic.example.com/voice/dial-status",
    )
    instruction = simulator.parse_twiml(document)
    assert instruction.url == "wss://clinic.example.com/voice/stream/"
    assert instruction.parameters == {"token": "tok.en"}
    assert instruction.dial == "+16175550000"


def test_twiml_without_a_stream_is_refused() -> None:
    with pytest.raises(SimulatorError, match="rejected the call"):
        simulator.parse_twiml(twiml.reject_busy())
    with pytest.raises(SimulatorError, match="Stream"):
        simulator.parse_twiml(twiml.empty())
    with pytest.raises(SimulatorError, match="XML"):
        simulator.parse_twiml("busy")


def test_network_stream_goes_to_the_given_server_but_keeps_the_twiml_path() -> None:
    transport = NetworkTransport("http://127.0.0.1:8123")
    assert (
        transport.stream_address("wss://clinic.example.com/voice/stream/?x=1")
        == "ws://127.0.0.1:8123/voice/stream/?x=1"
    )
    assert (
        NetworkTransport("https://127.0.0.1:8443/").stream_address("ws://h/voice/stream/")
        == "wss://127.0.0.1:8443/voice/stream/"
    )
    with pytest.raises(SimulatorError):
        NetworkTransport("ftp://127.0.0.1:21")
