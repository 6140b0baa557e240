"""The LLM protocol, chat messages and the errors LLM clients raise."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kvgraph.errors import LLMError, LLMUnavailableError

__all__ = ["LLM", "ChatMessage", "LLMError", "LLMUnavailableError", "require_llm"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat conversation; ``role`` is "system", "user" or "assistant"."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@runtime_checkable
class LLM(Protocol):
    """A chat model: complete a conversation at once or as a stream of text deltas."""

    model: str

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> str: ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]: ...


def require_llm(llm: LLM | None, feature: str) -> LLM:
    """Return ``llm``, or raise LLMUnavailableError explaining how to configure one for ``feature``."""
    if llm is None:
        raise LLMUnavailableError(
            f"{feature} needs an LLM: set KVGRAPH_LLM_BASE_URL (and KVGRAPH_LLM_MODEL) to an OpenAI-compatible "
            "server such as vLLM, Ollama, llama.cpp or LM Studio"
        )
    return llm
