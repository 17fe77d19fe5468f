"""Text-to-speech engines behind one protocol (:class:`voice.tts.base.TextToSpeech`)."""

from __future__ import annotations

from voice.tts.base import TextToSpeech, TextToSpeechError
from voice.tts.cache import CachedTTS, PromptCache

__all__ = [
    "CachedTTS",
    "PromptCache",
    "TextToSpeech",
    "TextToSpeechError",
    "prompt_engine_from_settings",
    "tts_from_settings",
]


def tts_from_settings(*, cache: PromptCache | None = None, call_id: str = "") -> TextToSpeech:
    """A new synthesiser for one call, of the kind ``TTS_PROVIDER`` names.

    With ``TTS_PROVIDER=deepgram`` it is Aura with espeak-ng as the fallback (called inside
    the event loop, Aura shares that loop's HTTP connections with the other calls); with a
    ``cache``, cached prompts are played from memory. The process's ``deepgram_tts`` circuit
    breaker sends the call straight to espeak-ng while Aura keeps failing.
    """
    from django.conf import settings

    from voice.tts.espeak import EspeakTTS

    engine: TextToSpeech = EspeakTTS()
    if settings.TTS_PROVIDER == "deepgram":
        from clinic.circuit import circuit_breaker
        from voice.tts.deepgram_aura import CIRCUIT, DeepgramAuraTTS, shared_http_client
        from voice.tts.fallback import FallbackTTS

        aura = DeepgramAuraTTS(
            api_key=settings.DEEPGRAM_API_KEY,
            base_url=settings.DEEPGRAM_BASE_URL,
            client=shared_http_client(),
        )
        engine = FallbackTTS(aura, engine, call_id=call_id, breaker=circuit_breaker(CIRCUIT))
    return CachedTTS(engine, cache) if cache is not None else engine


def prompt_engine_from_settings() -> TextToSpeech:
    """The engine that synthesises the fixed prompts cached for every call: the configured
    voice itself, without its fallback.

    Warming through the fallback would cache espeak-ng's audio for the life of the process
    whenever Aura happened to be down at start-up, and the agent would then speak in two
    voices. A prompt the primary cannot synthesise is left out of the cache and spoken live,
    through the fallback, like any other sentence.
    """
    from django.conf import settings

    from voice.tts.espeak import EspeakTTS

    if settings.TTS_PROVIDER == "deepgram":
        from voice.tts.deepgram_aura import DeepgramAuraTTS, shared_http_client

        return DeepgramAuraTTS(
            api_key=settings.DEEPGRAM_API_KEY,
            base_url=settings.DEEPGRAM_BASE_URL,
            client=shared_http_client(),
        )
    return EspeakTTS()
