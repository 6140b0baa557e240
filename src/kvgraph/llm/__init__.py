"""Language models: the LLM protocol, an OpenAI-compatible chat client, prompt templates, reply
parsers, the JSONL cache of paid LLM results and the thread pool that runs LLM jobs.

The HTTP client (httpx) loads only when a client is created: importing ``kvgraph.llm`` for its
protocol or prompts costs nothing at the start of a command that never talks to a server.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from kvgraph.errors import LLMError, LLMUnavailableError
from kvgraph.llm.base import LLM, ChatMessage, require_llm

if TYPE_CHECKING:
    from kvgraph.llm.openai_compat import OpenAICompatibleLLM, llm_from_env
    from kvgraph.transport import Usage

_LAZY = {
    "OpenAICompatibleLLM": "kvgraph.llm.openai_compat",
    "llm_from_env": "kvgraph.llm.openai_compat",
    "Usage": "kvgraph.transport",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kvgraph.llm' has no attribute {name!r}")


__all__ = [
    "LLM",
    "ChatMessage",
    "LLMError",
    "LLMUnavailableError",
    "OpenAICompatibleLLM",
    "Usage",
    "llm_from_env",
    "require_llm",
]
