"""Text to speech: Aura through the real SDK against the loopback Deepgram, espeak-ng for real,
fail-over between them, and the prompt cache."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from clinic.circuit import BreakerSettings, CircuitBreaker, CircuitState, reset_breakers
from tests.fakes.deepgram_server import FakeDeepgram, tone_mulaw
from voice.audio import frame_energy_db, mulaw_duration_ms, mulaw_to_pcm
from voice.tts import CachedTTS, PromptCache, TextToSpeechError, tts_from_settings
from voice.tts.deepgram_aura import CIRCUIT as AURA_CIRCUIT
from voice.tts.deepgram_aura import DeepgramAuraTTS, http_client
from voice.tts.espeak import EspeakTTS, WavStreamParser
from voice.tts.fallback import FallbackTTS, unspoken_text

GREETING = "Thank you for calling Riverside Family Clinic. How can I help you today?"


def aura(fake: FakeDeepgram) -> DeepgramAuraTTS:
    return DeepgramAuraTTS(api_key=fake.api_key, base_url=fake.base_url)


async def spoken(stream: object) -> bytes:
    return b"".join([chunk async for chunk in stream])  # type: ignore[attr-defined]


def espeak_children() -> list[int]:
    """Live espeak-ng processes started by this test process."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
            if int(fields[1]) == os.getpid() and name == "espeak-ng" and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


# --- Deepgram Aura -------------------------------------------------------------------------


async def test_aura_streams_mulaw_chunks_as_they_arrive(deepgram: FakeDeepgram) -> None:
    deepgram.speak_first_byte_s = 0.15
    deepgram.speak_chunk_interval_s = 0.01
    tts = aura(deepgram)
    started = time.monotonic()
    arrivals: list[float] = []
    chunks: list[bytes] = []
    async for chunk in tts.synthesize(GREETING):
        arrivals.append(time.monotonic() - started)
        chunks.append(chunk)
    await tts.aclose()

    audio = b"".join(chunks)
    assert audio == tone_mulaw(len(GREETING) * deepgram.speak_ms_per_character)
    assert len(chunks) > 5  # streamed, not one body at the end
    first_byte, last_byte = arrivals[0], arrivals[-1]
    assert first_byte >= 0.15
    assert last_byte - first_byte >= 0.01 * (len(chunks) - 2)
    (request,) = deepgram.speak_requests
    assert request.text == GREETING
    assert request.params == {
        "model": "aura-2-thalia-en",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "container": "none",
    }


async def test_aura_errors_become_short_codes_without_the_text(deepgram: FakeDeepgram) -> None:
    deepgram.fail_speak(mode="status", status=503)
    tts = aura(deepgram)
    with pytest.raises(TextToSpeechError) as caught:
        await spoken(tts.synthesize("Your appointment with Dr. Patel"))
    assert str(caught.value) == "deepgram_speak_failed:503"
    bad_key = DeepgramAuraTTS(api_key="wrong", base_url=deepgram.base_url)
    with pytest.raises(TextToSpeechError, match="401"):
        await spoken(bad_key.synthesize("hello"))
    await tts.aclose()
    await bad_key.aclose()


@pytest.mark.parametrize("stop", ["cancel", "aclose"])
async def test_stopping_aura_closes_the_http_stream(deepgram: FakeDeepgram, stop: str) -> None:
    deepgram.speak_chunk_interval_s = 0.02
    tts = aura(deepgram)
    stream = tts.synthesize(GREETING * 3)
    first = asyncio.Event()

    async def play() -> None:
        async for _ in stream:
            first.set()

    if stop == "cancel":  # barge-in while a task plays the stream
        task = asyncio.create_task(play())
        await first.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    else:  # the consumer stops iterating and closes the generator
        await anext(stream)
        await stream.aclose()
    async with asyncio.timeout(2):
        await deepgram.speak_disconnected.wait()
    assert deepgram.speak_disconnects == 1
    await tts.aclose()


# --- espeak-ng ------------------------------------------------------------------------------


async def test_espeak_speaks_mulaw_of_plausible_duration() -> None:
    audio = await spoken(EspeakTTS().synthesize(GREETING))
    seconds = mulaw_duration_ms(audio) / 1000
    words = len(GREETING.split())
    assert words / 3.5 < seconds < words / 1.5  # 160 words a minute, plus pauses
    pcm = mulaw_to_pcm(audio)
    assert frame_energy_db(pcm) > -35  # speech, not silence


async def test_espeak_reads_text_from_stdin_so_it_may_start_with_a_dash() -> None:
    audio = await spoken(EspeakTTS().synthesize("-v nonsense --help"))
    assert mulaw_duration_ms(audio) > 500


async def test_cancelling_espeak_kills_the_subprocess() -> None:
    long_text = " ".join([GREETING] * 30)
    first = asyncio.Event()

    async def play() -> None:
        async for _ in EspeakTTS().synthesize(long_text):
            first.set()

    task = asyncio.create_task(play())
    await first.wait()
    assert espeak_children()  # still synthesising the rest
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert espeak_children() == []


async def test_a_missing_espeak_binary_is_a_tts_error() -> None:
    with pytest.raises(TextToSpeechError, match="espeak_not_runnable"):
        await spoken(EspeakTTS(binary="/nonexistent/espeak-ng").synthesize("hello"))


def test_wav_parser_handles_headers_and_samples_split_anywhere() -> None:
    samples = np.arange(-500, 500, dtype=np.int16)
    header = b"RIFF" + struct.pack("<I", 0x7FFFF000) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16)
    header += b"LIST" + struct.pack("<I", 5) + b"abcde\x00"  # odd-sized chunk, padded
    header += b"data" + struct.pack("<I", 0x7FFFF000)
    stream = header + samples.tobytes()
    for step in (1, 3, 7, 44, 1000):
        parser = WavStreamParser()
        parts = [parser.feed(stream[i : i + step]) for i in range(0, len(stream), step)]
        assert np.array_equal(np.concatenate(parts), samples)
        assert parser.sample_rate == 22050
    with pytest.raises(TextToSpeechError):
        WavStreamParser().feed(b"ID3\x04" + b"\x00" * 40)


# --- fail-over -------------------------------------------------------------------------------


def test_unspoken_text_restarts_at_the_clause_in_progress() -> None:
    text = "Your appointment is on Tuesday, March fourth, at ten. Is that right?"
    assert unspoken_text(text, 0) == text
    assert unspoken_text(text, 65 * 5) == text  # still in the first clause
    assert unspoken_text(text, 65 * 35) == "March fourth, at ten. Is that right?"
    assert unspoken_text(text, 65 * 58) == "Is that right?"
    assert unspoken_text(text, 65 * 500) == "Is that right?"


async def test_fallback_takes_over_mid_utterance_and_for_the_rest_of_the_call(
    deepgram: FakeDeepgram,
) -> None:
    deepgram.fail_speak(mode="abort", after_bytes=3200)
    tts = FallbackTTS(aura(deepgram), EspeakTTS())
    audio = await spoken(tts.synthesize(GREETING))

    tone = tone_mulaw(len(GREETING) * deepgram.speak_ms_per_character)
    assert audio.startswith(tone[:3200])  # what Aura sent before it broke was played
    rest = audio[3200:]
    assert rest and not tone.startswith(rest[:1600])  # ...then espeak carried on
    assert tts.failovers == 1
    assert tts.name == "espeak"

    again = await spoken(tts.synthesize("Goodbye."))
    assert len(deepgram.speak_requests) == 1  # the primary is not tried again this call
    assert mulaw_duration_ms(again) > 300
    await tts.aclose()


async def test_fallback_speaks_everything_when_the_primary_fails_first(
    deepgram: FakeDeepgram,
) -> None:
    deepgram.fail_speak(mode="status", status=500)
    tts = FallbackTTS(aura(deepgram), EspeakTTS())
    audio = await spoken(tts.synthesize("Goodbye."))
    expected = await spoken(EspeakTTS().synthesize("Goodbye."))
    assert audio == expected
    assert tts.failovers == 1
    await tts.aclose()


async def test_a_healthy_primary_is_used(deepgram: FakeDeepgram) -> None:
    tts = FallbackTTS(aura(deepgram), EspeakTTS())
    audio = await spoken(tts.synthesize("Hello"))
    assert audio == tone_mulaw(5 * deepgram.speak_ms_per_character)
    assert tts.failovers == 0 and tts.name == "deepgram"
    await tts.aclose()


# --- prompt cache ----------------------------------------------------------------------------


async def test_prompt_cache_synthesises_each_prompt_once(deepgram: FakeDeepgram) -> None:
    prompts = [GREETING, "Sorry, I didn't catch that.", "Goodbye."]
    engine = aura(deepgram)
    cache = PromptCache()
    # Two warm-ups racing (two calls starting at once) still ask once per prompt.
    counts = await asyncio.gather(cache.warm(prompts, engine), cache.warm(prompts, engine))
    assert list(counts) == [3, 3]
    assert len(deepgram.speak_requests) == 3
    assert len(cache) == 3 and f"  {GREETING} " in cache

    tts = CachedTTS(engine, cache)
    first = await spoken(tts.synthesize(GREETING))
    second = await spoken(tts.synthesize(GREETING))
    assert first == second == cache.get(GREETING)
    assert len(deepgram.speak_requests) == 3  # served from memory
    assert tts.hits == 2

    live = await spoken(tts.synthesize("Your appointment is at 10."))
    assert live and len(deepgram.speak_requests) == 4  # a miss goes to the engine...
    assert "Your appointment is at 10." not in cache  # ...and is not stored (it may be PHI)
    await engine.aclose()


async def test_a_prompt_that_fails_to_warm_is_left_out(deepgram: FakeDeepgram) -> None:
    deepgram.fail_speak(mode="status")
    engine = aura(deepgram)
    cache = PromptCache()
    assert await cache.warm(["Hello.", "Goodbye."], engine, concurrency=1) == 1
    assert "Hello." not in cache and "Goodbye." in cache
    await engine.aclose()


def test_prompt_cache_is_bounded() -> None:
    cache = PromptCache(max_bytes=1000)
    assert cache.put("one", b"\xff" * 600)
    assert not cache.put("two", b"\xff" * 600)
    assert cache.size_bytes == 600 and "two" not in cache


# --- settings --------------------------------------------------------------------------------


async def test_factory_builds_the_configured_engines(deepgram: FakeDeepgram) -> None:
    with override_settings(TTS_PROVIDER="espeak"):
        assert isinstance(tts_from_settings(), EspeakTTS)
    cache = PromptCache()
    with override_settings(
        TTS_PROVIDER="deepgram",
        DEEPGRAM_API_KEY=deepgram.api_key,
        DEEPGRAM_BASE_URL=deepgram.base_url,
    ):
        tts = tts_from_settings(cache=cache, call_id="call-7")
    assert isinstance(tts, CachedTTS) and isinstance(tts.inner, FallbackTTS)
    assert isinstance(tts.inner.primary, DeepgramAuraTTS)
    assert isinstance(tts.inner.secondary, EspeakTTS)
    assert await spoken(tts.synthesize("Hi")) == tone_mulaw(2 * deepgram.speak_ms_per_character)
    await tts.aclose()

    # The next call's engine reuses the kept-alive connection (no new TLS handshake).
    with override_settings(
        TTS_PROVIDER="deepgram",
        DEEPGRAM_API_KEY=deepgram.api_key,
        DEEPGRAM_BASE_URL=deepgram.base_url,
    ):
        next_call = tts_from_settings(call_id="call-8")
    await spoken(next_call.synthesize("Hello"))
    await next_call.aclose()
    first, second = deepgram.speak_requests
    assert first.client_port == second.client_port


# --- circuit breaker: Aura down or slow, across calls -----------------------------------------

COOLDOWN_S = 0.3


def state(breaker: CircuitBreaker) -> CircuitState:
    """Read afresh: an attribute compared in one assert would stay narrowed for mypy."""
    return breaker.state


def breaker_gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value("provider_circuit_state", {"provider": provider})


def call_tts(fake: FakeDeepgram, breaker: CircuitBreaker, **aura_options: float) -> FallbackTTS:
    """What ``tts_from_settings`` builds for each new call: Aura, espeak-ng, the shared breaker."""
    client = http_client(**aura_options) if aura_options else None
    primary = DeepgramAuraTTS(api_key=fake.api_key, base_url=fake.base_url, client=client)
    return FallbackTTS(primary, EspeakTTS(), breaker=breaker)


async def one_call(
    fake: FakeDeepgram, breaker: CircuitBreaker, text: str, **options: float
) -> bytes:
    tts = call_tts(fake, breaker, **options)
    try:
        return await spoken(tts.synthesize(text))
    finally:
        await tts.aclose()
        if isinstance(tts.primary, DeepgramAuraTTS):
            await tts.primary._http.aclose()


async def test_aura_failing_opens_the_breaker_and_later_calls_skip_it_until_a_trial_closes_it(
    deepgram: FakeDeepgram,
) -> None:
    breaker = CircuitBreaker("test_tts_open", BreakerSettings(2, COOLDOWN_S))
    goodbye = await spoken(EspeakTTS().synthesize("Goodbye."))
    deepgram.fail_speak(2, mode="status", status=503)
    for _ in range(2):
        assert await one_call(deepgram, breaker, "Goodbye.") == goodbye
    assert state(breaker) is CircuitState.OPEN and breaker_gauge("test_tts_open") == 2

    # Open: the next call speaks with espeak-ng at once; Aura would hang if it were asked.
    deepgram.fail_speak(mode="hang")
    asked = len(deepgram.speak_requests)
    tts = call_tts(deepgram, breaker)
    started = time.monotonic()
    assert await spoken(tts.synthesize("Goodbye.")) == goodbye
    assert time.monotonic() - started < 5  # generous: Aura's read timeout is 5 s
    assert len(deepgram.speak_requests) == asked, "no request while the breaker is open"
    assert (tts.name, tts.failovers) == ("espeak", 1)
    await spoken(tts.synthesize("Goodbye."))  # and that call keeps one voice
    assert len(deepgram.speak_requests) == asked
    await tts.aclose()
    deepgram._speak_failures.clear()

    # After the cool-down one call is the trial; the others keep to espeak-ng meanwhile.
    await asyncio.sleep(COOLDOWN_S + 0.05)
    deepgram.speak_first_byte_s = 0.3
    trial = asyncio.create_task(one_call(deepgram, breaker, "Hello"))
    await deepgram.wait_for_speak_requests(asked + 1)
    assert state(breaker) is CircuitState.HALF_OPEN and breaker_gauge("test_tts_open") == 1
    assert await one_call(deepgram, breaker, "Goodbye.") == goodbye
    assert len(deepgram.speak_requests) == asked + 1
    assert await trial == tone_mulaw(5 * deepgram.speak_ms_per_character)

    assert state(breaker) is CircuitState.CLOSED and breaker_gauge("test_tts_open") == 0
    deepgram.speak_first_byte_s = 0.0
    assert await one_call(deepgram, breaker, "Hi") == tone_mulaw(2 * 60.0)
    assert len(deepgram.speak_requests) == asked + 2


async def test_a_hanging_aura_counts_once_its_read_timeout_passes(deepgram: FakeDeepgram) -> None:
    breaker = CircuitBreaker("test_tts_hang", BreakerSettings(2, 60))
    deepgram.fail_speak(2, mode="hang")
    for _ in range(2):
        audio = await one_call(deepgram, breaker, "Goodbye.", read_timeout_s=0.3)
        assert mulaw_duration_ms(audio) > 300  # espeak-ng spoke after the timeout
    assert state(breaker) is CircuitState.OPEN
    asked = len(deepgram.speak_requests)
    await one_call(deepgram, breaker, "Goodbye.", read_timeout_s=0.3)
    assert len(deepgram.speak_requests) == asked == 2


async def test_aura_cut_off_mid_utterance_counts_as_a_failure(deepgram: FakeDeepgram) -> None:
    breaker = CircuitBreaker("test_tts_abort", BreakerSettings(1, 60))
    deepgram.fail_speak(mode="abort", after_bytes=3200)
    audio = await one_call(deepgram, breaker, GREETING)
    assert audio.startswith(tone_mulaw(len(GREETING) * 60.0)[:3200])
    assert state(breaker) is CircuitState.OPEN and breaker_gauge("test_tts_abort") == 2


async def test_refused_connections_open_it_and_a_failed_trial_opens_it_again(
    deepgram: FakeDeepgram,
) -> None:
    breaker = CircuitBreaker("test_tts_refused", BreakerSettings(2, COOLDOWN_S))
    await deepgram.stop_accepting()
    for _ in range(2):
        assert await one_call(deepgram, breaker, "Goodbye.")
    assert deepgram.speak_requests == []  # refused before any request arrived
    assert state(breaker) is CircuitState.OPEN

    await asyncio.sleep(COOLDOWN_S + 0.05)
    assert await one_call(deepgram, breaker, "Goodbye.")  # the trial, still refused
    assert state(breaker) is CircuitState.OPEN and breaker_gauge("test_tts_refused") == 2

    await deepgram.start_accepting()
    assert await one_call(deepgram, breaker, "Goodbye.")  # open again: not even tried
    assert deepgram.speak_requests == []
    await asyncio.sleep(COOLDOWN_S + 0.05)
    assert await one_call(deepgram, breaker, "Hi") == tone_mulaw(2 * 60.0)
    assert state(breaker) is CircuitState.CLOSED and breaker_gauge("test_tts_refused") == 0


async def test_a_barge_in_before_the_trial_spoke_leaves_the_next_call_a_trial(
    deepgram: FakeDeepgram,
) -> None:
    breaker = CircuitBreaker("test_tts_barge", BreakerSettings(1, COOLDOWN_S))
    deepgram.fail_speak(mode="status")
    await one_call(deepgram, breaker, "Goodbye.")
    await asyncio.sleep(COOLDOWN_S + 0.05)
    deepgram.speak_first_byte_s = 0.5
    tts = call_tts(deepgram, breaker)
    stream = tts.synthesize("Hello")
    task = asyncio.create_task(spoken(stream))
    await deepgram.wait_for_speak_requests(2)
    task.cancel()  # the caller talked over the silence before any audio came
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await tts.aclose()
    assert state(breaker) is CircuitState.HALF_OPEN
    deepgram.speak_first_byte_s = 0.0
    assert await one_call(deepgram, breaker, "Hi") == tone_mulaw(2 * 60.0)
    assert state(breaker) is CircuitState.CLOSED


async def test_the_factory_shares_the_process_breaker_between_calls(deepgram: FakeDeepgram) -> None:
    reset_breakers()
    deepgram.fail_speak(mode="status")
    try:
        with override_settings(
            TTS_PROVIDER="deepgram",
            DEEPGRAM_API_KEY=deepgram.api_key,
            DEEPGRAM_BASE_URL=deepgram.base_url,
            CIRCUIT_FAILURE_THRESHOLD=1,
            CIRCUIT_COOLDOWN_SECONDS=60.0,
        ):
            first_call = tts_from_settings(call_id="call-1")
            await spoken(first_call.synthesize("Goodbye."))
            await first_call.aclose()
            assert breaker_gauge(AURA_CIRCUIT) == 2
            second_call = tts_from_settings(call_id="call-2")
            await spoken(second_call.synthesize("Goodbye."))
            await second_call.aclose()
        assert len(deepgram.speak_requests) == 1
        assert second_call.name == "espeak"
    finally:
        reset_breakers()


async def test_closing_the_fallback_stream_stops_the_engine_at_once(deepgram: FakeDeepgram) -> None:
    breaker = CircuitBreaker("test_tts_close", BreakerSettings(1, 60))
    deepgram.fail_speak(mode="status")
    tts = call_tts(deepgram, breaker)
    stream = tts.synthesize(" ".join([GREETING] * 30))  # Aura fails, espeak-ng speaks
    await anext(stream)
    assert espeak_children()
    await stream.aclose()  # the session stops iterating on barge-in and closes the stream
    assert espeak_children() == []  # killed now, not whenever the generator is collected
    await tts.aclose()
