"""Understanding with an OpenAI model through structured outputs, falling back to the rules.

The model only reads: it fills a JSON schema made for the question asked (see
:mod:`intake.understanding.schemas`), and its answer is checked by the same normalisers the
rules use (:mod:`intake.understanding.validate`) before the conversation sees it. A phone call
cannot wait on a slow or failing model, so each request has a short timeout and no retries;
on a timeout, an HTTP error, a refusal or an answer that is not the schema's JSON, the turn
is understood by the rules instead (``engine="rules-fallback"``) and nothing is lost. The
fallback is logged with the expectation and the error class only, never the caller's words.

When the API keeps failing (timeouts, refused connections, 5xx, 429), the process's ``openai``
circuit breaker (:mod:`clinic.circuit`) opens and turns go straight to the rules, without a
request, until a trial after the cool-down finds the API answering again. An answer the model
gave (a refusal, JSON that does not fit, a 4xx about our request) is the API working, not an
outage, and does not count against it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
from openai import AsyncOpenAI

from clinic.circuit import CircuitBreaker
from clinic.logs import get_logger
from intake.understanding.rules import RulesEngine
from intake.understanding.schemas import response_format, system_prompt
from intake.understanding.types import Context, Expectation, Understanding
from intake.understanding.validate import InvalidModelOutput, understanding_from_model

log = get_logger(__name__)

FALLBACK_ENGINE = "rules-fallback"
CIRCUIT = "openai"
"""This provider's name for its circuit breaker and the breaker gauge."""
CONNECT_TIMEOUT_S = 2.0
"""TCP and TLS handshake with the API (at most the whole turn's ``timeout``)."""


class ModelRefusal(Exception):
    """The model refused to answer (its refusal text is never kept)."""


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says the API is down or overloaded (rather than that it answered)."""
    if isinstance(error, TimeoutError | openai.APIConnectionError):
        return True  # includes openai.APITimeoutError
    if isinstance(error, openai.APIStatusError):
        return error.status_code >= 500 or error.status_code == 429
    return False


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
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.model = model
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.fallback = fallback or RulesEngine()
        self.breaker = breaker
        # Retries would multiply the wait of a caller on the line; the fallback is the retry.
        # Every phase's timeout is explicit (the SDK's default is 600 s): connecting gets
        # CONNECT_TIMEOUT_S, and reading, writing and waiting for a pooled connection each get
        # the turn's budget, which asyncio.timeout in _ask also bounds as a whole.
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=openai.Timeout(
                connect=min(CONNECT_TIMEOUT_S, timeout), read=timeout, write=timeout, pool=timeout
            ),
            max_retries=0,
        )

    async def understand(self, text: str, expect: Expectation, context: Context) -> Understanding:
        if not text.strip():  # silence: nothing to send, and nothing to understand
            return self.fallback.parse(text, expect, context)
        attempt = None
        if self.breaker is not None:
            attempt = self.breaker.attempt()
            if attempt is None:  # the API keeps failing: do not make this caller wait on it
                log.info("nlu_short_circuit", expectation=expect.value)
                return self.fallback.parse(text, expect, context).with_engine(FALLBACK_ENGINE)
        try:
            data = await self._ask(text, expect, context)
            if attempt is not None:
                attempt.succeeded()
            return understanding_from_model(data, text, expect, context)
        except (openai.OpenAIError, TimeoutError, ModelRefusal, InvalidModelOutput) as error:
            if attempt is not None:
                attempt.failed() if is_outage(error) else attempt.succeeded()
            log.warning("nlu_fallback", expectation=expect.value, error=type(error).__name__)
        except Exception as error:  # a bug here must not cost the caller the turn
            log.error(
                "nlu_fallback_unexpected", expectation=expect.value, error=type(error).__name__
            )
        finally:
            if attempt is not None:
                attempt.abandoned()  # cancelled, or our own bug: no verdict on the API
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
