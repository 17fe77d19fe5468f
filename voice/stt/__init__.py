"""Speech-to-text engines behind one protocol (:class:`voice.stt.base.SpeechToText`).

The engines are imported lazily: the Deepgram SDK and PocketSphinx are heavy, and a process
only ever needs the one its settings choose.
"""

from __future__ import annotations

from clinic.logs import get_logger
from voice.stt.base import (
    Final,
    Interim,
    NothingHeard,
    SpeechStarted,
    SpeechToText,
    SpeechToTextError,
    TranscriptEvent,
    UtteranceEnd,
)

__all__ = [
    "Final",
    "Interim",
    "SpeechStarted",
    "SpeechToText",
    "SpeechToTextError",
    "TranscriptEvent",
    "NothingHeard",
    "UtteranceEnd",
    "offline_stt_from_settings",
    "preload_from_settings",
    "stt_from_settings",
]

log = get_logger(__name__)


def stt_from_settings(*, call_id: str = "") -> SpeechToText:
    """A new recogniser for one call, of the kind ``STT_PROVIDER`` names.

    With ``STT_PROVIDER=deepgram`` the call gets Deepgram, falling back to the offline
    recogniser if Deepgram cannot be reached when the call starts; while the process's
    ``deepgram_stt`` circuit breaker is open (Deepgram kept failing), the call gets the
    offline recogniser from the outset.
    """
    from django.conf import settings

    if settings.STT_PROVIDER == "deepgram":
        from clinic.circuit import circuit_breaker
        from voice.stt.deepgram import CIRCUIT, DeepgramSTT
        from voice.stt.fallback import StartFallbackSTT

        attempt = circuit_breaker(CIRCUIT).attempt()
        if attempt is not None:
            deepgram = DeepgramSTT(
                api_key=settings.DEEPGRAM_API_KEY,
                base_url=settings.DEEPGRAM_BASE_URL,
                call_id=call_id,
                attempt=attempt,
            )
            return StartFallbackSTT(
                deepgram, lambda: offline_stt_from_settings(call_id=call_id), call_id=call_id
            )
        log.info("stt_provider_skipped", call_id=call_id, provider=CIRCUIT, reason="circuit_open")
    return offline_stt_from_settings(call_id=call_id)


def offline_stt_from_settings(*, call_id: str = "") -> SpeechToText:
    """The embedded recogniser (no keys, no network): the default, and the hosted one's fallback.

    Whisper, unless ``STT_PROVIDER=pocketsphinx`` chose the older grammar engine.
    """
    from django.conf import settings

    if settings.STT_PROVIDER == "pocketsphinx":
        from voice.stt.pocketsphinx_stt import PocketSphinxSTT

        return PocketSphinxSTT(call_id=call_id)
    from voice.stt.whisper_stt import WhisperSTT

    return WhisperSTT(call_id=call_id)


async def preload_from_settings() -> None:
    """Load the configured offline recogniser before the first call (server start-up).

    Whisper: join, verify and load the model and run a warm-up decode, so that the first
    call is as fast as the hundredth; a model that fails its SHA-256 check raises
    :class:`voice.stt.whisper_model.ModelIntegrityError` (a one-line ``ConfigError``).
    PocketSphinx: start its decoding processes. Deepgram: nothing (its offline fallback
    loads Whisper on first use rather than hold ~300 MB in every production process).
    """
    import asyncio

    from django.conf import settings

    if settings.STT_PROVIDER == "whisper":
        from voice.stt import whisper_decode

        await asyncio.to_thread(whisper_decode.preload)
    elif settings.STT_PROVIDER == "pocketsphinx":
        from voice.stt import pocketsphinx_stt

        await pocketsphinx_stt.preload()
