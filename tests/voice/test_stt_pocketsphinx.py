"""PocketSphinx STT (``STT_PROVIDER=pocketsphinx``, opt-in) on real synthetic speech: espeak-ng
says it, it travels as 8 kHz mu-law in 20 ms frames like a phone call, and the recogniser (in
its decoding processes) hears it. Its decoding processes die with the server."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import override_settings

from tests.voice.conftest import collecting
from tests.voice.signals import click, espeak_mulaw, feed, frames_of, join, quiet
from voice.audio import mulaw_to_pcm
from voice.stt import stt_from_settings
from voice.stt.base import Final
from voice.stt.pocketsphinx_stt import PocketSphinxSTT
from voice.stt.sphinx_worker import build_jsgf, grammar_phrases

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


async def call_audio(*phrases: str) -> list[bytes]:
    """The caller says each phrase, pausing a second after it."""
    parts = [quiet(400)]
    for index, phrase in enumerate(phrases):
        parts += [mulaw_to_pcm(await espeak_mulaw(phrase)), quiet(1000, seed=index)]
    return frames_of(join(*parts))


async def transcribe(frames: list[bytes], hints: list[str]) -> tuple[list[str], list[str]]:
    stt = PocketSphinxSTT()
    await stt.start(hints)
    async with collecting(stt) as got:
        await feed(stt, frames)
        await stt.close()
        await got.finished(limit_s=30)
    assert got.error is None
    return [e.text for e in got.events if isinstance(e, Final)], got.kinds()


async def test_yes_and_no_with_a_yes_no_grammar() -> None:
    finals, kinds = await transcribe(await call_audio("yes", "no"), ["Yes", "no"])
    assert finals == ["yes", "no"]
    # Fed faster than real time, the second SpeechStarted may overtake the first Final.
    assert [kind for kind in kinds if kind != "SpeechStarted"] == ["Final", "UtteranceEnd"] * 2
    assert kinds.count("SpeechStarted") == 2 and kinds[0] == "SpeechStarted"


async def test_digits_with_a_digit_grammar() -> None:
    phrases = ["zero", "three", "four", "one two three four", "nine one one"]
    finals, _ = await transcribe(await call_audio(*phrases), DIGITS)
    assert finals == phrases


async def test_hints_change_between_answers() -> None:
    stt = PocketSphinxSTT()
    await stt.start(["yes", "no"])
    async with collecting(stt) as got:
        await feed(stt, await call_audio("yes"))
        await got.wait_for(1, limit_s=10)
        await stt.set_hints(["1", "2", "3", "4"])  # digits as the conversation may give them
        await feed(stt, await call_audio("four"))
        await stt.close()
        await got.finished(limit_s=30)
    assert [e.text for e in got.events if isinstance(e, Final)] == ["yes", "four"]


async def test_open_vocabulary_produces_a_transcript() -> None:
    (final,), kinds = await transcribe(await call_audio("I would like to book an appointment"), [])
    assert kinds == ["SpeechStarted", "Final", "UtteranceEnd"]
    heard = set(final.split())
    assert len(heard & {"i", "would", "like", "to", "book", "an", "appointment"}) >= 4


async def test_close_decodes_an_utterance_cut_off_by_the_hang_up() -> None:
    frames = frames_of(join(quiet(400), mulaw_to_pcm(await espeak_mulaw("no"))))
    finals, _ = await transcribe(frames, ["yes", "no"])
    assert finals == ["no"]


async def test_silence_and_a_click_produce_no_events() -> None:
    frames = frames_of(join(quiet(1500), click(40), quiet(1500)))
    finals, kinds = await transcribe(frames, ["yes", "no"])
    assert kinds == []


async def test_final_latency_and_confidence_are_reported() -> None:
    stt = PocketSphinxSTT()
    await stt.start(["yes", "no"])
    async with collecting(stt) as got:
        await feed(stt, await call_audio("no"))
        await stt.close()
        await got.finished(limit_s=30)
    (final,) = [e for e in got.events if isinstance(e, Final)]
    assert final.stt_latency_ms > 0
    assert 0.0 <= final.confidence <= 1.0


def test_grammar_phrases_keep_hints_whole_and_dictionary_words_only() -> None:
    dictionary = {"yes", "no", "blue", "cross", "four", "o'brien", "doctor", "patel"}

    def lookup(word: str) -> str | None:
        return "X" if word in dictionary else None

    hints = ["Yes", "NO", "Blue Cross", "4", "O'Brien,", "Zyxwv", "yes", "Doctor Amara Patel"]
    assert grammar_phrases(hints, lookup) == [
        "yes",
        "no",
        "blue cross",
        "four",
        "o'brien",
        "doctor",
        "patel",
    ]
    assert grammar_phrases(["Zyxwv"], lookup) == []


def test_jsgf_is_a_loop_of_the_words() -> None:
    grammar = build_jsgf(["yes", "no"])
    assert "<word> = (yes | no);" in grammar
    assert "public <utterance> = <word>+;" in grammar
    with pytest.raises(ValueError):
        build_jsgf([])


def test_the_factory_builds_pocketsphinx_when_chosen() -> None:
    with override_settings(STT_PROVIDER="pocketsphinx"):
        assert isinstance(stt_from_settings(), PocketSphinxSTT)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}


_SERVER = """
import sys, time
from voice.stt import pocketsphinx_stt, sphinx_worker
pool = pocketsphinx_stt.decoder_pool()
print(pool.submit(sphinx_worker.warm).result(timeout=60), flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_decoding_processes_die_with_a_server_killed_by_sigkill() -> None:
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 60)  # the worker has loaded
        assert ready, "the server did not start a decoding process in 60 s"
        worker = int(server.stdout.readline())
        assert worker != server.pid and _alive(worker)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the decoding process outlived its server"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
