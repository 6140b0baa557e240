"""Fixtures every test package shares: the real embedding model (loaded once per session), a real
OpenAI-protocol server on loopback, retries without real sleeps, and the shared datasets
(a test that needs one is skipped, naming where it looked, when it is absent).

``./dev test`` deselects ``slow`` tests (crash loops); CI runs everything (``KVGRAPH_TEST_ALL=1``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kvgraph import transport
from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.llm.openai_compat import OpenAICompatibleLLM
from kvgraph.testing.openai_server import FakeOpenAIServer


@pytest.fixture(scope="session")
def embedder() -> OnnxEmbedder:
    """The default embedder (all-MiniLM-L6-v2, ONNX int8), loaded once for the whole session."""
    return OnnxEmbedder()


@pytest.fixture
def start_openai_server() -> Iterator[Callable[..., FakeOpenAIServer]]:
    """Start loopback OpenAI-protocol servers (``reply=``, ``tool_reply=``...); each stops after the test."""
    started: list[FakeOpenAIServer] = []

    def start(**kwargs: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(**kwargs).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def openai_server(start_openai_server: Callable[..., FakeOpenAIServer]) -> FakeOpenAIServer:
    """A loopback OpenAI-protocol server with its default replies."""
    return start_openai_server()


@pytest.fixture
def llm(openai_server: FakeOpenAIServer) -> Iterator[OpenAICompatibleLLM]:
    """A client of :func:`openai_server` that does not retry."""
    client = OpenAICompatibleLLM(openai_server.base_url, "test-model", max_retries=0, timeout=10)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(autouse=True)
def backoff_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """HTTP retry delays are recorded instead of slept, so retry tests take no time and can check them."""
    delays: list[float] = []
    monkeypatch.setattr(transport, "_sleep", delays.append)
    return delays


@pytest.fixture
def unused_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside CI, ``slow`` tests run only when asked for (``-m slow`` or ``KVGRAPH_TEST_ALL=1``)."""
    if os.environ.get("KVGRAPH_TEST_ALL") or config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow: run with KVGRAPH_TEST_ALL=1 or -m slow (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
