"""A chat client for any OpenAI-compatible server: vLLM, TGI, Ollama, llama.cpp, LM Studio, OpenAI.

``base_url`` must include the API prefix, exactly as for the openai SDK:
``http://localhost:8000/v1`` (vLLM), ``http://localhost:11434/v1`` (Ollama),
``http://localhost:8080/v1`` (llama.cpp), ``https://api.openai.com/v1``.
Requests go to ``{base_url}/chat/completions``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from kvgraph.errors import LLMError, LLMUnavailableError
from kvgraph.llm.base import ChatMessage
from kvgraph.transport import ApiClient, Usage, iter_sse_data, json_text, redact_url

log = logging.getLogger("kvgraph.llm")

ENV_BASE_URL = "KVGRAPH_LLM_BASE_URL"
ENV_MODEL = "KVGRAPH_LLM_MODEL"
ENV_API_KEY = "KVGRAPH_LLM_API_KEY"


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for: the tool's ``name`` and its decoded ``arguments``.

    ``raw_arguments`` keeps the text the server sent, for when it was not valid JSON.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    raw_arguments: str = ""


@dataclass
class ToolReply:
    """The reply to a request that offered tools: text (often empty) and the calls the model made."""

    content: str
    tool_calls: list[ToolCall]


class OpenAICompatibleLLM:
    """Chat completions over HTTP, streaming or not, with retries and token accounting.

    Connect errors, timeouts, HTTP 429 and 5xx are retried ``max_retries`` times with
    exponential backoff (``backoff_base`` seconds doubling up to ``backoff_max``, with jitter)
    or the server's ``Retry-After`` (capped at ``retry_after_max``). Other 4xx fail at once.
    ``usage`` accumulates the token counts the server reports. The API key is sent as a bearer
    token only when given, and never appears in messages, logs or ``repr``; neither do credentials
    in the base URL (``base_url`` shows them as ``***``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        extra_headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        retry_after_max: float = 30.0,
        stream_usage: bool = True,
    ) -> None:
        self.model = model
        self.usage = Usage()
        # Ask for token usage in streams (stream_options.include_usage); dropped automatically
        # for servers that reject the field.
        self.stream_usage = stream_usage
        self._http = ApiClient(
            base_url,
            model=model,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
            transport=transport,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            retry_after_max=retry_after_max,
            what="LLM",
            url_setting=ENV_BASE_URL,
            key_setting=ENV_API_KEY,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> OpenAICompatibleLLM:
        """Like :func:`llm_from_env`, but raise LLMUnavailableError when no server is configured."""
        llm = llm_from_env(env, **kwargs)
        if llm is None:
            raise LLMUnavailableError(
                f"no LLM configured: set {ENV_BASE_URL} (e.g. http://localhost:8000/v1) and {ENV_MODEL}"
            )
        return llm

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def __repr__(self) -> str:
        key = "'***'" if self._http.has_key else "None"
        return f"OpenAICompatibleLLM(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAICompatibleLLM:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- API ------------------------------------------------------------------------------

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> str:
        """The assistant's reply to ``messages`` (empty when the server returns no content)."""
        body = self._body(messages, temperature, max_tokens, stop, stream=False)
        url = self._http.url("chat/completions")
        data = self._http.post_json("chat/completions", body)
        choices = data.get("choices") if isinstance(data, Mapping) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise LLMError(f"the LLM server at {url} returned no choices: {self._http.quote(json_text(data))!r}")
        message = choices[0].get("message")
        self.usage.add(data.get("usage"))
        return _text(message.get("content") if isinstance(message, Mapping) else None)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Generator[str, None, None]:
        """Yield the reply as text deltas as the server produces them.

        Nothing is sent until the first item is requested. Closing the iterator early closes
        the connection, which stops generation on servers that notice (vLLM, llama.cpp).
        """
        body = self._body(messages, temperature, max_tokens, stop, stream=True)
        url = self._http.url("chat/completions")
        resp = self._open_stream(body)
        usage: Mapping[str, Any] | None = None
        try:
            for payload in iter_sse_data(resp.iter_lines()):
                if payload.strip() == "[DONE]":
                    break
                for chunk in self._decode_chunk(payload, url):
                    # Some servers repeat cumulative usage on every chunk; the last one wins.
                    if isinstance(chunk.get("usage"), Mapping):
                        usage = chunk["usage"]
                    # The final chunk may carry no choices at all (OpenAI usage chunk, TGI, llama.cpp).
                    for choice in chunk.get("choices") or ():
                        if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta")
                        text = _text(delta.get("content") if isinstance(delta, Mapping) else None)
                        if text:
                            yield text
        except httpx.TransportError as e:
            raise self._http.transport_error(e, url) from e
        finally:
            resp.close()
        self.usage.add(usage)

    def complete_with_tools(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[Mapping[str, Any]],
        *,
        tool_choice: str | Mapping[str, Any] | None = "auto",
        temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> ToolReply:
        """Offer ``tools`` (OpenAI ``{"type": "function", "function": {...}}`` specs); return the reply.

        ``tool_choice`` is sent as given: "auto", "required", "none" or a specific function; None
        leaves it out (the server's default, "auto").
        """
        body = self._body(messages, temperature, max_tokens, None, stream=False)
        body["tools"] = [dict(t) for t in tools]
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        url = self._http.url("chat/completions")
        data = self._http.post_json("chat/completions", body)
        choices = data.get("choices") if isinstance(data, Mapping) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise LLMError(f"the LLM server at {url} returned no choices: {self._http.quote(json_text(data))!r}")
        message = choices[0].get("message")
        self.usage.add(data.get("usage"))
        if not isinstance(message, Mapping):
            return ToolReply("", [])
        calls = [_tool_call(c) for c in message.get("tool_calls") or () if isinstance(c, Mapping)]
        return ToolReply(_text(message.get("content")), [c for c in calls if c is not None])

    def list_models(self) -> list[str]:
        """The model ids the server serves (``GET {base_url}/models``)."""
        data = self._http.get_json("models")
        items = data.get("data") if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            url = self._http.url("models")
            raise LLMError(f"the LLM server at {url} returned no model list: {self._http.quote(json_text(data))!r}")
        return [str(m["id"]) for m in items if isinstance(m, Mapping) and "id" in m]

    # -- internals ------------------------------------------------------------------------

    def _body(
        self,
        messages: Sequence[ChatMessage],
        temperature: float,
        max_tokens: int | None,
        stop: Sequence[str] | None,
        *,
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in messages],
            "temperature": temperature,
            "stream": stream,
        }
        # Optional fields are omitted rather than sent as null: some servers reject nulls.
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stop:
            body["stop"] = list(stop)
        return body

    def _open_stream(self, body: dict[str, Any]) -> httpx.Response:
        if self.stream_usage:
            try:
                return self._http.open_stream("chat/completions", {**body, "stream_options": {"include_usage": True}})
            except LLMError as e:
                # Strict servers reject the optional field (HTTP 400/422 naming it): go without usage.
                if e.status_code not in (400, 422) or "stream_options" not in str(e):
                    raise
                log.info("the LLM server rejects stream_options; streaming without token usage")
                self.stream_usage = False
        return self._http.open_stream("chat/completions", body)

    def _decode_chunk(self, payload: str, url: str) -> list[Mapping[str, Any]]:
        try:
            chunks = [json.loads(payload)]
        except ValueError:
            # A server that omits the blank line between events sends several JSON objects
            # as one multi-line event; parse them line by line before giving up.
            try:
                chunks = [json.loads(line) for line in payload.splitlines() if line.strip()]
            except ValueError:
                raise LLMError(
                    f"the LLM server at {url} sent an invalid stream event: {self._http.quote(payload)!r}"
                ) from None
        for chunk in chunks:
            if not isinstance(chunk, Mapping):
                raise LLMError(
                    f"the LLM server at {url} sent an unexpected event: {self._http.quote(json_text(chunk))!r}"
                )
            error = chunk.get("error")
            if error is None and chunk.get("object") == "error":  # vLLM's error object
                error = chunk.get("message", chunk)
            if error is not None:
                if isinstance(error, Mapping):
                    error = error.get("message", error)
                raise LLMError(f"the LLM server at {url} failed mid-stream: {self._http.quote(json_text(error))}")
        return chunks


def _tool_call(raw: Mapping[str, Any]) -> ToolCall | None:
    """A tool call of a response; arguments come as a JSON string (OpenAI, vLLM) or an object (Ollama)."""
    function = raw.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        return None
    args = function.get("arguments")
    raw_args = args if isinstance(args, str) else json.dumps(args) if args is not None else ""
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            args = {}
    return ToolCall(
        function["name"], dict(args) if isinstance(args, Mapping) else {}, str(raw.get("id") or ""), raw_args
    )


def _text(content: object) -> str:
    """Message content as text: a string, null, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, Mapping))
    return ""


def llm_from_env(env: Mapping[str, str] | None = None, **kwargs: Any) -> OpenAICompatibleLLM | None:
    """The LLM configured by environment variables, or None when no server URL is set.

    ``KVGRAPH_LLM_BASE_URL`` (else ``OPENAI_BASE_URL``) is the server, including the API prefix
    such as /v1; ``KVGRAPH_LLM_MODEL`` the model; ``KVGRAPH_LLM_API_KEY`` (else ``OPENAI_API_KEY``)
    the optional key. A key alone configures nothing: kvgraph never defaults to a cloud service.
    Empty values count as unset. ``kwargs`` go to :class:`OpenAICompatibleLLM`.
    """
    env = os.environ if env is None else env

    def get(*names: str) -> str | None:
        for name in names:
            value = env.get(name, "").strip()
            if value:
                return value
        return None

    base_url = get(ENV_BASE_URL, "OPENAI_BASE_URL")
    if base_url is None:
        return None
    model = get(ENV_MODEL)
    if model is None:
        shown = redact_url(base_url.rstrip("/"))
        raise LLMUnavailableError(
            f"an LLM server is configured ({shown}) but {ENV_MODEL} is not set: set it to a model the "
            f"server serves (GET {shown}/models lists them)"
        )
    return OpenAICompatibleLLM(base_url, model, api_key=get(ENV_API_KEY, "OPENAI_API_KEY"), **kwargs)
