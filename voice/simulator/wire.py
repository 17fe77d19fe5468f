"""Twilio's side of the wire as the simulated caller speaks it: SIDs, signatures, TwiML, messages.

Pure functions and a message builder, kept apart from the caller so that the shapes Twilio
documents can be tested (and read) on their own.
"""

from __future__ import annotations

import base64
import json
import secrets
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any

from twilio.request_validator import RequestValidator

from voice.audio import FRAME_MS, TWILIO_RATE

ANSWER_PATH = "/voice/answer"


class SimulatorError(RuntimeError):
    """The call could not be placed: the server is unreachable or refused it.

    The message is one line, meant for a person at a terminal.
    """


# --- identifiers and signatures ------------------------------------------------------------


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits (``CA...``, ``MZ...``, ``AC...``)."""
    return prefix + secrets.token_hex(16)


def twilio_signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """``X-Twilio-Signature`` as Twilio computes it (HMAC-SHA1 of URL and sorted params).

    Twilio's own helper, so that a mismatch between this and the server's check can only
    come from the URL or the parameters, never from a second implementation of the hash.
    """
    signature: str = RequestValidator(auth_token).compute_signature(url, params or {})
    return signature


# --- TwiML ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamInstruction:
    """What the TwiML answer asks Twilio to do: stream to ``url``, then dial ``dial``."""

    url: str
    parameters: dict[str, str]
    dial: str = ""


def parse_twiml(text: str) -> StreamInstruction:
    """Read ``<Response><Connect><Stream url>`` (with its ``<Parameter>``s) and ``<Dial>``.

    Raises :class:`SimulatorError` when the answer is not TwiML with a stream, which is what
    Twilio would do too: it would play an application error and hang up.
    """
    try:
        # The XML is our own server's answer over loopback or to an operator's command,
        # not input from the public.
        root = ElementTree.fromstring(text)  # noqa: S314
    except ElementTree.ParseError:
        raise SimulatorError("/voice/answer did not return XML") from None
    if root.tag != "Response":
        raise SimulatorError(f"/voice/answer returned <{root.tag}>, not TwiML <Response>")
    reject = root.find("Reject")
    if reject is not None:
        reason = reject.get("reason", "rejected")
        raise SimulatorError(f"the server rejected the call ({reason}; rate limited?)")
    stream = root.find("./Connect/Stream")
    url = stream.get("url", "") if stream is not None else ""
    if stream is None or not url:
        raise SimulatorError("the TwiML answer has no <Connect><Stream url=...>")
    parameters = {
        name: parameter.get("value", "")
        for parameter in stream.findall("Parameter")
        if (name := parameter.get("name"))
    }
    dial = root.find("Dial")
    number = "".join(dial.itertext()).strip() if dial is not None else ""
    return StreamInstruction(url=url, parameters=parameters, dial=number)


# --- Twilio's messages ---------------------------------------------------------------------


class StreamMessages:
    """Builds the JSON messages Twilio sends on a media stream, numbered as Twilio numbers them.

    Shapes follow Twilio's "Media Streams - WebSocket Messages": ``connected`` carries no
    sequence number; ``start`` is ``"1"`` and every later message counts up by one; numbers,
    media chunks and timestamps are decimal strings. Media timestamps are the audio clock
    (milliseconds of caller audio since the stream started), which is what Twilio reports.
    """

    def __init__(self, *, stream_sid: str, call_sid: str, account_sid: str) -> None:
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self._sequence = 0
        self._chunk = 0

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    @staticmethod
    def _dump(message: dict[str, Any]) -> str:
        return json.dumps(message, separators=(",", ":"))

    def connected(self) -> str:
        return self._dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: dict[str, str]) -> str:
        return self._dump(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": TWILIO_RATE,
                        "channels": 1,
                    },
                    "customParameters": dict(custom_parameters),
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, payload: bytes) -> str:
        timestamp = self._chunk * FRAME_MS
        self._chunk += 1
        return self._dump(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(timestamp),
                    "payload": base64.b64encode(payload).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )

    def dtmf(self, digit: str) -> str:
        return self._dump(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return self._dump(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        return self._dump(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )
