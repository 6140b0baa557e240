"""Fixtures for the LLM and embedding client tests: a real loopback OpenAI server, no real backoff."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kvgraph.llm import _http
from kvgraph.testing.openai_server import FakeOpenAIServer


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def backoff_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record retry delays instead of sleeping, so retry tests take no time and can check the delays."""
    delays: list[float] = []
    monkeypatch.setattr(_http, "_sleep", delays.append)
    return delays


@pytest.fixture
def unused_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
