"""Language models: the LLM protocol, an OpenAI-compatible client and the prompt templates."""

from kvgraph.llm.base import LLM, ChatMessage, LLMError, LLMUnavailableError, Usage, require_llm
from kvgraph.llm.openai_compat import OpenAICompatibleLLM, llm_from_env

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
