"""Understanding what a caller said: intents and typed fields, never decisions.

The conversation asks a question, says what it expects (:class:`Expectation`), and passes
the caller's words to an :class:`UnderstandingEngine`; the engine returns an
:class:`Understanding`. Red-flag screening (:func:`screen`) is separate on purpose: it runs on
every utterance with the rules, whatever engine is selected.
"""

from __future__ import annotations

from intake.understanding.base import MAX_HINTS, UnderstandingEngine, hints_for
from intake.understanding.rules import RulesEngine
from intake.understanding.triage import RedFlag, RedFlagCategory, screen
from intake.understanding.types import (
    ANY_PROVIDER,
    SELF_PAY,
    Address,
    Context,
    Expectation,
    Intent,
    OfferedOption,
    PartOfDay,
    Understanding,
)

__all__ = [
    "ANY_PROVIDER",
    "MAX_HINTS",
    "SELF_PAY",
    "Address",
    "Context",
    "Expectation",
    "Intent",
    "OfferedOption",
    "PartOfDay",
    "RedFlag",
    "RedFlagCategory",
    "RulesEngine",
    "Understanding",
    "UnderstandingEngine",
    "engine_from_settings",
    "hints_for",
    "screen",
]


def engine_from_settings() -> UnderstandingEngine:
    """The engine the settings select (``NLU_PROVIDER``), read when called, not at import."""
    from django.conf import settings

    if settings.NLU_PROVIDER == "openai":
        from clinic.circuit import circuit_breaker
        from intake.understanding.llm import CIRCUIT, OpenAIEngine

        return OpenAIEngine(
            api_key=settings.OPENAI_API_KEY,
            model=settings.OPENAI_MODEL,
            base_url=settings.OPENAI_BASE_URL or None,
            timeout=settings.NLU_TIMEOUT_SECONDS,
            breaker=circuit_breaker(CIRCUIT),  # shared by the calls of this process
        )
    return RulesEngine()
