"""Piper text-to-speech for real: the installed voice package, its digest check, streaming
sentence by sentence, barge-in, and no caller text in the logs."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import pytest

from voice.audio import frame_energy_db, mulaw_duration_ms, mulaw_to_pcm
from voice.tts import TextToSpeech, TextToSpeechError
from voice.tts import piper as piper_tts
from voice.tts.piper import VOICES, PiperTTS, PiperVoiceFiles, load_voice, synthesize_pcm

pytestmark = pytest.mark.skipif(
    not PiperTTS.available(), reason="piper-tts and requirements/voices.txt are not installed"
)

TWO_SENTENCES = "Thanks for calling Riverside Family Clinic. What is your date of birth?"


async def test_piper_speaks_mulaw_one_sentence_at_a_time() -> None:
    tts = PiperTTS()
    assert isinstance(tts, TextToSpeech)
    chunks = [chunk async for chunk in tts.synthesize(TWO_SENTENCES)]
    await tts.aclose()
    assert len(chunks) >= 2  # the first sentence went out before the second was made
    audio = b"".join(chunks)
    assert 2500 < mulaw_duration_ms(audio) < 9000
    assert frame_energy_db(mulaw_to_pcm(audio)) > -40


async def test_closing_the_stream_mid_utterance_stops_it_and_the_next_one_plays() -> None:
    tts = PiperTTS()
    async with contextlib.aclosing(tts.synthesize(TWO_SENTENCES)) as stream:
        first = await anext(stream)
    assert first
    again = b"".join([chunk async for chunk in tts.synthesize("Yes.")])
    assert 200 < mulaw_duration_ms(again) < 2000


def test_a_model_that_does_not_match_its_digest_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "swapped_piper_voice"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    model, config = load_voice_paths_of_default()
    (package / "data" / "voice.onnx").write_bytes(model.read_bytes()[:-1] + b"\0")
    (package / "data" / "voice.onnx.json").write_bytes(config.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        VOICES,
        "swapped",
        PiperVoiceFiles(
            package="swapped_piper_voice",
            model="data/voice.onnx",
            config="data/voice.onnx.json",
            sha256=VOICES["joe"].sha256,
            licence="test",
        ),
    )
    with pytest.raises(TextToSpeechError, match="^piper_voice_digest_mismatch$"):
        load_voice("swapped")
    sys.modules.pop("swapped_piper_voice", None)


def test_a_voice_package_that_is_not_installed_is_a_short_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        VOICES,
        "absent",
        PiperVoiceFiles(
            package="no_such_piper_voice_package",
            model="data/x.onnx",
            config="data/x.onnx.json",
            sha256="0" * 64,
            licence="test",
        ),
    )
    assert not PiperTTS.available("absent")
    with pytest.raises(TextToSpeechError, match="^piper_voice_not_installed$"):
        synthesize_pcm("hello", "absent")
    with pytest.raises(ValueError, match="unknown Piper voice"):
        PiperTTS(voice="nobody")


def test_the_text_and_its_phonemes_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # piper's own synthesize() logs text and phonemes at DEBUG; whatever path is used, its
    # loggers stay above that however the root logger is set.
    assert not logging.getLogger("piper.voice").isEnabledFor(logging.DEBUG)
    pcm, rate = synthesize_pcm("Is your name Maria Gonzalez?")
    assert rate == 22050 and pcm.size > rate
    assert "Gonzalez" not in caplog.text
    assert "ɡənzˈɑːlɛz" not in caplog.text


def load_voice_paths_of_default() -> tuple[Path, Path]:
    return piper_tts.voice_paths("joe")
