"""Fuzzing the Twilio media-stream wire: no message, however shaped, hurts a call.

Property-based (hypothesis): random text and bytes, and the recorded Twilio messages
(tests/voice/fixtures/twilio/) mutated field by field (any JSON value, numbers past Python's
int-conversion limit, overlong and surrogate strings, oversized payloads, deleted fields) and
character by character. Two properties:

- :func:`voice.twilio_wire.parse` returns a well-formed event or raises
  :class:`~voice.twilio_wire.MalformedMessage` with a reason of the documented shape, and
  nothing else;
- the real consumer, fed a burst of such messages in the middle of a live call, neither raises
  nor closes the socket, counts every message it drops, and still hears the caller afterwards.

The example database is off (no ``.hypothesis/`` directory in the checkout); a failure prints
the falsifying example and a ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from intake import services
from intake.models import Call
from tests.fakes.deepgram_server import FakeDeepgram, tone_mulaw
from tests.voice.test_stream_consumer import deepgram_settings
from tests.voice.twilio_stream import SILENCE, TwilioStream
from voice import metrics
from voice import twilio_wire as wire
from voice.tokens import stream_token_issue

FIXTURES = Path(__file__).parent / "fixtures" / "twilio"
BASE_NAMES = ("connected", "start", "media", "dtmf", "mark", "stop")
BASES: dict[str, dict[str, Any]] = {
    name: json.loads((FIXTURES / f"{name}.json").read_text()) for name in BASE_NAMES
}
RECORDED: list[dict[str, Any]] = json.loads((FIXTURES / "short_call.json").read_text())

REASON = re.compile(
    r"(not_json|not_object|too_large|unknown_event|bad_base64)"
    r"|(missing_field|bad_field|too_large):[A-Za-z]+(\.[A-Za-z]+)*"
)
NO_SETTINGS_DB = settings(database=None, print_blob=True, max_examples=400, deadline=None)


# --- strategies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """JSON text put into a message verbatim (what ``json.dumps`` will not write)."""

    text: str


def _paths(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return []
    found: list[str] = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        found.append(path)
        found.extend(_paths(value, path + "."))
    return found


PATHS = sorted({path for base in BASES.values() for path in _paths(base)} | {"extra", "x.y"})
INTEGER_PATHS = [
    "sequenceNumber",
    "media.chunk",
    "media.timestamp",
    "start.mediaFormat.sampleRate",
    "start.mediaFormat.channels",
]

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
nasty_values = st.one_of(
    # Digit strings around every bound, up to well past the int-conversion limit.
    st.sampled_from([1, 10, 11, 4_300, 4_301, 5_000, 12_000]).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=12_000).map(lambda n: "9" * n),
    st.sampled_from([4_300, 4_301, 5_000]).map(lambda n: "1" * n),
    st.sampled_from([wire.MAX_COUNTER, wire.MAX_COUNTER + 1, -1, 2**63, 10**300]),
    st.sampled_from([4_000, 4_301, 6_000]).map(lambda n: Literal("9" * n)),
    st.sampled_from([Literal("-" + "9" * 5_000), Literal("1e999999"), Literal("NaN")]),
    st.sampled_from(["", " ", "\x00", "\ud800", "0x10", "1_000", "٣", "²", " 7", "7 "]),
    st.sampled_from([32, 33, 100]).map(lambda n: "MZ" + "a" * n),
    st.sampled_from([257, 5_000, 20_000]).map(lambda n: "x" * n),
    st.sampled_from([160, wire.MAX_MEDIA_PAYLOAD_BYTES, wire.MAX_MEDIA_PAYLOAD_BYTES + 1]).map(
        lambda n: base64.b64encode(b"\x7f" * n).decode()
    ),
    st.lists(st.just("inbound"), min_size=0, max_size=8),
    st.dictionaries(st.text(max_size=70), st.text(max_size=30), max_size=20),
)
field_values = st.one_of(json_values, nasty_values)


@dataclass(frozen=True)
class Mutation:
    path: str
    value: Any  # ``...`` deletes the field


mutations = st.builds(Mutation, st.sampled_from(PATHS), st.one_of(field_values, st.just(...)))


@dataclass(frozen=True)
class TextEdit:
    """Replace ``span`` characters at ``at`` (a fraction of the length) with ``insert``."""

    at: float
    span: int
    insert: str


text_edits = st.builds(
    TextEdit,
    st.floats(min_value=0, max_value=1),
    st.integers(min_value=0, max_value=8),
    st.text(max_size=6) | st.sampled_from(['"', "{", "}", "[", ",", ":", "\\", "9" * 5_000]),
)


@dataclass(frozen=True)
class Fuzzed:
    """A base message (by name), field mutations, then character edits of its JSON text."""

    base: str
    changes: tuple[Mutation, ...]
    edits: tuple[TextEdit, ...]

    def render(self, replace_sids: dict[str, str] | None = None) -> str:
        message = copy.deepcopy(BASES[self.base])
        if replace_sids:
            _replace_sids(message, replace_sids)
        literals: dict[str, str] = {}
        for number, change in enumerate(self.changes):
            value = change.value
            if isinstance(value, Literal):
                marker = f"__literal_{number}__"
                literals[json.dumps(marker)] = value.text
                value = marker
            _set(message, change.path, value)
        text = json.dumps(message)
        for marker, raw in literals.items():
            text = text.replace(marker, raw)
        for edit in self.edits:
            at = int(edit.at * len(text))
            text = text[:at] + edit.insert + text[at + edit.span :]
        return text


fuzzed_messages = st.builds(
    Fuzzed,
    st.sampled_from(BASE_NAMES),
    st.lists(mutations, max_size=3).map(tuple),
    st.lists(text_edits, max_size=2).map(tuple),
)


def _set(message: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node: Any = message
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value


def _replace_sids(node: Any, sids: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in sids and isinstance(value, str):
                node[key] = sids[key]
            else:
                _replace_sids(value, sids)


# --- parse ----------------------------------------------------------------------------------


def assert_parses_or_refuses(message: str | bytes) -> wire.InboundEvent | None:
    """The property: an event within every bound, or a MalformedMessage with a clean reason."""
    try:
        event = wire.parse(message)
    except wire.MalformedMessage as refused:
        assert REASON.fullmatch(refused.reason), refused.reason
        assert str(refused) == refused.reason
        return None
    assert isinstance(
        event, wire.Connected | wire.Start | wire.Media | wire.Dtmf | wire.Mark | wire.Stop
    )
    if not isinstance(event, wire.Connected):
        assert wire.STREAM_SID.fullmatch(event.stream_sid)
        assert event.sequence_number is None or 0 <= event.sequence_number <= wire.MAX_COUNTER
    if isinstance(event, wire.Start):
        assert wire.CALL_SID.fullmatch(event.call_sid)
        assert len(event.custom_parameters) <= wire.MAX_CUSTOM_PARAMETERS
    if isinstance(event, wire.Media):
        assert 0 < len(event.payload) <= wire.MAX_MEDIA_PAYLOAD_BYTES
        assert 0 <= event.chunk <= wire.MAX_COUNTER and 0 <= event.timestamp_ms <= wire.MAX_COUNTER
    return event


@NO_SETTINGS_DB
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_random_text_and_bytes_are_parsed_or_refused(message: str | bytes) -> None:
    assert_parses_or_refuses(message)


@NO_SETTINGS_DB
@given(fuzzed_messages, st.booleans())
def test_mutated_twilio_messages_are_parsed_or_refused(fuzzed: Fuzzed, as_bytes: bool) -> None:
    text = fuzzed.render()
    assert_parses_or_refuses(text.encode("utf-8", "surrogatepass") if as_bytes else text)


def test_the_recorded_messages_themselves_parse() -> None:
    for message in [*BASES.values(), *RECORDED]:
        assert assert_parses_or_refuses(json.dumps(message)) is not None


# --- through the real consumer --------------------------------------------------------------

_sids = itertools.count(1)


@sync_to_async
def _new_call() -> tuple[Call, str]:
    call = services.call_start(call_sid=f"CA{next(_sids):032x}", caller_number="+16175550142")
    return call, stream_token_issue(call)


def _dropped_total() -> float:
    """Messages the consumer dropped: malformed or out of order, or over the stream's budget."""
    total = 0.0
    for counter in (metrics.MALFORMED, metrics.OVER_BUDGET):
        for family in counter.collect():
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def _would_end_the_call(event: wire.InboundEvent | None, stream_sid: str) -> bool:
    """A well-formed stop or keypress on the live stream legitimately changes the call (a
    stop ends it, 0 transfers it), so the burst leaves those out; everything else goes in."""
    return isinstance(event, wire.Stop | wire.Dtmf) and event.stream_sid == stream_sid


def _expected_drop(event: wire.InboundEvent | None, stream_sid: str) -> bool:
    if event is None or isinstance(event, wire.Start):
        return True  # refused by parse, or a second start
    if isinstance(event, wire.Connected):
        return False
    return event.stream_sid != stream_sid


raw_messages = st.text(max_size=200) | st.binary(max_size=200)


@pytest.mark.django_db(transaction=True)
@settings(
    database=None,
    print_blob=True,
    deadline=None,
    max_examples=8,
    # Each example is a whole call (about a second); shrinking one would take minutes, and the
    # failing burst is printed whole anyway.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(burst=st.lists(fuzzed_messages | raw_messages, min_size=10, max_size=40))
@example(  # the messages that closed calls with 1011: numbers past the int-conversion limit
    burst=[
        Fuzzed(name, (Mutation(path, "9" * 5_000),), ())
        for name in ("media", "start", "mark", "dtmf", "stop")
        for path in INTEGER_PATHS
        if path == "sequenceNumber" or path.split(".")[0] in BASES[name]
    ]
)
async def test_a_burst_of_fuzzed_messages_never_hurts_a_live_call(
    burst: list[Fuzzed | str | bytes],
) -> None:
    async with FakeDeepgram() as fake:
        with override_settings(**deepgram_settings(fake)):
            call, token = await _new_call()
            stream = TwilioStream(call.call_sid, token)
            connected, _ = await stream.connect()
            assert connected
            await stream.start()
            frames, mark = await stream.play_until_mark()
            assert frames > 0 and mark, "the greeting was not played"
            # The live call's SIDs, and silence for audio (the burst tests the wire, not the
            # recogniser; the recorded frame is a tone that would read as speech).
            sids = {
                "streamSid": stream.stream_sid,
                "callSid": call.call_sid,
                "payload": base64.b64encode(SILENCE).decode(),
            }

            before = _dropped_total()
            expected = 0
            for item in burst:
                text = item.render(sids) if isinstance(item, Fuzzed) else item
                event = assert_parses_or_refuses(text)
                if _would_end_the_call(event, stream.stream_sid):
                    continue
                expected += _expected_drop(event, stream.stream_sid)
                # The ASGI message as Daphne delivers it (send_to refuses an empty frame).
                kind = "bytes" if isinstance(text, bytes) else "text"
                await stream.communicator.send_input({"type": "websocket.receive", kind: text})
            # Silence closes whatever noise the burst's audio started, then the caller speaks.
            await stream.media(SILENCE * 50)
            fake.say("I'd like to make an appointment")
            await stream.media(tone_mulaw(600) + SILENCE * 40)

            heard = False
            for _ in range(4):  # a noisy burst may earn a reprompt before the real answer
                frames, mark = await stream.play_until_mark()
                assert mark is not None, "the server closed the stream"
                said = call.turns.filter(speaker="caller").values_list("text", flat=True)
                heard = "I'd like to make an appointment" in [text async for text in said]
                if heard:
                    break
            assert heard, "the caller was not heard after the burst"
            assert _dropped_total() - before == expected

            await stream.stop()
            await stream.communicator.disconnect()
