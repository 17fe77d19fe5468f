"""Audio-path benchmark: what one call's audio costs per 20 ms frame, and the speech engines'
real-time factors.

Run:  .venv/bin/python -m bench.audio

- the inbound path per frame (parse the Twilio message, decode mu-law, resample 8k->16k, VAD),
  in microseconds and as a share of the 20 ms the frame lasts, and what that means in calls
  per core;
- espeak-ng: time to first audio and real-time factor (synthesis time / audio time);
- PocketSphinx: real-time factor with a grammar and with the open-vocabulary language model,
  and the end-of-speech-to-transcript latency through PocketSphinxSTT;
- the event-loop stall while PocketSphinx decodes, in a thread and in a worker process: why
  the decoders live in processes.

Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
os.environ.setdefault("LOG_LEVEL", "warning")
django.setup()

import numpy as np  # noqa: E402

from tests.voice.signals import espeak_mulaw, frames_of, join, quiet, voiced  # noqa: E402
from voice import twilio_wire  # noqa: E402
from voice.audio import (  # noqa: E402
    FRAME_MS,
    STT_RATE,
    TWILIO_RATE,
    StreamResampler,
    VoiceActivityDetector,
    mulaw_duration_ms,
    mulaw_to_pcm,
    pcm_to_mulaw,
    resample,
)
from voice.stt import sphinx_worker  # noqa: E402
from voice.stt.base import Final  # noqa: E402
from voice.stt.pocketsphinx_stt import (  # noqa: E402
    PocketSphinxSTT,
    decoder_pool,
    default_workers,
    preload,
)
from voice.tts.espeak import EspeakTTS  # noqa: E402

FRAME_BUDGET_US = FRAME_MS * 1000
PROMPTS = [
    "Thank you for calling Riverside Family Clinic. This call may be recorded.",
    "Can I have your date of birth, please? For example, March third, nineteen eighty.",
    "I have an opening on Tuesday at ten thirty in the morning with Doctor Patel. "
    "Would that work for you?",
    "Sorry, I didn't catch that.",
]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def header(title: str) -> None:
    print(f"\n== {title}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def bench_frame_path(seconds: float = 120.0) -> None:
    header("inbound audio path, per 20 ms frame")
    signal = join(*[join(quiet(700, seed=i), voiced(900)) for i in range(int(seconds / 1.6))])
    frames = frames_of(signal)
    messages = [
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": str(n + 3),
                "streamSid": "MZ" + "0" * 32,
                "media": {
                    "track": "inbound",
                    "chunk": str(n + 1),
                    "timestamp": str(n * 20),
                    "payload": base64.b64encode(frame).decode(),
                },
            }
        )
        for n, frame in enumerate(frames)
    ]
    resampler = StreamResampler(TWILIO_RATE, STT_RATE)
    vad = VoiceActivityDetector()
    stages: dict[str, list[float]] = {"parse": [], "decode": [], "resample": [], "vad": []}
    totals: list[float] = []
    for message in messages:
        t0 = time.perf_counter()
        event = twilio_wire.parse(message)
        t1 = time.perf_counter()
        assert isinstance(event, twilio_wire.Media)
        pcm8 = mulaw_to_pcm(event.payload)
        t2 = time.perf_counter()
        resampler.process(pcm8)
        t3 = time.perf_counter()
        vad.feed(pcm8)
        t4 = time.perf_counter()
        for name, start, end in (
            ("parse", t0, t1),
            ("decode", t1, t2),
            ("resample", t2, t3),
            ("vad", t3, t4),
        ):
            stages[name].append((end - start) * 1e6)
        totals.append((t4 - t0) * 1e6)
    for name, values in stages.items():
        print(f"  {name:<28} {statistics.mean(values):7.1f} us mean")
    mean, p99 = statistics.mean(totals), percentile(totals, 0.99)
    core = mean - statistics.mean(stages["parse"])
    print(
        f"  decode + resample + VAD      {core:7.1f} us mean = {core / FRAME_BUDGET_US:.2%} of RT"
    )
    print(f"  whole path incl. JSON parse  {mean:7.1f} us mean, {p99:.1f} us p99")
    print(f"  = {mean / FRAME_BUDGET_US:.2%} of real time per call")
    print(f"  -> about {int(FRAME_BUDGET_US / mean)} calls' inbound audio per core")

    outbound = [pcm_to_mulaw(mulaw_to_pcm(frame)) for frame in frames[:2000]]
    t0 = time.perf_counter()
    for frame in outbound:
        twilio_wire.media_message("MZ" + "0" * 32, frame)
    build = (time.perf_counter() - t0) / len(outbound) * 1e6
    print(f"  outbound media message build {build:7.1f} us per frame")

    one_second = np.asarray(signal[:TWILIO_RATE])
    t0 = time.perf_counter()
    for _ in range(50):
        resample(one_second, TWILIO_RATE, STT_RATE)
    per_second = (time.perf_counter() - t0) / 50 * 1e6
    print(f"  one-shot resample of 1 s     {per_second:7.1f} us")


async def bench_espeak() -> None:
    header("espeak-ng (subprocess, 22050 Hz WAV -> 8 kHz mu-law)")
    tts = EspeakTTS()
    firsts, factors = [], []
    for text in PROMPTS:
        started = time.perf_counter()
        first = None
        audio = bytearray()
        async for chunk in tts.synthesize(text):
            first = first if first is not None else time.perf_counter() - started
            audio.extend(chunk)
        elapsed = time.perf_counter() - started
        firsts.append((first or 0.0) * 1000)
        factors.append(elapsed / (mulaw_duration_ms(len(audio)) / 1000))
        print(
            f"  {len(text):3d} chars: {mulaw_duration_ms(len(audio)) / 1000:5.2f} s audio, "
            f"first audio {firsts[-1]:5.0f} ms, RTF {factors[-1]:.3f}"
        )
    first_ms = statistics.mean(firsts)
    print(f"  mean RTF {statistics.mean(factors):.3f}, mean first audio {first_ms:.0f} ms")


async def speech_pcm16(texts: list[str]) -> list[bytes]:
    clips = []
    for text in texts:
        pcm8 = join(quiet(300), mulaw_to_pcm(await espeak_mulaw(text)), quiet(50))
        clips.append(resample(pcm8, TWILIO_RATE, STT_RATE).tobytes())
    return clips


async def bench_pocketsphinx() -> None:
    header("PocketSphinx decoding (in this process, one core)")
    sphinx_worker.warm()
    cases = {
        "digit grammar": (await speech_pcm16(["four two seven", "one two three four"]), DIGITS),
        "yes/no grammar": (await speech_pcm16(["yes", "no"]), ["yes", "no"]),
        "language model": (await speech_pcm16(PROMPTS[:2]), []),
    }
    for name, (clips, hints) in cases.items():
        audio_s = sum(len(clip) for clip in clips) / (2 * STT_RATE)
        started = time.perf_counter()
        for clip in clips:
            sphinx_worker.decode(clip, tuple(hints))
        elapsed = time.perf_counter() - started
        print(f"  {name:<15} {audio_s:5.2f} s audio, RTF {elapsed / audio_s:.3f}")

    header("PocketSphinxSTT end of speech -> Final (worker process, real-time pacing)")
    await preload(1)
    for name, text, hints in (
        ("yes/no grammar", "yes", ["yes", "no"]),
        ("digit grammar", "one two three four", DIGITS),
        ("language model", "I would like to book an appointment", []),
    ):
        stt = PocketSphinxSTT()
        await stt.start(hints)
        frames = frames_of(join(quiet(300), mulaw_to_pcm(await espeak_mulaw(text)), quiet(900)))
        for frame in frames:
            await stt.send(frame)
            await asyncio.sleep(FRAME_MS / 1000)
        finals: list[Final] = []
        await stt.close()
        async for event in stt.events():
            if isinstance(event, Final):
                finals.append(event)
        latency = finals[0].stt_latency_ms if finals else float("nan")
        print(f"  {name:<15} Final after {latency:6.0f} ms ({len(finals)} final)")


async def loop_stall(run: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """Run ``run`` while a ticker measures the longest gap between event-loop turns."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await run()
    elapsed = time.perf_counter() - started
    done.set()
    await task
    return elapsed, max(gaps)


async def bench_event_loop_stall() -> None:
    (clip,) = await speech_pcm16([PROMPTS[0]])
    seconds = len(clip) / (2 * STT_RATE)
    header(f"event-loop stall while decoding open vocabulary (3 x {seconds:.1f} s of speech)")
    loop = asyncio.get_running_loop()
    pool = decoder_pool()
    await loop.run_in_executor(pool, sphinx_worker.warm)

    async def in_thread() -> None:
        for _ in range(3):
            await asyncio.to_thread(sphinx_worker.decode, clip, ())

    async def in_process() -> None:
        for _ in range(3):
            await loop.run_in_executor(pool, sphinx_worker.decode, clip, ())

    for name, run in (("thread (asyncio.to_thread)", in_thread), ("worker process", in_process)):
        elapsed, stall = await loop_stall(run)
        print(f"  {name:<27} decode {elapsed:5.2f} s, longest loop stall {stall * 1000:6.0f} ms")
    pid = await loop.run_in_executor(pool, sphinx_worker.warm)
    try:
        status = await asyncio.to_thread(Path(f"/proc/{pid}/status").read_text)
        rss = next(line for line in status.splitlines() if line.startswith("VmRSS"))
        print(f"  one decoder process: {rss.split(':', 1)[1].strip()} resident")
    except (OSError, StopIteration):
        pass


async def main() -> None:
    print(f"cores: {os.cpu_count()}, decoding processes: {default_workers()}")
    bench_frame_path()
    await bench_espeak()
    await bench_pocketsphinx()
    await bench_event_loop_stall()


if __name__ == "__main__":  # the decoding processes are spawned: they must not rerun this
    asyncio.run(main())
