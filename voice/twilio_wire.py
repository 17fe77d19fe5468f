"""Twilio Media Streams wire format, in one place.

Twilio sends JSON text messages over the stream's WebSocket: ``connected``, ``start``,
``media`` (caller audio, base64 mu-law), ``dtmf``, ``mark`` (a mark we sent has played) and
``stop``. On a bidirectional stream (``<Connect><Stream>``) we send ``media``, ``mark`` and
``clear`` back. :func:`parse` turns one inbound message into a typed, immutable event or
raises :class:`MalformedMessage` with a short reason code; the builders produce outbound
messages. Everything here is pure, so the consumer stays thin and the shapes are tested once.

Reason codes never contain message content: a malformed message may carry caller audio or a
custom parameter, and reasons end up in logs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_CHARS = 256 * 1024
"""Larger messages are refused before parsing; Twilio's are a few hundred bytes."""
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class MalformedMessage(ValueError):
    """An inbound message that is not a well-formed Twilio Media Streams message.

    ``reason`` is a short code safe to log: ``not_json``, ``not_object``, ``too_large``,
    ``unknown_event``, ``missing_field:<path>``, ``bad_field:<path>``, ``bad_base64``.
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
        raise MalformedMessage("not_json") from None
    if not isinstance(message, dict):
        raise MalformedMessage("not_object")
    event = message.get("event")
    parser = _PARSERS.get(event) if isinstance(event, str) else None
    if parser is None:
        raise MalformedMessage("missing_field:event" if event is None else "unknown_event")
    return parser(message)


def _text(message: Mapping[str, Any], path: str, *, required: bool = True) -> str:
    value = _lookup(message, path)
    if value is None:
        if required:
            raise MalformedMessage(f"missing_field:{path}")
        return ""
    if not isinstance(value, str):
        raise MalformedMessage(f"bad_field:{path}")
    if required and not value:
        raise MalformedMessage(f"missing_field:{path}")
    return value


def _integer(message: Mapping[str, Any], path: str, *, required: bool = True) -> int | None:
    """Twilio sends counters as decimal strings ("sequenceNumber": "3"); accept ints too."""
    value = _lookup(message, path)
    if value is None:
        if required:
            raise MalformedMessage(f"missing_field:{path}")
        return None
    if isinstance(value, bool):
        raise MalformedMessage(f"bad_field:{path}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    else:
        raise MalformedMessage(f"bad_field:{path}")
    if number < 0:
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


def _parse_connected(message: Mapping[str, Any]) -> Connected:
    return Connected(
        protocol=_text(message, "protocol", required=False),
        version=_text(message, "version", required=False),
    )


def _parse_start(message: Mapping[str, Any]) -> Start:
    _object(message, "start")
    stream_sid = _text(message, "start.streamSid")
    top_sid = _text(message, "streamSid", required=False)
    if top_sid and top_sid != stream_sid:
        raise MalformedMessage("bad_field:streamSid")
    tracks_raw = _lookup(message, "start.tracks")
    if tracks_raw is None:
        tracks: tuple[str, ...] = ("inbound",)
    elif isinstance(tracks_raw, list) and all(isinstance(t, str) for t in tracks_raw):
        tracks = tuple(tracks_raw)
    else:
        raise MalformedMessage("bad_field:start.tracks")
    params_raw = _lookup(message, "start.customParameters")
    if params_raw is None:
        params: dict[str, str] = {}
    elif isinstance(params_raw, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in params_raw.items()
    ):
        params = dict(params_raw)
    else:
        raise MalformedMessage("bad_field:start.customParameters")
    _object(message, "start.mediaFormat")
    media_format = MediaFormat(
        encoding=_text(message, "start.mediaFormat.encoding"),
        sample_rate=_integer(message, "start.mediaFormat.sampleRate") or 0,
        channels=_integer(message, "start.mediaFormat.channels", required=False) or 1,
    )
    return Start(
        stream_sid=stream_sid,
        call_sid=_text(message, "start.callSid"),
        account_sid=_text(message, "start.accountSid", required=False),
        tracks=tracks,
        media_format=media_format,
        custom_parameters=params,
        sequence_number=_sequence(message),
    )


def _parse_media(message: Mapping[str, Any]) -> Media:
    _object(message, "media")
    encoded = _text(message, "media.payload")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage("bad_base64") from None
    return Media(
        stream_sid=_text(message, "streamSid"),
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
        stream_sid=_text(message, "streamSid"),
        digit=digit,
        track=_text(message, "dtmf.track", required=False) or "inbound_track",
        sequence_number=_sequence(message),
    )


def _parse_mark(message: Mapping[str, Any]) -> Mark:
    _object(message, "mark")
    return Mark(
        stream_sid=_text(message, "streamSid"),
        name=_text(message, "mark.name"),
        sequence_number=_sequence(message),
    )


def _parse_stop(message: Mapping[str, Any]) -> Stop:
    stop = _lookup(message, "stop")
    if stop is not None and not isinstance(stop, dict):
        raise MalformedMessage("bad_field:stop")
    return Stop(
        stream_sid=_text(message, "streamSid"),
        call_sid=_text(message, "stop.callSid", required=False),
        account_sid=_text(message, "stop.accountSid", required=False),
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
