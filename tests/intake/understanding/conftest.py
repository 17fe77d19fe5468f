"""Fixtures for the understanding tests: the corpus context and the loopback OpenAI fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from intake.understanding import Context
from intake.understanding.llm import OpenAIEngine
from tests.fakes.openai_server import FakeOpenAI
from tests.intake.understanding.corpus import load_corpus


@pytest.fixture
def context() -> Context:
    """The corpus's default context: today Monday 2025-03-03, three offered options."""
    return load_corpus()[0]


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def openai_engine(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIEngine]:
    engine = OpenAIEngine(
        api_key="sk-test-loopback", model="gpt-4o-mini", base_url=fake_openai.base_url, timeout=1.0
    )
    yield engine
    await engine.aclose()
