"""The LLM protocol, chat messages and the errors LLM clients raise."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kvgraph.errors import KvgraphError


class LLMError(KvgraphError):
    """A language-model or embedding server failed or answered something unusable.

    ``status_code`` is the HTTP status when the server answered with an error, else None.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LLMUnavailableError(LLMError):
    """No LLM is configured, or the configured server cannot be reached."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat conversation; ``role`` is "system", "user" or "assistant"."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass
class Usage:
    """Running token totals reported by a server (``usage`` of OpenAI responses), for cost display.

    Servers that report no usage leave the token counts at zero; ``requests`` still counts.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, usage: Mapping[str, Any] | None) -> None:
        """Count one successful request and the token counts of its ``usage`` object, if any."""
        prompt = completion = 0
        if isinstance(usage, Mapping):
            prompt = _as_int(usage.get("prompt_tokens"))
            completion = _as_int(usage.get("completion_tokens"))
        with self._lock:  # clients may be shared between threads
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.requests += 1


def _as_int(value: object) -> int:
    # Servers sometimes send null or omit fields; a bool is not a token count.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


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
