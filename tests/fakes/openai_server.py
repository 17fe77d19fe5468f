"""A loopback fake of OpenAI's chat-completions HTTP API, for tests of the real client.

Tests replace the network, never the code: :class:`~intake.understanding.llm.OpenAIEngine`
runs the real ``openai`` client against this server on 127.0.0.1 (a random free port). The
server speaks the wire protocol of ``POST /v1/chat/completions``: it requires a bearer token,
reads the request's ``response_format.json_schema.name`` and the last user message, and
answers with the JSON shape the real API returns (``id``, ``object: "chat.completion"``,
``created``, ``model``, ``choices[{index, message{role, content, refusal}, finish_reason}]``,
``usage``). Errors use the real API's ``{"error": {...}}`` body.

Answers come from RECORDED structured outputs in ``openai_recordings.json``: a mapping of
schema name -> exact caller text -> the JSON object the model returned. A request with no
recording gets a valid completion whose content is ``{"intent": "none", ...}`` with every
other field of the request's schema empty (null, false or []), which is what a model says
when it found nothing.

Adding a recording:

1. Find the schema name: ``intake.understanding.schemas.schema_name(expect, context)``, e.g.
   ``intake_date_of_birth``, or ``intake_yes_no_name`` for a read-back of a name.
2. Run the real engine once against the real API (``OPENAI_API_KEY`` set, no
   ``OPENAI_BASE_URL``) and copy ``completion.choices[0].message.content`` (a JSON object);
   or write the object by hand. Either way it must satisfy the schema (strict mode): every
   property present, ``null`` / ``false`` / ``[]`` for what was not said.
3. Add it under ``recordings[schema_name][caller_text]``, the text exactly as the test sends
   it. Recordings hold made-up callers only: never paste a real caller's words.

Use it as an async context manager (``async with FakeOpenAI() as fake: fake.base_url``) or
through a pytest fixture that does the same. ``delay`` slows every answer (timeout tests);
:meth:`fail_next` answers the next N requests with an HTTP error (500, 429, ...);
:meth:`answer_next_raw` and :meth:`refuse_next` replace the next answer's content; every
request received is kept in :attr:`requests`. :meth:`stop_accepting` is an outage (connections
refused, open ones dropped) until :meth:`start_accepting` listens on the same port again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes.outage import start_accepting, stop_accepting

RECORDINGS = Path(__file__).with_name("openai_recordings.json")

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as it arrived on the wire."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def schema_name(self) -> str | None:
        response_format = self.body.get("response_format") or {}
        return (response_format.get("json_schema") or {}).get("name")

    @property
    def schema(self) -> dict[str, Any]:
        return dict(self.body["response_format"]["json_schema"]["schema"])

    @property
    def caller_text(self) -> str | None:
        users = [m for m in self.body.get("messages", []) if m.get("role") == "user"]
        return str(users[-1]["content"]) if users else None

    @property
    def system_prompt(self) -> str:
        systems = [m for m in self.body.get("messages", []) if m.get("role") == "system"]
        return str(systems[0]["content"]) if systems else ""


def load_recordings(path: Path = RECORDINGS) -> dict[str, dict[str, dict[str, Any]]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: dict(answers) for name, answers in data.items() if not name.startswith("_")}


def empty_answer(schema: dict[str, Any]) -> dict[str, Any]:
    """What a model answers when it found nothing: intent "none", every field empty."""
    answer: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        kinds = prop.get("type", "null")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if name == "intent":
            answer[name] = "none"
        elif "null" in kinds or "anyOf" in prop:
            answer[name] = None
        elif "array" in kinds:
            answer[name] = []
        elif "boolean" in kinds:
            answer[name] = False
        else:
            answer[name] = None
    return answer


class FakeOpenAI:
    """The fake server. Start it with ``async with``; point the client at :attr:`base_url`."""

    def __init__(self, recordings: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        self.recordings = load_recordings() if recordings is None else recordings
        self.requests: list[ReceivedRequest] = []
        self.delay = 0.0
        self._failures: deque[int] = deque()
        self._contents: deque[tuple[str | None, str | None]] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` requests with HTTP ``status`` and an OpenAI error body."""
        self._failures.extend([status] * count)

    def answer_next_raw(self, content: str) -> None:
        """Use ``content`` verbatim as the next answer's message content (say, broken JSON)."""
        self._contents.append((content, None))

    def refuse_next(self, refusal: str = "I'm sorry, I can't help with that.") -> None:
        """Make the next answer a refusal, as structured outputs report one."""
        self._contents.append((None, refusal))

    def record(self, schema_name: str, text: str, output: dict[str, Any]) -> None:
        """Add a recording for this server only (the JSON file is the shared set)."""
        self.recordings.setdefault(schema_name, {})[text] = output

    async def stop_accepting(self) -> None:
        """An outage: new connections are refused and kept-alive ones are dropped."""
        assert self._runner is not None
        await stop_accepting(self._runner)

    async def start_accepting(self) -> None:
        """The end of the outage, on the port the client knows."""
        assert self._runner is not None
        await start_accepting(self._runner, self.port)

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        # A client that timed out has gone: cancel its handler rather than finish a slow answer.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _completions(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "You didn't provide an API key.")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.")
        received = ReceivedRequest(request.path, dict(request.headers), body)
        self.requests.append(received)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._failures:
            status = self._failures.popleft()
            return _error(status, "The server had an error while processing your request.")
        content, refusal = self._contents.popleft() if self._contents else self._answer(received)
        return web.json_response(_completion(body.get("model", ""), content, refusal))

    def _answer(self, received: ReceivedRequest) -> tuple[str | None, str | None]:
        name = received.schema_name or ""
        recorded = self.recordings.get(name, {}).get(received.caller_text or "")
        answer = recorded if recorded is not None else empty_answer(received.schema)
        return json.dumps(answer), None


def _completion(model: str, content: str | None, refusal: str | None) -> dict[str, Any]:
    completion_tokens = len((content or refusal or "").split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": refusal,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": completion_tokens,
            "total_tokens": 100 + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_loopback",
    }


def _error(status: int, message: str) -> web.Response:
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)
