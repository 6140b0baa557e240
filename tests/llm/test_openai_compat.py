"""OpenAICompatibleLLM against a real loopback server speaking the OpenAI protocol."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from kvgraph.errors import InvalidInputError, KvgraphError
from kvgraph.llm import (
    LLM,
    ChatMessage,
    LLMError,
    LLMUnavailableError,
    OpenAICompatibleLLM,
    llm_from_env,
    require_llm,
)
from kvgraph.testing.openai_server import FakeOpenAIServer
from kvgraph.transport import iter_sse_data

KEY = "sk-test-SECRET-0123456789abcdef"
MSGS = [ChatMessage("system", "Be brief."), ChatMessage("user", "hello there")]


def make(server: FakeOpenAIServer, **kw: Any) -> OpenAICompatibleLLM:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("backoff_base", 0.01)
    return OpenAICompatibleLLM(server.base_url, "test-model", **kw)


# -- completions ----------------------------------------------------------------------------


def test_complete_sends_openai_request_and_returns_reply(openai_server: FakeOpenAIServer) -> None:
    llm = make(openai_server)
    assert llm.complete(MSGS, temperature=0.3, max_tokens=50, stop=["\n\n"]) == "You said: hello there"
    [req] = openai_server.requests
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.body == {
        "model": "test-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
        "temperature": 0.3,
        "stream": False,
        "max_tokens": 50,
        "stop": ["\n\n"],
    }
    assert "authorization" not in req.headers  # no key given, no header


def test_complete_omits_unset_options(openai_server: FakeOpenAIServer) -> None:
    make(openai_server).complete(MSGS)
    body = openai_server.requests[0].body
    assert "max_tokens" not in body and "stop" not in body
    assert body["temperature"] == 0.0


def test_scripted_reply_sees_messages(openai_server: FakeOpenAIServer) -> None:
    openai_server.reply = lambda msgs: f"{len(msgs)} messages, first role {msgs[0]['role']}"
    assert make(openai_server).complete(MSGS) == "2 messages, first role system"


def test_base_url_trailing_slash_is_accepted(openai_server: FakeOpenAIServer) -> None:
    llm = OpenAICompatibleLLM(openai_server.base_url + "/", "test-model")
    assert llm.base_url == openai_server.base_url
    assert llm.complete(MSGS)
    assert openai_server.requests[0].path == "/v1/chat/completions"


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://host/v1", "not a url"])
def test_invalid_base_url_is_rejected(url: str) -> None:
    with pytest.raises(InvalidInputError, match="base URL"):
        OpenAICompatibleLLM(url, "m")


def test_satisfies_llm_protocol(openai_server: FakeOpenAIServer) -> None:
    assert isinstance(make(openai_server), LLM)


def test_list_models(openai_server: FakeOpenAIServer) -> None:
    assert make(openai_server).list_models() == ["test-model", "embed-model"]
    assert openai_server.requests[0].method == "GET"


# -- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [{}, {"sse_no_space": True}, {"sse_crlf": True}, {"empty_final_choices": False}],
    ids=["openai", "tgi-no-space", "crlf", "no-empty-final"],
)
def test_stream_yields_deltas(openai_server: FakeOpenAIServer, shape: dict[str, bool]) -> None:
    for name, value in shape.items():
        setattr(openai_server, name, value)
    openai_server.reply = lambda _: "one two three four"
    deltas = list(make(openai_server).stream(MSGS))
    # Role chunk, keep-alive comment, null content and the empty final chunk yield nothing.
    assert deltas == ["one", " two", " three", " four"]
    [req] = openai_server.requests
    assert req.body["stream"] is True
    assert req.headers["accept"] == "text/event-stream"


def test_stream_is_lazy_and_can_stop_early(openai_server: FakeOpenAIServer) -> None:
    openai_server.reply = lambda _: "a b c d e f"
    it = make(openai_server).stream(MSGS)
    assert openai_server.requests == []  # nothing sent before iteration
    assert next(it) == "a"
    it.close()  # closes the connection without error
    assert len(openai_server.requests) == 1


def test_stream_counts_usage_and_falls_back_when_stream_options_rejected(openai_server: FakeOpenAIServer) -> None:
    llm = make(openai_server)
    "".join(llm.stream(MSGS))
    assert openai_server.requests[0].body["stream_options"] == {"include_usage": True}
    assert (llm.usage.prompt_tokens, llm.usage.completion_tokens, llm.usage.requests) == (4, 4, 1)

    openai_server.reject_fields = ("stream_options",)  # a strict server
    assert "".join(llm.stream(MSGS)) == "You said: hello there"
    bodies = [r.body for r in openai_server.requests[1:]]
    assert len(bodies) == 2 and "stream_options" in bodies[0] and "stream_options" not in bodies[1]
    assert llm.usage.requests == 2 and llm.usage.prompt_tokens == 4  # no usage reported the second time
    "".join(llm.stream(MSGS))
    assert len(openai_server.requests) == 4  # remembered: no rejected attempt any more


def test_stream_error_event_raises(openai_server: FakeOpenAIServer) -> None:
    openai_server.stream_error = "CUDA out of memory"
    it = make(openai_server).stream(MSGS)
    assert next(it) == "You"
    with pytest.raises(LLMError, match="mid-stream: CUDA out of memory"):
        list(it)


def test_stream_malformed_event_raises_with_excerpt(openai_server: FakeOpenAIServer) -> None:
    openai_server.malformed = True
    with pytest.raises(LLMError, match=r"invalid stream event: '\{\"choices\"") as info:
        list(make(openai_server).stream(MSGS))
    assert not isinstance(info.value, LLMUnavailableError)


def test_stream_retries_before_first_byte(openai_server: FakeOpenAIServer) -> None:
    openai_server.fail_next(1, 502)
    assert "".join(make(openai_server).stream(MSGS)) == "You said: hello there"
    assert len(openai_server.requests) == 2


def test_sse_parser_rules() -> None:
    lines = [": comment", "event: message", 'data: {"a":', "data:1}", "", "", "id: 7", "data: [DONE]"]
    assert list(iter_sse_data(lines)) == ['{"a":\n1}', "[DONE]"]


# -- retries --------------------------------------------------------------------------------


def test_retries_5xx_then_succeeds(openai_server: FakeOpenAIServer, backoff_sleeps: list[float]) -> None:
    openai_server.fail_next(2, 503)
    llm = make(openai_server, max_retries=2, backoff_base=0.1)
    assert llm.complete(MSGS) == "You said: hello there"
    assert len(openai_server.requests) == 3
    # Exponential with jitter in [0.5, 1]: 0.1 * 2**(n-1) * jitter.
    assert len(backoff_sleeps) == 2
    assert 0.05 <= backoff_sleeps[0] <= 0.1 and 0.1 <= backoff_sleeps[1] <= 0.2


def test_gives_up_after_max_retries(openai_server: FakeOpenAIServer) -> None:
    openai_server.fail_next(5, 500)
    with pytest.raises(LLMError, match=r"HTTP 500\) after 3 attempts: scripted failure 500") as info:
        make(openai_server, max_retries=2).complete(MSGS)
    assert info.value.status_code == 500
    assert len(openai_server.requests) == 3


def test_429_respects_retry_after_capped(openai_server: FakeOpenAIServer, backoff_sleeps: list[float]) -> None:
    openai_server.fail_next(1, 429, retry_after="2")
    openai_server.fail_next(1, 429, retry_after="120")
    assert make(openai_server, retry_after_max=30.0).complete(MSGS)
    assert backoff_sleeps == [2.0, 30.0]
    assert len(openai_server.requests) == 3


@pytest.mark.parametrize("status", [400, 422])
def test_no_retry_on_client_error(openai_server: FakeOpenAIServer, status: int) -> None:
    openai_server.fail_next(3, status)
    with pytest.raises(LLMError, match=f"rejected the request \\(HTTP {status}\\): scripted failure") as info:
        make(openai_server).complete(MSGS)
    assert info.value.status_code == status
    assert len(openai_server.requests) == 1


def test_unknown_model_404_names_model_and_url(openai_server: FakeOpenAIServer) -> None:
    llm = OpenAICompatibleLLM(openai_server.base_url, "no-such-model", backoff_base=0.01)
    with pytest.raises(LLMError) as info:
        llm.complete(MSGS)
    msg = str(info.value)
    assert "'no-such-model'" in msg and f"{openai_server.base_url}/chat/completions" in msg
    assert "does not exist" in msg and "/v1" in msg
    assert len(openai_server.requests) == 1


def test_wrong_prefix_404(openai_server: FakeOpenAIServer) -> None:
    base = openai_server.base_url.removesuffix("/v1")  # forgot the /v1 prefix
    with pytest.raises(LLMError, match="or path not found"):
        OpenAICompatibleLLM(base, "test-model").complete(MSGS)


def test_unreachable_server_fails_fast_with_url(unused_port: int, backoff_sleeps: list[float]) -> None:
    base = f"http://127.0.0.1:{unused_port}/v1"
    llm = OpenAICompatibleLLM(base, "m", max_retries=2, backoff_base=0.01)
    start = time.monotonic()
    with pytest.raises(LLMUnavailableError) as info:
        llm.complete(MSGS)
    assert time.monotonic() - start < 2.0
    msg = str(info.value)
    assert f"{base}/chat/completions" in msg and "KVGRAPH_LLM_BASE_URL" in msg and "after 3 attempts" in msg
    assert len(backoff_sleeps) == 2  # connect errors are retried


def test_unreachable_server_when_streaming(unused_port: int) -> None:
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{unused_port}/v1", "m", max_retries=0)
    with pytest.raises(LLMUnavailableError, match="cannot reach the LLM server"):
        next(llm.stream(MSGS))


def test_timeout(openai_server: FakeOpenAIServer) -> None:
    openai_server.delay = 2.0
    llm = make(openai_server, timeout=0.2, max_retries=1)
    start = time.monotonic()
    with pytest.raises(LLMError, match=r"did not answer within 0.2s after 2 attempts") as info:
        llm.complete(MSGS)
    assert time.monotonic() - start < 1.5
    assert not isinstance(info.value, LLMUnavailableError)  # it is reachable, just slow
    assert len(openai_server.requests) == 2  # timeouts are retried


def test_malformed_json_reports_excerpt(openai_server: FakeOpenAIServer) -> None:
    openai_server.malformed = True
    with pytest.raises(LLMError, match=r"returned invalid JSON \(HTTP 200\): '\{\"id\": \"chatcmpl-1\"") as info:
        make(openai_server).complete(MSGS)
    assert len(openai_server.requests) == 1
    assert isinstance(info.value, KvgraphError)


# -- keys and secrets -----------------------------------------------------------------------


def test_bearer_key_is_sent(openai_server: FakeOpenAIServer) -> None:
    openai_server.require_key = KEY
    assert make(openai_server, api_key=KEY).complete(MSGS)
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_missing_key_401(openai_server: FakeOpenAIServer) -> None:
    openai_server.require_key = KEY
    with pytest.raises(LLMError, match=r"requires an API key.*KVGRAPH_LLM_API_KEY") as info:
        make(openai_server).complete(MSGS)
    assert info.value.status_code == 401
    assert len(openai_server.requests) == 1  # not retried


def test_rejected_key_never_leaks(openai_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    openai_server.require_key = "sk-the-right-one"
    openai_server.fail_next(1, 503)  # also exercise the retry log line
    llm = make(openai_server, api_key=KEY)
    assert KEY not in repr(llm) and "***" in repr(llm)
    with pytest.raises(LLMError) as info:
        llm.complete(MSGS)
    err = info.value
    assert "rejected the API key (HTTP 401)" in str(err)
    # The server echoed the key in its error body; none of it may come through.
    for text in (str(err), repr(err), str(err.__cause__), str(err.__context__), caplog.text):
        assert KEY not in text
    assert caplog.records  # the retry was logged, and without the key


def test_key_is_redacted_from_quoted_server_text(openai_server: FakeOpenAIServer) -> None:
    openai_server.reply = lambda _: f"leaked {KEY}"
    openai_server.malformed = True  # invalid JSON: the error quotes the body, which holds the key
    llm = make(openai_server, api_key=KEY)
    with pytest.raises(LLMError) as info:
        llm.complete(MSGS)
    assert "returned invalid JSON" in str(info.value) and "leaked ***" in str(info.value)
    assert KEY not in str(info.value)


# -- usage ----------------------------------------------------------------------------------


def test_usage_accumulates(openai_server: FakeOpenAIServer) -> None:
    llm = make(openai_server)
    llm.complete(MSGS)  # prompt: 2 + 2 words, reply: 4 words
    openai_server.reply = lambda _: "ok"
    llm.complete([ChatMessage("user", "x")])
    assert (llm.usage.prompt_tokens, llm.usage.completion_tokens) == (4 + 1, 4 + 1)
    assert llm.usage.total_tokens == 10 and llm.usage.requests == 2
    openai_server.fail_next(1, 400)
    with pytest.raises(LLMError):
        llm.complete(MSGS)
    assert llm.usage.requests == 2  # failures cost nothing


# -- configuration --------------------------------------------------------------------------


def test_llm_from_env_unset_returns_none() -> None:
    assert llm_from_env({}) is None
    assert llm_from_env({"KVGRAPH_LLM_BASE_URL": "  ", "OPENAI_API_KEY": KEY}) is None  # a key alone is not enough


def test_llm_from_env_reads_kvgraph_variables(openai_server: FakeOpenAIServer) -> None:
    env = {
        "KVGRAPH_LLM_BASE_URL": openai_server.base_url,
        "KVGRAPH_LLM_MODEL": "test-model",
        "KVGRAPH_LLM_API_KEY": KEY,
        "OPENAI_BASE_URL": "http://elsewhere:1/v1",
        "OPENAI_API_KEY": "sk-other",
    }
    llm = llm_from_env(env, timeout=3.0)
    assert llm is not None
    assert (llm.base_url, llm.model) == (openai_server.base_url, "test-model")
    llm.complete(MSGS)
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_llm_from_env_falls_back_to_openai_variables(openai_server: FakeOpenAIServer) -> None:
    env = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": KEY, "KVGRAPH_LLM_MODEL": "test-model"}
    llm = llm_from_env(env)
    assert llm is not None and llm.base_url == openai_server.base_url
    llm.complete(MSGS)
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_llm_from_env_without_model_explains() -> None:
    with pytest.raises(LLMUnavailableError, match=r"KVGRAPH_LLM_MODEL is not set.*http://h:1/v1/models"):
        llm_from_env({"KVGRAPH_LLM_BASE_URL": "http://h:1/v1/"})


def test_from_env_classmethod_requires_configuration() -> None:
    with pytest.raises(LLMUnavailableError, match="KVGRAPH_LLM_BASE_URL"):
        OpenAICompatibleLLM.from_env({})
    llm = OpenAICompatibleLLM.from_env({"KVGRAPH_LLM_BASE_URL": "http://h:1/v1", "KVGRAPH_LLM_MODEL": "m"})
    assert llm.model == "m"


def test_require_llm(openai_server: FakeOpenAIServer) -> None:
    with pytest.raises(LLMUnavailableError) as info:
        require_llm(None, "Answering questions")
    assert str(info.value).startswith("Answering questions needs an LLM: set KVGRAPH_LLM_BASE_URL")
    assert isinstance(info.value, LLMError) and isinstance(info.value, KvgraphError)
    llm = make(openai_server)
    assert require_llm(llm, "x") is llm
