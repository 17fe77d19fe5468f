"""Offline text-to-speech with espeak-ng (the embedded default).

``espeak-ng --stdout`` writes a WAV (22050 Hz, 16-bit mono) as it synthesises, sentence by
sentence. The header is parsed, the PCM that follows is resampled to 8 kHz and encoded to
mu-law as it arrives, so the first audio is ready after the first sentence, not the last.

The text goes to espeak-ng on stdin, never on the command line: a command line is visible to
every user of the machine (``ps``), and prompts can carry a caller's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
from collections.abc import AsyncGenerator

import numpy as np

from clinic.logs import get_logger
from voice.audio import TWILIO_RATE, PcmArray, StreamResampler, pcm_to_mulaw
from voice.tts.base import TextToSpeechError

log = get_logger(__name__)

_READ_BYTES = 4096


class WavStreamParser:
    """Parse a RIFF/WAVE stream of unknown length, chunk by chunk.

    espeak-ng cannot seek back on a pipe, so its header gives a placeholder data size; the
    PCM simply runs until end of file.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.sample_rate: int | None = None
        self._in_data = False
        self._odd_byte = b""

    def feed(self, chunk: bytes) -> PcmArray:
        """Add bytes from the stream; return the 16-bit samples they complete."""
        if self._in_data:
            return self._samples(chunk)
        self._buffer.extend(chunk)
        return self._parse_header()

    def _parse_header(self) -> PcmArray:
        empty = np.zeros(0, dtype=np.int16)
        if len(self._buffer) < 12:
            return empty
        if self._buffer[:4] != b"RIFF" or self._buffer[8:12] != b"WAVE":
            raise TextToSpeechError("espeak_bad_wav")
        position = 12
        while len(self._buffer) >= position + 8:
            chunk_id = bytes(self._buffer[position : position + 4])
            (size,) = struct.unpack_from("<I", self._buffer, position + 4)
            body = position + 8
            if chunk_id == b"data":
                if self.sample_rate is None:
                    raise TextToSpeechError("espeak_bad_wav")
                rest = bytes(self._buffer[body:])
                self._buffer.clear()
                self._in_data = True
                return self._samples(rest)
            if len(self._buffer) < body + size:
                return empty
            if chunk_id == b"fmt ":
                audio_format, channels, rate = struct.unpack_from("<HHI", self._buffer, body)
                (bits,) = struct.unpack_from("<H", self._buffer, body + 14)
                if audio_format != 1 or channels != 1 or bits != 16:
                    raise TextToSpeechError("espeak_unsupported_wav")
                self.sample_rate = rate
            position = body + size + (size & 1)
        return empty

    def _samples(self, data: bytes) -> PcmArray:
        data = self._odd_byte + data
        usable = len(data) - len(data) % 2
        self._odd_byte = data[usable:]
        return np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)


class EspeakTTS:
    """:class:`voice.tts.base.TextToSpeech` on an espeak-ng subprocess per utterance."""

    def __init__(
        self,
        *,
        voice: str = "en-us",
        words_per_minute: int = 160,
        binary: str = "espeak-ng",
    ) -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute
        self._binary = binary

    @property
    def name(self) -> str:
        return "espeak"

    @staticmethod
    def available(binary: str = "espeak-ng") -> bool:
        return shutil.which(binary) is not None

    async def synthesize(self, text: str) -> AsyncGenerator[bytes, None]:
        try:
            process = await asyncio.create_subprocess_exec(
                self._binary,
                "--stdout",
                "-v",
                self.voice,
                "-s",
                str(self.words_per_minute),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise TextToSpeechError("espeak_not_runnable") from exc
        assert process.stdin is not None and process.stdout is not None
        try:
            try:
                process.stdin.write(text.encode("utf-8"))
                await process.stdin.drain()
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise TextToSpeechError("espeak_failed") from exc
            parser = WavStreamParser()
            resampler: StreamResampler | None = None
            while chunk := await process.stdout.read(_READ_BYTES):
                pcm = parser.feed(chunk)
                if pcm.size == 0:
                    continue
                if resampler is None:
                    assert parser.sample_rate is not None
                    resampler = StreamResampler(parser.sample_rate, TWILIO_RATE)
                out = resampler.process(pcm)
                if out.size:
                    yield pcm_to_mulaw(out)
            if resampler is not None:
                tail = resampler.flush()
                if tail.size:
                    yield pcm_to_mulaw(tail)
            code = await process.wait()
            if code != 0:
                raise TextToSpeechError(f"espeak_exit_{code}")
        finally:
            # Cancelled (barge-in) or closed early: stop synthesising at once.
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def aclose(self) -> None:
        """Nothing to release: each utterance has its own process."""
