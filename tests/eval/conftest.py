"""Fixtures for the LLM-backed eval tests: a real loopback OpenAI server and a client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kvgraph.llm import OpenAICompatibleLLM, _http
from kvgraph.testing.openai_server import FakeOpenAIServer


@pytest.fixture
def llm_server() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP retries of the client must not really sleep."""
    monkeypatch.setattr(_http, "_sleep", lambda seconds: None)


@pytest.fixture
def llm(llm_server: FakeOpenAIServer) -> Iterator[OpenAICompatibleLLM]:
    client = OpenAICompatibleLLM(llm_server.base_url, "test-model", max_retries=0, timeout=10)
    try:
        yield client
    finally:
        client.close()
