"""Speech-to-text engines behind one protocol (:class:`voice.stt.base.SpeechToText`).

The engines are imported lazily: the Deepgram SDK and PocketSphinx are heavy, and a process
only ever needs the one its settings choose.
"""

from __future__ import annotations

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
    "stt_from_settings",
]


def stt_from_settings(*, call_id: str = "") -> SpeechToText:
    """A new recogniser for one call, of the kind ``STT_PROVIDER`` names."""
    from django.conf import settings

    if settings.STT_PROVIDER == "deepgram":
        from voice.stt.deepgram import DeepgramSTT

        return DeepgramSTT(
            api_key=settings.DEEPGRAM_API_KEY,
            base_url=settings.DEEPGRAM_BASE_URL,
            call_id=call_id,
        )
    from voice.stt.pocketsphinx_stt import PocketSphinxSTT

    return PocketSphinxSTT(call_id=call_id)
