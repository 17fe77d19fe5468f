"""Provider-outage benchmark: how long a caller waits for the fallback while a hosted provider
hangs, call after call, with the circuit breakers in place.

Run:  .venv/bin/python -m bench.provider_outage [--calls 6] [--threshold 3]

Each hosted provider in turn is made to hang (the loopback fakes of tests/fakes/ accept the
connection and never answer), with the production clients' own timeouts: Aura's read timeout
(voice.tts.deepgram_aura.READ_TIMEOUT_S), the OpenAI turn budget (NLU_TIMEOUT_SECONDS' default,
3 s) and Deepgram's start budget (DeepgramSttOptions.start_timeout_s). Sequential calls then do
what a call does first with that provider through the real engines and one shared breaker
(threshold as given, cool-down 30 s):

- TTS: time to the first audio byte of an utterance (espeak-ng once Aura is given up on);
- understanding: time to understand one turn (the rules once OpenAI is given up on);
- STT: time for the recogniser to start (the offline one once Deepgram is given up on).

The first ``threshold`` calls wait out the timeout; the calls after the breaker opens do not.
Figures are printed, never asserted. No Django setup, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from clinic.circuit import BreakerSettings, CircuitBreaker
from intake.understanding import Expectation
from intake.understanding.llm import OpenAIEngine
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.openai_server import FakeOpenAI
from tests.intake.understanding.corpus import load_corpus
from voice.stt.deepgram import DeepgramSTT
from voice.stt.fallback import StartFallbackSTT
from voice.stt.pocketsphinx_stt import PocketSphinxSTT
from voice.tts.deepgram_aura import READ_TIMEOUT_S, DeepgramAuraTTS
from voice.tts.espeak import EspeakTTS
from voice.tts.fallback import FallbackTTS

NLU_TIMEOUT_S = 3.0
COOLDOWN_S = 30.0

Call = Callable[[CircuitBreaker], Awaitable[str]]


async def tts_call(fake: FakeDeepgram, breaker: CircuitBreaker) -> str:
    fake.fail_speak(mode="hang")
    tts = FallbackTTS(
        DeepgramAuraTTS(api_key=fake.api_key, base_url=fake.base_url), EspeakTTS(), breaker=breaker
    )
    stream = tts.synthesize("Thank you for calling. How can I help you today?")
    await anext(stream)
    await stream.aclose()
    await tts.aclose()
    return tts.name


async def nlu_call(fake: FakeOpenAI, breaker: CircuitBreaker) -> str:
    context, _ = load_corpus()
    engine = OpenAIEngine(
        api_key="sk-bench",
        model="gpt-4o-mini",
        base_url=fake.base_url,
        timeout=NLU_TIMEOUT_S,
        breaker=breaker,
    )
    try:
        understood = await engine.understand(
            "march third nineteen eighty four", Expectation.DATE_OF_BIRTH, context
        )
    finally:
        await engine.aclose()
    return understood.engine


async def stt_call(fake: FakeDeepgram, breaker: CircuitBreaker) -> str:
    attempt = breaker.attempt()
    if attempt is None:
        stt: StartFallbackSTT | PocketSphinxSTT = PocketSphinxSTT()
    else:
        primary = DeepgramSTT(api_key=fake.api_key, base_url=fake.base_url, attempt=attempt)
        stt = StartFallbackSTT(primary, PocketSphinxSTT)
    await stt.start(["yes", "no"])
    engine = type(stt.active if isinstance(stt, StartFallbackSTT) else stt).__name__
    await stt.close()
    return engine


async def run(label: str, call: Call, calls: int, threshold: int) -> None:
    breaker = CircuitBreaker(f"bench_{label}", BreakerSettings(threshold, COOLDOWN_S))
    waits: list[float] = []
    print(f"{label}:")
    for number in range(1, calls + 1):
        started = time.perf_counter()
        engine = await call(breaker)
        waits.append(time.perf_counter() - started)
        print(f"  call {number}: {waits[-1]:6.3f} s  via {engine:<16} breaker {breaker.state.name}")
    before, after = waits[:threshold], waits[threshold:]
    if after:
        print(
            f"  while closed: mean {sum(before) / len(before):.3f} s; "
            f"once open: mean {sum(after) / len(after):.3f} s, max {max(after):.3f} s"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--threshold", type=int, default=3)
    options = parser.parse_args()
    print(
        f"hung provider, timeouts: Aura read {READ_TIMEOUT_S} s, OpenAI turn {NLU_TIMEOUT_S} s, "
        f"Deepgram start {DeepgramSTT(api_key='x').options.start_timeout_s} s; "
        f"breaker threshold {options.threshold}, cool-down {COOLDOWN_S} s\n"
    )
    # The offline recogniser's first start loads its model; do it before timing anything.
    warm = PocketSphinxSTT()
    await warm.start()
    await warm.close()
    async with FakeDeepgram() as deepgram, FakeOpenAI() as openai_fake:
        openai_fake.delay = 60.0
        deepgram.hang_handshakes = True
        await run("tts", lambda b: tts_call(deepgram, b), options.calls, options.threshold)
        await run(
            "understanding", lambda b: nlu_call(openai_fake, b), options.calls, options.threshold
        )
        await run("stt", lambda b: stt_call(deepgram, b), options.calls, options.threshold)


if __name__ == "__main__":
    asyncio.run(main())
