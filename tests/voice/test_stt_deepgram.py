"""Deepgram streaming STT through the real deepgram-sdk, against the loopback Deepgram."""

from __future__ import annotations

import asyncio

import pytest
from django.test import override_settings

from tests.fakes.deepgram_server import FakeDeepgram
from tests.voice.conftest import collecting
from tests.voice.signals import feed, frames_of, join, quiet, voiced
from voice.stt import stt_from_settings
from voice.stt.base import Final, Interim, SpeechStarted, SpeechToTextError, UtteranceEnd
from voice.stt.deepgram import DeepgramSTT, DeepgramSttOptions, deepgram_environment
from voice.stt.fallback import StartFallbackSTT

FAST_RETRY = DeepgramSttOptions(reconnect_backoff_s=0.01, max_reconnect_attempts=2)


def utterance(ms: float = 600) -> list[bytes]:
    """One spoken phrase and the pause after it."""
    return frames_of(join(voiced(ms), quiet(800)))


def stt_for(fake: FakeDeepgram, options: DeepgramSttOptions | None = None) -> DeepgramSTT:
    return DeepgramSTT(api_key=fake.api_key, base_url=fake.base_url, options=options)


async def test_transcripts_come_back_as_typed_events(deepgram: FakeDeepgram) -> None:
    deepgram.say("I'd like to book a checkup", "next Tuesday")
    deepgram.latency_s = 0.05
    stt = stt_for(deepgram)
    await stt.start()
    async with collecting(stt) as got:
        await feed(stt, frames_of(quiet(300)) + utterance() + utterance(), speedup=10)
        await got.wait_for(2)
        await stt.close()
        await got.finished()

    assert got.error is None
    assert got.kinds() == ["SpeechStarted", "Interim", "Final", "UtteranceEnd"] * 2
    finals = [event for event in got.events if isinstance(event, Final)]
    assert [final.text for final in finals] == ["I'd like to book a checkup", "next Tuesday"]
    assert all(final.confidence == pytest.approx(0.98) for final in finals)
    # The fake answers 50 ms after the end of the audio a final covers.
    assert all(40 <= final.stt_latency_ms < 1000 for final in finals)
    assert got.events[1] == Interim(text="I'd", confidence=0.98)


async def test_the_socket_is_opened_with_the_phone_audio_format_and_key(
    deepgram: FakeDeepgram,
) -> None:
    stt = stt_for(deepgram)
    await stt.start(["Riverside", "Blue Cross", "riverside", " "])
    await stt.close()

    (session,) = deepgram.listen_sessions
    assert deepgram.rejected_handshakes == 0  # the fake checks "Authorization: Token <key>"
    expected = {
        "model": "nova-3",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "300",
        "utterance_end_ms": "1000",
        "vad_events": "true",
        "smart_format": "true",
    }
    assert {name: session.param(name) for name in expected} == expected
    # Hints become repeated keyterm parameters, de-duplicated, blanks dropped.
    assert session.keyterms == ["Riverside", "Blue Cross"]
    assert session.close_stream


async def test_new_hints_are_sent_mid_stream_and_kept_for_a_new_socket(
    deepgram: FakeDeepgram,
) -> None:
    deepgram.say("yes", "four two seven")
    stt = stt_for(deepgram, FAST_RETRY)
    await stt.start(["yes", "no"])
    async with collecting(stt) as got:
        await feed(stt, utterance(), speedup=10)
        await got.wait_for(1)
        await stt.set_hints(["four", "seven"])
        deepgram.drop_after(1)
        await feed(stt, utterance(), speedup=10)
        await got.wait_for(2)
        await stt.close()

    first, second = deepgram.listen_sessions
    assert first.keyterms == ["yes", "no"]
    assert first.configures == [["four", "seven"]]  # a Configure message, no reconnect
    assert second.keyterms == ["four", "seven"]  # the reconnect opened with the new hints


async def test_keep_alives_are_sent_while_the_agent_talks(deepgram: FakeDeepgram) -> None:
    stt = stt_for(deepgram)
    await stt.start()
    for _ in range(3):
        await stt.keep_alive()
    await asyncio.sleep(0.05)
    await stt.close()
    assert deepgram.keepalives == 3
    assert stt.keepalives_sent == 3


async def test_a_dropped_socket_is_reconnected_and_no_words_are_lost(
    deepgram: FakeDeepgram,
) -> None:
    deepgram.say("my name is Ada Lovelace", "date of birth December tenth", "that's all")
    # The fake hangs up as the caller finishes the second phrase, before any result for it:
    # all of that phrase went to the dead socket.
    deepgram.drop_after(1)
    stt = stt_for(deepgram, FAST_RETRY)
    await stt.start()
    async with collecting(stt) as got:
        await feed(stt, utterance() + utterance(900) + utterance(), speedup=10)
        await got.wait_for(3)
        await stt.close()
        await got.finished()

    finals = [event.text for event in got.events if isinstance(event, Final)]
    assert finals == [
        "my name is Ada Lovelace",
        "date of birth December tenth",
        "that's all",
    ]
    assert got.kinds().count("UtteranceEnd") == 3
    first, second = deepgram.listen_sessions
    assert first.dropped and not second.dropped
    assert stt.reconnects == 1
    # The second socket got the whole interrupted phrase again from the replay buffer.
    assert stt.replayed_bytes >= 900 * 8
    assert second.utterances == 2


async def test_close_flushes_the_words_still_being_spoken(deepgram: FakeDeepgram) -> None:
    deepgram.say("cancel my appointment")
    stt = stt_for(deepgram)
    await stt.start()
    async with collecting(stt) as got:
        await feed(stt, frames_of(voiced(600)), speedup=10)  # no pause: no endpoint yet
        await asyncio.sleep(0.05)
        await stt.close()
        await got.finished()
    assert [e.text for e in got.events if isinstance(e, Final)] == ["cancel my appointment"]
    assert deepgram.listen_sessions[0].close_stream


async def test_a_wrong_key_fails_start_after_bounded_attempts(deepgram: FakeDeepgram) -> None:
    stt = DeepgramSTT(api_key="wrong", base_url=deepgram.base_url, options=FAST_RETRY)
    with pytest.raises(SpeechToTextError):
        await stt.start()
    assert deepgram.rejected_handshakes == 3  # the first try and two retries
    await stt.close()


async def test_events_fail_when_the_service_cannot_be_reached_again() -> None:
    fake = FakeDeepgram(script=["hello"])
    await fake.__aenter__()
    stt = stt_for(fake, FAST_RETRY)
    await stt.start()
    async with collecting(stt) as got:
        await fake.__aexit__(None, None, None)  # the service goes away for good
        await feed(stt, utterance(), speedup=10)
        await got.finished()
    assert isinstance(got.error, SpeechToTextError)
    await stt.close()


def test_environment_derives_rest_and_websocket_urls() -> None:
    for given in ("http://127.0.0.1:9000", "ws://127.0.0.1:9000/"):
        environment = deepgram_environment(given)
        assert environment.base == "http://127.0.0.1:9000"
        assert environment.production == "ws://127.0.0.1:9000"
    secure = deepgram_environment("https://dg.example.org")
    assert secure.production == "wss://dg.example.org"
    assert deepgram_environment("").production == "wss://api.deepgram.com"


async def test_the_factory_builds_deepgram_from_settings(deepgram: FakeDeepgram) -> None:
    deepgram.say("hello")
    with override_settings(
        STT_PROVIDER="deepgram",
        DEEPGRAM_API_KEY=deepgram.api_key,
        DEEPGRAM_BASE_URL=deepgram.base_url,
    ):
        stt = stt_from_settings(call_id="call-1")
    assert isinstance(stt, StartFallbackSTT) and isinstance(stt.primary, DeepgramSTT)
    await stt.start()
    assert stt.active is stt.primary
    async with collecting(stt) as got:
        await feed(stt, utterance(), speedup=10)
        await got.wait_for(1)
        await stt.close()
    assert SpeechStarted() in got.events and UtteranceEnd() in got.events
