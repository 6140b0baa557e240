"""Request bodies of the HTTP API (pydantic): the OpenAPI schema and its validation come from here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["dense", "sparse", "hybrid", "mmr", "graph"]
MAX_K = 100
DEFAULT_EVAL_MODES: tuple[Mode, ...] = ("dense", "sparse", "hybrid")
MAX_TEXT = 4_000  # characters of a question or query
# Filters are kvgraph's filter tree as JSON ({"page": {"$gte": 3}}), or an expression ("page>=3").
Filters = dict[str, Any] | str | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Body):
    query: str = Field(min_length=1, max_length=MAX_TEXT, description="What to look for.")
    k: int | None = Field(default=None, ge=1, le=MAX_K, description="How many chunks (default: top_k setting).")
    mode: Mode | None = Field(default=None, description="Retrieval mode (default: the knowledge base's).")
    filters: Filters = Field(default=None, description="Metadata filter: JSON tree or 'page>=3' expression.")


class AskRequest(_Body):
    question: str = Field(min_length=1, max_length=MAX_TEXT)
    k: int | None = Field(default=None, ge=1, le=MAX_K)
    mode: Mode | None = None
    filters: Filters = None
    stream: bool = Field(default=False, description="Server-sent events: delta events, then one answer event.")


class ConversationCreate(_Body):
    title: str = Field(default="", max_length=200)


class MessageRequest(_Body):
    message: str = Field(min_length=1, max_length=MAX_TEXT, description="The next question; may be a follow-up.")
    k: int | None = Field(default=None, ge=1, le=MAX_K)
    mode: Mode | None = None
    filters: Filters = None
    stream: bool = False


class GraphQueryRequest(_Body):
    cypher: str = Field(min_length=1, max_length=20_000, description="One read-only Cypher statement.")
    params: dict[str, Any] = Field(default_factory=dict, description="Bound parameters ($name in the query).")
    max_rows: int = Field(default=500, ge=1, le=5_000)
    timeout_s: float = Field(default=10.0, gt=0, le=60)


class GraphAskRequest(_Body):
    question: str = Field(min_length=1, max_length=MAX_TEXT)
    tool: Literal["auto", "vector", "graph"] = "auto"
    k: int = Field(default=4, ge=1, le=50)


class EvalQuestion(_Body):
    question: str = Field(min_length=1, max_length=MAX_TEXT)
    relevant_ids: list[str] = Field(default_factory=list, max_length=100, description="Gold chunk ids.")
    relevant_files: list[str] = Field(
        default_factory=list, max_length=100, description="Gold file names (a hit counts when it is from one)."
    )
    answers: list[str] = Field(default_factory=list, max_length=20, description="Reference answers.")


class EvalRunRequest(_Body):
    name: str = Field(default="", max_length=200)
    questions: list[EvalQuestion] = Field(min_length=1, max_length=2_000)
    modes: list[Mode] = Field(default_factory=lambda: list(DEFAULT_EVAL_MODES), min_length=1, max_length=5)
    ks: list[int] = Field(default_factory=lambda: [1, 3, 5], min_length=1, max_length=6)
    score_answers: bool = Field(default=False, description="Also ask each question and score the answers.")


class ChatMessageIn(BaseModel):
    """One message of an OpenAI chat request; content may be text or a list of content parts."""

    model_config = ConfigDict(extra="allow")
    role: str = Field(min_length=1, max_length=32)
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. Sampling fields are accepted and ignored (kvgraph answers)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=500)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
