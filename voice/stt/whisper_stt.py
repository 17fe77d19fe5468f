"""The embedded recogniser: Whisper (faster-whisper) on whole caller turns, endpointed by our VAD.

Whisper does not stream: it transcribes a whole stretch of audio. So a turn is cut by voice
activity (:class:`voice.audio.VoiceActivityDetector`, on the event loop, microseconds per
frame): ``SpeechStarted`` when the caller starts, and when they have been quiet for the
product's hangover (700 ms) the turn — with the 400 ms before the detected start and the
quiet after the last word, which Whisper needs to hear a lone "yes" (measured: without that
context it heard "Oh." for "no") — goes to the shared :class:`WhisperEngine`. The result is a
``Final`` and an ``UtteranceEnd``, or ``NothingHeard`` when the voice activity came to no
words (noise, a cough) so that the session's silence timer runs again.

Our energy detector rather than faster-whisper's Silero VAD: measured on telephone-band
espeak-ng speech, Silero dropped short answers ("yes", "no") as non-speech, and the energy
detector costs nothing on the event loop; Whisper's own no-speech probability then rejects
noise that the energy detector let through.

A stream cannot feed the recogniser faster than real time (:class:`AudioBudget`): audio
beyond a 5 s burst above the wall clock is dropped and counted
(``voice_stt_audio_dropped_seconds_total``), so one broken or hostile stream cannot fill the
decoding queue that every call shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clinic.logs import get_logger
from voice.audio import (
    TWILIO_RATE,
    PcmArray,
    VadConfig,
    VadEventKind,
    VoiceActivityDetector,
    mulaw_to_pcm,
)
from voice.metrics import STT_AUDIO_DROPPED
from voice.stt._events import EventStream
from voice.stt.base import (
    Final,
    NothingHeard,
    SpeechStarted,
    SpeechToTextError,
    TranscriptEvent,
    UtteranceEnd,
    normalise_hints,
)
from voice.stt.whisper_decode import WhisperEngine, engine_from_settings, whisper_prompt

log = get_logger(__name__)

ENGINE = "whisper"
MAX_CONSECUTIVE_FAILURES = 3
MIN_DECODE_SAMPLES = TWILIO_RATE // 10  # 100 ms


class AudioBudget:
    """A token bucket of audio seconds: refills at ``rate`` seconds of audio per second of
    wall clock, holds at most ``burst_s``. Audio arrives in bursts whenever this process
    stalls (Twilio's frames queue up in TCP meanwhile) or the network does: the burst covers
    a stall of ``burst_s``; only a stream that runs further ahead of real time loses audio.
    (Measured: at 2 s, an in-process call on a loaded two-core machine lost 0.5 s of a
    caller's answer.)"""

    def __init__(
        self,
        *,
        rate: float = 1.0,
        burst_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst_s = burst_s
        self._clock = clock
        self._tokens = burst_s
        self._at = clock()

    def take(self, seconds: float) -> bool:
        """Spend ``seconds`` of audio if the budget allows it."""
        now = self._clock()
        self._tokens = min(self.burst_s, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < seconds - 1e-9:  # whole frames add up to the burst exactly
            return False
        self._tokens -= seconds
        return True


@dataclass(frozen=True)
class _Segment:
    pcm8k: PcmArray
    prompt: str | None
    ended_at: float  # monotonic time the last audio of the segment arrived
    last: bool  # the caller stopped talking (False: a monologue cut at max_utterance_ms)


class WhisperSTT:
    """:class:`voice.stt.base.SpeechToText` on Whisper, one instance per call.

    Segments are decoded one at a time, in order, while audio keeps flowing in; a call never
    has more than one utterance in the shared decoding pool (fairness between calls).
    """

    def __init__(
        self,
        *,
        engine: WhisperEngine | None = None,
        vad: VadConfig | None = None,
        preroll_ms: float = 400.0,
        max_utterance_ms: float = 28_000.0,
        budget: AudioBudget | None = None,
        decode_timeout_s: float = 20.0,
        close_timeout_s: float = 10.0,
        call_id: str = "",
    ) -> None:
        self._engine = engine
        self._vad = VoiceActivityDetector(vad or VadConfig(hangover_ms=700.0))
        self._preroll: deque[PcmArray] = deque()
        self._preroll_samples = 0
        self._preroll_limit = int(preroll_ms * TWILIO_RATE / 1000)
        # Whisper's window is 30 s; a longer turn is cut and decoded in pieces.
        self._max_utterance_samples = int(max_utterance_ms * TWILIO_RATE / 1000)
        self._budget = budget or AudioBudget()
        self._decode_timeout_s = decode_timeout_s
        self._close_timeout_s = close_timeout_s
        self._call_id = call_id
        self._events = EventStream()
        self._segments: asyncio.Queue[_Segment | None] = asyncio.Queue()
        self._prompt: str | None = None
        self._utterance: list[PcmArray] | None = None
        self._utterance_samples = 0
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._turn_has_final = False
        self.utterances = 0
        self.dropped_s = 0.0

    @property
    def engine(self) -> WhisperEngine:
        if self._engine is None:
            self._engine = engine_from_settings()
        return self._engine

    async def start(self, hints: Sequence[str] = ()) -> None:
        if self._worker is not None:
            raise RuntimeError("start() was already called")
        self._prompt = whisper_prompt(normalise_hints(hints))
        if not self.engine.loaded:
            # Normally preloaded at start-up; otherwise the first call pays for it, off-loop.
            try:
                await asyncio.wait_for(asyncio.to_thread(self.engine.load), timeout=60.0)
            except Exception as exc:
                log.error("stt_model_unavailable", engine=ENGINE, error=type(exc).__name__)
                raise SpeechToTextError("whisper_unavailable") from exc
        self._worker = asyncio.create_task(self._decode_segments(), name="whisper-stt")

    async def send(self, mulaw_8k: bytes) -> None:
        if self._closed or self._worker is None or not mulaw_8k:
            return
        seconds = len(mulaw_8k) / TWILIO_RATE
        if not self._budget.take(seconds):
            if self.dropped_s == 0.0:
                log.warning("stt_audio_over_budget", call_id=self._call_id, engine=ENGINE)
            self.dropped_s += seconds
            STT_AUDIO_DROPPED.labels(engine=ENGINE).inc(seconds)
            return
        pcm = mulaw_to_pcm(mulaw_8k)
        event = self._vad.feed(pcm)
        if self._utterance is None:
            self._remember(pcm)
            if event is not None and event.kind is VadEventKind.SPEECH_START:
                self._begin()
            return
        self._utterance.append(pcm)
        self._utterance_samples += pcm.size
        if event is not None and event.kind is VadEventKind.SPEECH_END:
            self._end(last=True)
        elif self._utterance_samples >= self._max_utterance_samples:
            self._end(last=False)  # a monologue: decode what we have, keep listening

    async def set_hints(self, hints: Sequence[str]) -> None:
        """Applies to the utterances that end from now on."""
        self._prompt = whisper_prompt(normalise_hints(hints))

    async def keep_alive(self) -> None:
        """Nothing to keep open: the decoder is local."""

    def events(self) -> AsyncIterator[TranscriptEvent]:
        return self._events.iterate()

    async def close(self) -> None:
        """Stop listening. What the caller said is still decoded (within ``close_timeout_s``),
        including an utterance cut off by the hang-up."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            if self._utterance is not None:
                self._end(last=True)
            self._segments.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), self._close_timeout_s)
            except TimeoutError:
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker
        self._events.finish()
        log.info(
            "stt_closed",
            call_id=self._call_id,
            engine=ENGINE,
            utterances=self.utterances,
            dropped_ms=round(self.dropped_s * 1000),
        )

    # --- segmentation (event loop) -------------------------------------------------------

    def _remember(self, pcm: PcmArray) -> None:
        self._preroll.append(pcm)
        self._preroll_samples += pcm.size
        while self._preroll and self._preroll_samples - self._preroll[0].size >= (
            self._preroll_limit
        ):
            self._preroll_samples -= self._preroll.popleft().size

    def _begin(self) -> None:
        self._utterance = list(self._preroll)
        self._utterance_samples = self._preroll_samples
        self._preroll.clear()
        self._preroll_samples = 0
        self._events.put(SpeechStarted())

    def _end(self, *, last: bool) -> None:
        assert self._utterance is not None
        # Empty when a hang-up follows right after a monologue was cut.
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.int16)
        self._utterance = None if last else []
        self._utterance_samples = 0
        self._segments.put_nowait(_Segment(audio, self._prompt, time.monotonic(), last))

    # --- decoding (the engine's threads) -------------------------------------------------

    async def _decode_segments(self) -> None:
        failures = 0
        while (segment := await self._segments.get()) is not None:
            try:
                await self._decode(segment)
                failures = 0
            except Exception as exc:
                # One bad utterance is "nothing heard" (the caller is asked again); an engine
                # that keeps failing ends this call's recognition.
                failures += 1
                log.error(
                    "stt_decode_failed",
                    call_id=self._call_id,
                    engine=ENGINE,
                    error=type(exc).__name__,
                    failures=failures,
                )
                self._close_turn(segment, text="", confidence=0.0, latency_ms=0.0)
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    self._events.fail(SpeechToTextError("whisper_failed"))
                    return

    async def _decode(self, segment: _Segment) -> None:
        text, confidence = "", 0.0
        if segment.pcm8k.size < MIN_DECODE_SAMPLES:
            pass  # nothing worth a decode (a hang-up right after a monologue was cut)
        else:
            try:
                result = await asyncio.wait_for(
                    self.engine.transcribe(segment.pcm8k, segment.prompt),
                    self._decode_timeout_s,
                )
                text, confidence = result.text, result.confidence
            except TimeoutError:
                # The decode goes on in its thread and its result is dropped; the caller is
                # told nothing was heard (and will be asked again) instead of waiting on.
                log.error("stt_decode_timeout", call_id=self._call_id, engine=ENGINE)
        self.utterances += 1
        latency_ms = (time.monotonic() - segment.ended_at) * 1000.0
        log.info(
            "stt_utterance",
            call_id=self._call_id,
            engine=ENGINE,
            audio_ms=segment.pcm8k.size * 1000 // TWILIO_RATE,
            words=len(text.split()),
            confidence=round(confidence, 2),
            prompted=segment.prompt is not None,
            decode_ms=round(latency_ms),
        )
        self._close_turn(segment, text=text, confidence=confidence, latency_ms=latency_ms)

    def _close_turn(
        self, segment: _Segment, *, text: str, confidence: float, latency_ms: float
    ) -> None:
        if text:
            self._events.put(Final(text, confidence, stt_latency_ms=latency_ms))
            self._turn_has_final = True
        if segment.last:
            if self._turn_has_final:
                self._events.put(UtteranceEnd())
            else:
                self._events.put(NothingHeard())
            self._turn_has_final = False
