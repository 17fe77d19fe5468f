"""Understanding with an OpenAI model through structured outputs, falling back to the rules.

The model only reads: it fills a JSON schema made for the question asked (see
:mod:`intake.understanding.schemas`), and its answer is checked by the same normalisers the
rules use (:mod:`intake.understanding.validate`) before the conversation sees it. A phone call
cannot wait on a slow or failing model, so each request has a short timeout and no retries;
on a timeout, an HTTP error, a refusal or an answer that is not the schema's JSON, the turn
is understood by the rules instead (``engine="rules-fallback"``) and nothing is lost. The
fallback is logged with the expectation and the error class only, never the caller's words.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
from openai import AsyncOpenAI

from clinic.logs import get_logger
from intake.understanding.rules import RulesEngine
from intake.understanding.schemas import response_format, system_prompt
from intake.understanding.types import Context, Expectation, Understanding
from intake.understanding.validate import InvalidModelOutput, understanding_from_model

log = get_logger(__name__)

FALLBACK_ENGINE = "rules-fallback"


class ModelRefusal(Exception):
    """The model refused to answer (its refusal text is never kept)."""


class OpenAIEngine:
    """Understands with an OpenAI chat model; the rules answer whenever it cannot."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout: float = 3.0,
        max_tokens: int = 400,
        fallback: RulesEngine | None = None,
    ) -> None:
        self.model = model
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.fallback = fallback or RulesEngine()
        # Retries would multiply the wait of a caller on the line; the fallback is the retry.
        self._client = AsyncOpenAI(
            api_key=api_key, base_url=base_url or None, timeout=timeout, max_retries=0
        )

    async def understand(self, text: str, expect: Expectation, context: Context) -> Understanding:
        if not text.strip():  # silence: nothing to send, and nothing to understand
            return self.fallback.parse(text, expect, context)
        try:
            data = await self._ask(text, expect, context)
            return understanding_from_model(data, text, expect, context)
        except (openai.OpenAIError, TimeoutError, ModelRefusal, InvalidModelOutput) as error:
            log.warning("nlu_fallback", expectation=expect.value, error=type(error).__name__)
        except Exception as error:  # a bug here must not cost the caller the turn
            log.error(
                "nlu_fallback_unexpected", expectation=expect.value, error=type(error).__name__
            )
        return self.fallback.parse(text, expect, context).with_engine(FALLBACK_ENGINE)

    async def _ask(self, text: str, expect: Expectation, context: Context) -> dict[str, Any]:
        """One chat completion; the model's JSON object, or an exception saying why not."""
        # The client's timeout bounds each phase of the request; this bounds the whole turn.
        async with asyncio.timeout(self.timeout):
            completion = await self._client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": system_prompt(expect, context)},
                    {"role": "user", "content": text},
                ],
                response_format=response_format(expect, context),
                max_completion_tokens=self.max_tokens,
            )
        if not completion.choices:
            raise InvalidModelOutput("no choices")
        choice = completion.choices[0]
        if choice.message.refusal:
            raise ModelRefusal
        if choice.finish_reason != "stop" or not choice.message.content:
            raise InvalidModelOutput(f"finish_reason {choice.finish_reason}")
        try:
            data = json.loads(choice.message.content)
        except json.JSONDecodeError:
            raise InvalidModelOutput("content is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidModelOutput("content is not a JSON object")
        return data

    async def aclose(self) -> None:
        """Close the HTTP connection pool (at process shutdown)."""
        await self._client.close()
