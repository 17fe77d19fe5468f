"""Twilio Media Streams wire format, in one place.

Twilio sends JSON text messages over the stream's WebSocket: ``connected``, ``start``,
``media`` (caller audio, base64 mu-law), ``dtmf``, ``mark`` (a mark we sent has played) and
``stop``. On a bidirectional stream (``<Connect><Stream>``) we send ``media``, ``mark`` and
``clear`` back. :func:`parse` turns one inbound message into a typed, immutable event or
raises :class:`MalformedMessage` with a short reason code; the builders produce outbound
messages. Everything here is pure, so the consumer stays thin and the shapes are tested once.

Reason codes never contain message content: a malformed message may carry caller audio or a
custom parameter, and reasons end up in logs.

Every length and number is bounded *before* it is converted or decoded. The stream's socket is
authenticated, but what comes over it is still input: one numeric string of 5,000 digits used to
reach ``int()`` and raise past Python's int-conversion limit (4,300 digits), which closed the
call. Now a field that is too long, out of range or of the wrong shape is a
:class:`MalformedMessage` like any other, and the consumer drops it. The bounds are loose
enough for anything Twilio sends in a four-hour call (its longest) and tight enough that no
single message costs more than a few microseconds to refuse:

- a message is at most :data:`MAX_MESSAGE_CHARS`; a media payload at most
  :data:`MAX_MEDIA_PAYLOAD_BYTES` of audio (Twilio sends 20 ms, 160 bytes; ten frames' worth
  is allowed), checked on the base64 text before decoding;
- counters (``sequenceNumber``, ``media.chunk``, ``media.timestamp``) are at most
  :data:`MAX_COUNTER` and at most :data:`MAX_COUNTER_DIGITS` digits as text; the media format's
  ``sampleRate`` and ``channels`` have their own plausible ranges;
- SIDs have Twilio's shape (two letters and 32 hex digits), which also keeps whatever reaches a
  log line as ``call_sid`` to that shape; other strings are bounded in length, and the
  custom parameters and tracks in count.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_CHARS = 16 * 1024
"""Larger messages are refused before parsing; Twilio's are a few hundred bytes (a media
message about 400, a start message with its token under 1,000)."""
MAX_MEDIA_PAYLOAD_BYTES = 1600
"""Audio in one media message: Twilio sends 20 ms (160 bytes of 8 kHz mu-law); ten frames'
worth is accepted, more is refused unread."""
MAX_MEDIA_PAYLOAD_CHARS = 4 * -(-MAX_MEDIA_PAYLOAD_BYTES // 3)
"""The base64 length of :data:`MAX_MEDIA_PAYLOAD_BYTES`, checked before decoding."""
MAX_COUNTER = 2**31 - 1
"""Largest ``sequenceNumber``, ``chunk`` or ``timestamp`` (ms): a four-hour call, Twilio's
longest, reaches about 1.5 million messages and 14.4 million ms."""
MAX_COUNTER_DIGITS = len(str(MAX_COUNTER))
"""A counter sent as text with more digits is refused before ``int()`` sees it."""
SAMPLE_RATES = (1, 192_000)
"""Plausible ``sampleRate`` range; the consumer then accepts only 8000."""
CHANNELS = (1, 16)
"""Plausible ``channels`` range; the consumer then accepts only 1."""
MAX_TEXT_CHARS = 256
"""Default bound on a string field (encoding, track, protocol, mark name, ...)."""
MAX_TRACKS = 4
MAX_CUSTOM_PARAMETERS = 16
MAX_PARAMETER_NAME_CHARS = 64
MAX_PARAMETER_VALUE_CHARS = 1024
DTMF_DIGITS = frozenset("0123456789*#ABCD")
_SID_SHAPE = r"[0-9a-fA-F]{32}"
STREAM_SID = re.compile("MZ" + _SID_SHAPE)
CALL_SID = re.compile("CA" + _SID_SHAPE)
ACCOUNT_SID = re.compile("AC" + _SID_SHAPE)


class MalformedMessage(ValueError):
    """An inbound message that is not a well-formed Twilio Media Streams message.

    ``reason`` is a short code safe to log: ``not_json``, ``not_object``, ``too_large``,
    ``too_large:<path>``, ``unknown_event``, ``missing_field:<path>``, ``bad_field:<path>``,
    ``bad_base64``. The part before the colon is a bounded set (a metric label).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class MediaFormat:
    encoding: str
    sample_rate: int
    channels: int

    @property
    def is_mulaw_8k_mono(self) -> bool:
        """The only format Twilio sends today, and the only one the voice layer handles."""
        return self.encoding == "audio/x-mulaw" and self.sample_rate == 8000 and self.channels == 1


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    media_format: MediaFormat
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    sequence_number: int | None = None


@dataclass(frozen=True)
class Media:
    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes = field(repr=False)  # decoded mu-law; kept out of reprs (it is the caller)
    sequence_number: int | None = None


@dataclass(frozen=True)
class Dtmf:
    stream_sid: str
    digit: str
    track: str
    sequence_number: int | None = None


@dataclass(frozen=True)
class Mark:
    stream_sid: str
    name: str
    sequence_number: int | None = None


@dataclass(frozen=True)
class Stop:
    stream_sid: str
    call_sid: str
    account_sid: str
    sequence_number: int | None = None


InboundEvent = Connected | Start | Media | Dtmf | Mark | Stop


def parse(text: str | bytes) -> InboundEvent:
    """Parse one inbound message; raise :class:`MalformedMessage` if it is not valid."""
    if len(text) > MAX_MESSAGE_CHARS:
        raise MalformedMessage("too_large")
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # ValueError also covers a JSON number literal over the int-conversion limit.
        raise MalformedMessage("not_json") from None
    if not isinstance(message, dict):
        raise MalformedMessage("not_object")
    event = message.get("event")
    parser = _PARSERS.get(event) if isinstance(event, str) else None
    if parser is None:
        raise MalformedMessage("missing_field:event" if event is None else "unknown_event")
    return parser(message)


def _text(
    message: Mapping[str, Any],
    path: str,
    *,
    required: bool = True,
    max_chars: int = MAX_TEXT_CHARS,
    shape: re.Pattern[str] | None = None,
) -> str:
    value = _lookup(message, path)
    if value is None:
        if required:
            raise MalformedMessage(f"missing_field:{path}")
        return ""
    if not isinstance(value, str):
        raise MalformedMessage(f"bad_field:{path}")
    if not value:
        if required:
            raise MalformedMessage(f"missing_field:{path}")
        return ""
    if len(value) > max_chars:
        raise MalformedMessage(f"too_large:{path}")
    if shape is not None and not shape.fullmatch(value):
        raise MalformedMessage(f"bad_field:{path}")
    return value


def _integer(
    message: Mapping[str, Any],
    path: str,
    *,
    required: bool = True,
    bounds: tuple[int, int] = (0, MAX_COUNTER),
) -> int | None:
    """Twilio sends counters as decimal strings ("sequenceNumber": "3"); accept ints too.

    The text's length is checked before ``int()`` (which refuses more than 4,300 digits with a
    ValueError of its own), then the value's range.
    """
    value = _lookup(message, path)
    if value is None:
        if required:
            raise MalformedMessage(f"missing_field:{path}")
        return None
    if isinstance(value, bool):
        raise MalformedMessage(f"bad_field:{path}")
    if isinstance(value, int):
        number = value
    elif (
        isinstance(value, str)
        and 0 < len(value) <= MAX_COUNTER_DIGITS
        and value.isascii()
        and value.isdigit()
    ):
        number = int(value)
    else:
        raise MalformedMessage(f"bad_field:{path}")
    low, high = bounds
    if not low <= number <= high:
        raise MalformedMessage(f"bad_field:{path}")
    return number


def _lookup(message: Mapping[str, Any], path: str) -> Any:
    node: Any = message
    for part in path.split("."):
        if not isinstance(node, dict):
            raise MalformedMessage(f"bad_field:{path.rsplit('.', 1)[0]}")
        node = node.get(part)
        if node is None:
            return None
    return node


def _object(message: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    value = _lookup(message, path)
    if value is None:
        raise MalformedMessage(f"missing_field:{path}")
    if not isinstance(value, dict):
        raise MalformedMessage(f"bad_field:{path}")
    return value


def _sequence(message: Mapping[str, Any]) -> int | None:
    return _integer(message, "sequenceNumber", required=False)


def _stream_sid(message: Mapping[str, Any]) -> str:
    return _text(message, "streamSid", shape=STREAM_SID)


def _parse_connected(message: Mapping[str, Any]) -> Connected:
    return Connected(
        protocol=_text(message, "protocol", required=False),
        version=_text(message, "version", required=False),
    )


def _tracks(message: Mapping[str, Any]) -> tuple[str, ...]:
    raw = _lookup(message, "start.tracks")
    if raw is None:
        return ("inbound",)
    if not isinstance(raw, list):
        raise MalformedMessage("bad_field:start.tracks")
    if len(raw) > MAX_TRACKS:
        raise MalformedMessage("too_large:start.tracks")
    if not all(isinstance(t, str) and 0 < len(t) <= MAX_TEXT_CHARS for t in raw):
        raise MalformedMessage("bad_field:start.tracks")
    return tuple(raw)


def _custom_parameters(message: Mapping[str, Any]) -> dict[str, str]:
    raw = _lookup(message, "start.customParameters")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MalformedMessage("bad_field:start.customParameters")
    if len(raw) > MAX_CUSTOM_PARAMETERS:
        raise MalformedMessage("too_large:start.customParameters")
    for name, value in raw.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise MalformedMessage("bad_field:start.customParameters")
        if len(name) > MAX_PARAMETER_NAME_CHARS or len(value) > MAX_PARAMETER_VALUE_CHARS:
            raise MalformedMessage("too_large:start.customParameters")
    return dict(raw)


def _parse_start(message: Mapping[str, Any]) -> Start:
    _object(message, "start")
    stream_sid = _text(message, "start.streamSid", shape=STREAM_SID)
    top_sid = _text(message, "streamSid", required=False)
    if top_sid and top_sid != stream_sid:
        raise MalformedMessage("bad_field:streamSid")
    tracks = _tracks(message)
    params = _custom_parameters(message)
    _object(message, "start.mediaFormat")
    sample_rate = _integer(message, "start.mediaFormat.sampleRate", bounds=SAMPLE_RATES)
    channels = _integer(message, "start.mediaFormat.channels", required=False, bounds=CHANNELS)
    media_format = MediaFormat(
        encoding=_text(message, "start.mediaFormat.encoding"),
        sample_rate=sample_rate or 0,
        channels=1 if channels is None else channels,
    )
    return Start(
        stream_sid=stream_sid,
        call_sid=_text(message, "start.callSid", shape=CALL_SID),
        account_sid=_text(message, "start.accountSid", required=False, shape=ACCOUNT_SID),
        tracks=tracks,
        media_format=media_format,
        custom_parameters=params,
        sequence_number=_sequence(message),
    )


def _parse_media(message: Mapping[str, Any]) -> Media:
    _object(message, "media")
    encoded = _text(message, "media.payload", max_chars=MAX_MEDIA_PAYLOAD_CHARS)
    try:
        payload = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage("bad_base64") from None
    return Media(
        stream_sid=_stream_sid(message),
        track=_text(message, "media.track", required=False) or "inbound",
        chunk=_integer(message, "media.chunk", required=False) or 0,
        timestamp_ms=_integer(message, "media.timestamp", required=False) or 0,
        payload=payload,
        sequence_number=_sequence(message),
    )


def _parse_dtmf(message: Mapping[str, Any]) -> Dtmf:
    _object(message, "dtmf")
    digit = _text(message, "dtmf.digit")
    if digit not in DTMF_DIGITS:
        raise MalformedMessage("bad_field:dtmf.digit")
    return Dtmf(
        stream_sid=_stream_sid(message),
        digit=digit,
        track=_text(message, "dtmf.track", required=False) or "inbound_track",
        sequence_number=_sequence(message),
    )


def _parse_mark(message: Mapping[str, Any]) -> Mark:
    _object(message, "mark")
    return Mark(
        stream_sid=_stream_sid(message),
        name=_text(message, "mark.name"),
        sequence_number=_sequence(message),
    )


def _parse_stop(message: Mapping[str, Any]) -> Stop:
    stop = _lookup(message, "stop")
    if stop is not None and not isinstance(stop, dict):
        raise MalformedMessage("bad_field:stop")
    return Stop(
        stream_sid=_stream_sid(message),
        call_sid=_text(message, "stop.callSid", required=False, shape=CALL_SID),
        account_sid=_text(message, "stop.accountSid", required=False, shape=ACCOUNT_SID),
        sequence_number=_sequence(message),
    )


_PARSERS: dict[str, Callable[[Mapping[str, Any]], InboundEvent]] = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


def media_message(stream_sid: str, mulaw: bytes) -> str:
    """Audio to play to the caller (8 kHz mu-law, no header), queued after earlier media."""
    payload = base64.b64encode(mulaw).decode("ascii")
    return _dump({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    """Ask Twilio to echo ``name`` back once the media queued before it has played."""
    return _dump({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    """Drop all queued outbound audio (barge-in); Twilio then echoes every pending mark."""
    return _dump({"event": "clear", "streamSid": stream_sid})


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
