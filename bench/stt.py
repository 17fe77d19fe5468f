"""The offline recognisers on our own recordings: which one hears a clinic's callers.

``python -m bench.stt`` (``--quick`` for a third of the utterances; ``--engines``,
``--voices`` to choose). 42 clinic utterances (names, spelled names, dates of birth, phone
digits, member IDs, carriers, reasons, addresses, weekdays and times, yes/no) are spoken by
the simulator's caller voices (:data:`voice.simulator.voices.CALLER_VOICES`: espeak-ng
variants and the Piper neural voice, through the telephone channel, 300–3400 Hz, 8 kHz
mu-law) and by the agent's own espeak-ng voice. Each clip is what the recogniser gets on a
call: 300 ms of line before the speech (the preroll) and the 700 ms of quiet that ends a
turn after it. Each engine gets the hints of the question the utterance answers
(:func:`intake.understanding.hints_for`), as on a call: Whisper as a prompt, PocketSphinx as
a grammar (or none: open vocabulary).

Printed per engine, each engine in its own process (so its memory is its own):
- WER: word error rate after normalisation (``bench.spoken_report.canonical``: lower case,
  no punctuation, numbers as digits, spelled letters joined), espeak-ng voices / Piper;
- key: the important item of the utterance (the name, the date, the number) came through
  exactly;
- real-time factor (decode time / audio time) with ``STT_WHISPER_THREADS`` threads, CPU
  seconds per second of audio, peak RSS;
- CPU seconds per call-minute and calls one core carries: an intake call-minute holds about
  six caller turns (the scenario files: 17 turns in about three minutes), and Whisper's cost
  is per turn (its encoder always reads a 30 s window), so CPU per call-minute is six times
  the mean CPU per utterance.
Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import django
import numpy as np

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
os.environ.setdefault("LOG_LEVEL", "warning")
django.setup()

from django.conf import settings  # noqa: E402

from bench.spoken_report import canonical, word_errors  # noqa: E402
from intake.understanding import hints_for  # noqa: E402
from intake.understanding.types import Context, Expectation  # noqa: E402
from voice.audio import PcmArray, mulaw_to_pcm  # noqa: E402
from voice.simulator.voices import CALLER_VOICES, caller_frames  # noqa: E402

E = Expectation
UTTERANCES: list[tuple[str, Expectation, str]] = [
    # (what the caller says, the question it answers, the key item that must come through)
    ("My name is Maria Gonzalez", E.NAME, "maria gonzalez"),
    ("Jane Smith", E.NAME, "jane smith"),
    ("Robert Johnson", E.NAME, "robert johnson"),
    ("It's David Okafor", E.NAME, "david okafor"),
    ("S M I T H", E.SPELLING, "smith"),
    ("G O N Z A L E Z", E.SPELLING, "gonzalez"),
    ("P A R K", E.SPELLING, "park"),
    ("March fourth, nineteen eighty", E.DATE_OF_BIRTH, "march 4 1980"),
    ("march twelfth nineteen eighty four", E.DATE_OF_BIRTH, "march 12 1984"),
    ("November thirtieth, nineteen fifty eight", E.DATE_OF_BIRTH, "november 30 1958"),
    ("July second, two thousand one", E.DATE_OF_BIRTH, "july 2 2001"),
    ("six one seven, five five five, zero one four two", E.PHONE, "6175550142"),
    ("eight five seven, two two three, nine eight one zero", E.PHONE, "8572239810"),
    ("X J 9 8 7 6 5 4", E.MEMBER_ID, "xj987654"),
    ("my member ID is W Z 4 4 1 2 0 9", E.MEMBER_ID, "wz441209"),
    ("1 E G 4 T E 5 M K 7 2", E.MEMBER_ID, "1eg4te5mk72"),
    ("I have Aetna", E.CARRIER, "aetna"),
    ("Blue Cross Blue Shield", E.CARRIER, "blue cross blue shield"),
    ("Cigna", E.CARRIER, "cigna"),
    ("I'm on Medicare", E.CARRIER, "medicare"),
    ("UnitedHealthcare", E.CARRIER, "unitedhealthcare"),
    ("I've had a sore throat and a cough for three days", E.REASON, "sore throat"),
    ("a rash on my arm", E.REASON, "rash"),
    ("I need a checkup for my knee", E.REASON, "knee"),
    ("a follow up for my blood pressure", E.REASON, "blood pressure"),
    ("12 Main Street, Boston", E.ADDRESS, "12 main street"),
    ("forty five Oak Avenue, apartment three", E.ADDRESS, "45 oak avenue"),
    ("Tuesday morning", E.DAY, "tuesday morning"),
    ("Friday afternoon please", E.DAY, "friday afternoon"),
    ("next Monday", E.DAY, "monday"),
    ("the first one", E.SLOT_CHOICE, "first"),
    ("the second one please", E.SLOT_CHOICE, "second"),
    ("anyone is fine", E.PROVIDER, "anyone"),
    ("Doctor Patel", E.PROVIDER, "patel"),
    ("yes", E.YES_NO, "yes"),
    ("no", E.YES_NO, "no"),
    ("yes that's right", E.YES_NO, "yes"),
    ("no that's all thank you", E.YES_NO, "no"),
    ("I'd like to book an appointment", E.MENU, "book"),
    ("I need to cancel my appointment", E.MENU, "cancel"),
    ("this is my first time", E.PATIENT_STATUS, "first time"),
    ("jane dot smith at example dot com", E.EMAIL, "jane smith example com"),
]
ENGINES = ("whisper-base", "whisper-tiny.en", "pocketsphinx-grammar", "pocketsphinx-open")
VOICES = ("espeak", *CALLER_VOICES)
TURNS_PER_CALL_MINUTE = 6.0
LEAD_MS, TAIL_MS = 300, 700
LOAD_S = [float("nan")]


def context() -> Context:
    return Context(
        today=dt.date(2026, 12, 1),
        accepted_carriers=list(settings.CLINIC_ACCEPTED_CARRIERS),
        provider_names=["Dr. Amara Patel", "Dr. Grace Chen", "Dr. Luis Moreno", "Jordan Reyes"],
    )


def line_noise(ms: int, seed: int) -> PcmArray:
    count = ms * 8
    return np.random.default_rng(seed).normal(0.0, 16.0, count).astype(np.int16)


async def make_clips(utterances: list[int], voices: list[str], path: Path) -> None:
    """Synthesise every clip once (8 kHz PCM) into ``path`` for the engines' processes."""
    clips: dict[str, PcmArray] = {}
    for voice in voices:
        for index in utterances:
            text = UTTERANCES[index][0]
            frames = await caller_frames(text, voice)
            speech = mulaw_to_pcm(b"".join(frames))
            clips[f"{voice}|{index}"] = np.concatenate(
                [line_noise(LEAD_MS, index), speech, line_noise(TAIL_MS, index + 1)]
            ).astype(np.int16)
    np.savez(path, **clips)  # type: ignore[arg-type]  # numpy types allow_pickle here


def decoder_for(engine: str) -> Any:
    """A function (pcm8k, hints) -> text for ``engine``, loaded."""
    if engine.startswith("whisper-"):
        from voice.stt.whisper_decode import WhisperEngine, whisper_prompt

        whisper = WhisperEngine(
            model=engine.removeprefix("whisper-"),
            cache_dir=Path(settings.STT_MODEL_DIR),
            threads=settings.STT_WHISPER_THREADS,
        )
        started = time.perf_counter()
        whisper.warm_up()  # what preload() does: check, load, one warm-up decode
        LOAD_S[0] = time.perf_counter() - started

        def decode_whisper(pcm8k: PcmArray, hints: list[str]) -> str:
            return whisper.transcribe_blocking(pcm8k, whisper_prompt(hints)).text

        return decode_whisper
    from voice.audio import resample
    from voice.stt.sphinx_worker import WorkerDecoder, new_decoder

    sphinx = WorkerDecoder(new_decoder())
    grammar = engine == "pocketsphinx-grammar"

    def decode_sphinx(pcm8k: PcmArray, hints: list[str]) -> str:
        pcm16 = resample(pcm8k, 8000, 16000).tobytes()
        return sphinx.decode(pcm16, tuple(hints) if grammar else ())[0]

    return decode_sphinx


def child(engine: str, clips_path: Path, out: Path) -> None:
    decode = decoder_for(engine)
    clips = np.load(clips_path)
    ctx = context()
    results = []
    for key in clips.files:
        voice, index = key.split("|")
        text, expect, _ = UTTERANCES[int(index)]
        pcm = clips[key]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        heard = decode(pcm, hints_for(expect, ctx))
        results.append(
            {
                "voice": voice,
                "index": int(index),
                "heard": heard,
                "audio_s": pcm.size / 8000,
                "wall_s": time.perf_counter() - wall0,
                "cpu_s": time.process_time() - cpu0,
            }
        )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(
        json.dumps({"engine": engine, "rss_mb": rss_mb, "load_s": LOAD_S[0], "results": results})
    )


async def concurrent_calls(
    model: str, workers: int, threads: int, calls: int, clips_path: Path
) -> dict[str, Any]:
    """``calls`` callers on one engine, each answering turn after turn as on a call (a turn's
    clip, then 3 s for the agent's reply and the next answer): the end-of-speech to
    transcript latency each one sees, and the worst event-loop stall meanwhile."""
    from voice.stt.whisper_decode import WhisperEngine

    engine = WhisperEngine(
        model=model, cache_dir=Path(settings.STT_MODEL_DIR), threads=threads, workers=workers
    )
    engine.warm_up()
    clips = np.load(clips_path)
    keys = list(clips.files)
    latencies: list[float] = []
    worst_lag = 0.0
    stop = asyncio.Event()

    async def watch_loop() -> None:
        nonlocal worst_lag
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            worst_lag = max(worst_lag, time.perf_counter() - before - 0.01)

    async def caller(number: int) -> None:
        await asyncio.sleep(number * 0.7)  # calls do not start in step
        for turn in range(6):
            clip = clips[keys[(number * 7 + turn) % len(keys)]]
            await asyncio.sleep(clip.size / 8000)  # the caller speaks
            started = time.perf_counter()
            await engine.transcribe(clip, None)
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(3.0)  # the agent answers

    watcher = asyncio.create_task(watch_loop())
    cpu0 = time.process_time()
    await asyncio.gather(*(caller(n) for n in range(calls)))
    stop.set()
    await watcher
    ordered = sorted(latencies)
    return {
        "config": f"{model} {calls} calls, {workers} worker(s) x {threads} thread(s)",
        "p50": ordered[len(ordered) // 2],
        "p90": ordered[int(len(ordered) * 0.9)],
        "max": ordered[-1],
        "loop_lag": worst_lag,
        "cpu_s": time.process_time() - cpu0,
    }


def key_heard(key: str, heard: str) -> bool:
    want, got = canonical(key), canonical(heard)
    return any(got[i : i + len(want)] == want for i in range(len(got) - len(want) + 1))


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    results = data["results"]

    def wer(rows: list[dict[str, Any]]) -> float:
        edits = words = 0
        for row in rows:
            e, w = word_errors(UTTERANCES[row["index"]][0], row["heard"])
            edits, words = edits + e, words + w
        return edits / words if words else float("nan")

    espeak = [r for r in results if not r["voice"].startswith("piper")]
    piper = [r for r in results if r["voice"].startswith("piper")]
    keys = [key_heard(UTTERANCES[r["index"]][2], r["heard"]) for r in results]
    audio = sum(r["audio_s"] for r in results)
    cpu_per_utterance = statistics.fmean(r["cpu_s"] for r in results)
    cpu_per_minute = cpu_per_utterance * TURNS_PER_CALL_MINUTE
    return {
        "engine": data["engine"],
        "wer_espeak": wer(espeak),
        "wer_piper": wer(piper) if piper else float("nan"),
        "key": sum(keys) / len(keys),
        "rtf": sum(r["wall_s"] for r in results) / audio,
        "cpu_per_audio_s": sum(r["cpu_s"] for r in results) / audio,
        "cpu_per_call_minute": cpu_per_minute,
        "calls_per_core": 60.0 / cpu_per_minute if cpu_per_minute else float("inf"),
        "rss_mb": data["rss_mb"],
        "load_s": data.get("load_s", float("nan")),
    }


def by_category(data: dict[str, Any]) -> dict[str, float]:
    hits: dict[str, list[bool]] = {}
    for row in data["results"]:
        text, expect, key = UTTERANCES[row["index"]]
        hits.setdefault(expect.value, []).append(key_heard(key, row["heard"]))
    return {name: sum(values) / len(values) for name, values in sorted(hits.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--voices", default=",".join(VOICES))
    parser.add_argument("--quick", action="store_true", help="every third utterance")
    parser.add_argument("--examples", type=int, default=6, help="misheard examples per engine")
    parser.add_argument(
        "--concurrency",
        default="base:1:2,base:2:1,tiny.en:1:2",
        help="model:workers:threads configurations for four concurrent calls ('' to skip)",
    )
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument(
        "--child", nargs=3, metavar=("ENGINE", "CLIPS", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        engine, clips_path, out = args.child
        if engine.startswith("concurrency:"):
            _, model, workers, threads, calls = engine.split(":")
            result = asyncio.run(
                concurrent_calls(model, int(workers), int(threads), int(calls), Path(clips_path))
            )
            Path(out).write_text(json.dumps(result))
        else:
            child(engine, Path(clips_path), Path(out))
        return
    engines = [e for e in args.engines.split(",") if e]
    voices = [v for v in args.voices.split(",") if v]
    indices = list(range(0, len(UTTERANCES), 3 if args.quick else 1))
    with tempfile.TemporaryDirectory(prefix="bench-stt-") as tmp:
        clips = Path(tmp) / "clips.npz"
        started = time.perf_counter()
        asyncio.run(make_clips(indices, voices, clips))
        print(
            f"{len(indices)} utterances x {len(voices)} voices ({', '.join(voices)}) = "
            f"{len(indices) * len(voices)} clips, synthesised in "
            f"{time.perf_counter() - started:.0f} s; STT_WHISPER_THREADS="
            f"{settings.STT_WHISPER_THREADS}, {os.cpu_count()} cores",
            flush=True,
        )
        datas = []
        for engine in engines:
            out = Path(tmp) / f"{engine}.json"
            subprocess.run(
                [sys.executable, "-m", "bench.stt", "--child", engine, str(clips), str(out)],
                check=True,
                timeout=3600,
            )
            datas.append(json.loads(out.read_text()))
            print(f"  {engine}: done", flush=True)
        concurrency = []
        for config in [c for c in args.concurrency.split(",") if c]:
            out = Path(tmp) / "concurrency.json"
            subprocess.run(
                [
                    *(sys.executable, "-m", "bench.stt", "--child"),
                    f"concurrency:{config}:{args.calls}",
                    str(clips),
                    str(out),
                ],
                check=True,
                timeout=3600,
            )
            concurrency.append(json.loads(out.read_text()))
    print()
    print(
        f"{'engine':22} {'WER espeak':>10} {'WER piper':>9} {'key':>5} {'RTF':>6} "
        f"{'CPU/audio s':>11} {'CPU s/call-min':>14} {'calls/core':>10} {'RSS MB':>7} "
        f"{'preload s':>9}"
    )
    for data in datas:
        s = summarise(data)
        print(
            f"{s['engine']:22} {s['wer_espeak']:10.0%} {s['wer_piper']:9.0%} {s['key']:5.0%} "
            f"{s['rtf']:6.3f} {s['cpu_per_audio_s']:11.3f} {s['cpu_per_call_minute']:14.2f} "
            f"{s['calls_per_core']:10.1f} {s['rss_mb']:7.0f} {s['load_s']:9.1f}"
        )
    categories = list(by_category(datas[0])) if datas else []
    if categories:
        print("\nkey items heard, by question:")
        print(f"{'engine':22} " + " ".join(f"{c[:9]:>9}" for c in categories))
    for data in datas:
        shares = by_category(data)
        print(f"{data['engine']:22} " + " ".join(f"{shares[c]:9.0%}" for c in categories))
    if concurrency:
        print("\nconcurrent calls on one engine: end of speech -> transcript, event-loop stall")
        for row in concurrency:
            print(
                f"  {row['config']:42} p50 {row['p50'] * 1000:5.0f} ms  p90 "
                f"{row['p90'] * 1000:5.0f} ms  max {row['max'] * 1000:5.0f} ms  "
                f"worst loop stall {row['loop_lag'] * 1000:4.0f} ms  CPU {row['cpu_s']:.0f} s"
            )
    for data in datas:
        wrong = [
            r for r in data["results"] if not key_heard(UTTERANCES[r["index"]][2], r["heard"])
        ][: args.examples]
        print(f"\n{data['engine']}: misheard (first {len(wrong)})")
        for row in wrong:
            print(f"  [{row['voice']}] {UTTERANCES[row['index']][0]!r} -> {row['heard']!r}")


if __name__ == "__main__":
    main()
