"""Credentials in base URLs, API keys and secret headers never reach a message, a repr or a log.

Every failure path of the HTTP clients is driven for real against the loopback server (or a
closed port): retries, HTTP errors, invalid JSON, broken streams, refused connections,
timeouts, bad URLs. The secret must not appear anywhere in what a user or a log could see,
including chained exceptions in a formatted traceback.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from kvgraph.embed.openai_compat import OpenAICompatibleEmbedder
from kvgraph.errors import InvalidInputError, KvgraphError
from kvgraph.llm import ChatMessage, LLMError, OpenAICompatibleLLM, llm_from_env
from kvgraph.testing.openai_server import FakeOpenAIServer
from kvgraph.transport import normalize_base_url, redact_secrets, redact_url

SECRET = "sk-url-cred-9f8e7d6c5b4a"
MSGS = [ChatMessage("user", "hello")]


def with_credentials(
    server: FakeOpenAIServer, user: str = "alice", secret: str = SECRET, port: int | None = None
) -> str:
    return f"http://{user}:{secret}@127.0.0.1:{port or server.port}/v1"


def everything_shown(err: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join([str(err), repr(err), "".join(traceback.format_exception(err)), caplog.text])


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets or (SECRET,):
        assert secret not in text, f"secret leaked in: {text[:2000]}"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def test_url_credentials_are_used_but_never_shown(openai_server: FakeOpenAIServer, logs: Any) -> None:
    llm = OpenAICompatibleLLM(with_credentials(openai_server), "test-model", max_retries=0)
    assert llm.complete(MSGS)
    sent = openai_server.requests[0].headers["authorization"]
    assert sent == "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert llm.base_url == f"http://***@127.0.0.1:{openai_server.port}/v1"
    assert_hidden(repr(llm) + llm.base_url + logs.text)


FailureSetup = Callable[[FakeOpenAIServer], None]
FAILURES: dict[str, FailureSetup] = {
    "retried 503s": lambda s: s.fail_next(5, 503),
    "500": lambda s: s.fail_next(1, 500),
    "429": lambda s: s.fail_next(5, 429),
    "400": lambda s: s.fail_next(1, 400),
    "invalid JSON": lambda s: setattr(s, "malformed", True),
    "error mid-stream": lambda s: setattr(s, "stream_error", f"boom {SECRET}"),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
@pytest.mark.parametrize("call", ["complete", "stream", "list_models"])
def test_failures_never_show_url_credentials(openai_server: FakeOpenAIServer, logs: Any, name: str, call: str) -> None:
    FAILURES[name](openai_server)
    llm = OpenAICompatibleLLM(with_credentials(openai_server), "test-model", max_retries=2)
    try:
        if call == "complete":
            llm.complete(MSGS)
        elif call == "stream":
            "".join(llm.stream(MSGS))
        else:
            llm.list_models()
    except KvgraphError as err:
        assert "***@127.0.0.1" in str(err) or "127.0.0.1" not in str(err)
        assert_hidden(everything_shown(err, logs))
    assert_hidden(logs.text)


def test_wrong_path_and_closed_port_and_timeout(openai_server: FakeOpenAIServer, unused_port: int, logs: Any) -> None:
    cases = [
        (with_credentials(openai_server).replace("/v1", "/v2"), {}),  # 404: the wrong API prefix
        (with_credentials(openai_server, port=unused_port), {}),  # nothing listening
        (with_credentials(openai_server), {"timeout": 0.2}),
    ]
    openai_server.delay = 1.0
    for url, kwargs in cases:
        llm = OpenAICompatibleLLM(url, "test-model", max_retries=1, **kwargs)
        with pytest.raises(LLMError) as info:
            llm.complete(MSGS)
        assert_hidden(everything_shown(info.value, logs))
        llm.close()


def test_user_only_credentials_a_key_as_username(openai_server: FakeOpenAIServer, logs: Any) -> None:
    openai_server.fail_next(1, 500)
    llm = OpenAICompatibleLLM(f"http://{SECRET}@127.0.0.1:{openai_server.port}/v1", "test-model", max_retries=0)
    with pytest.raises(LLMError) as info:
        llm.complete(MSGS)
    assert_hidden(everything_shown(info.value, logs) + repr(llm))


def test_secret_extra_headers_and_key_are_redacted_from_echoes(openai_server: FakeOpenAIServer, logs: Any) -> None:
    header_secret = "azure-key-0a1b2c3d4e"
    openai_server.reply = lambda _: f"echo {header_secret} and {SECRET}"
    openai_server.malformed = True  # the error quotes the body
    llm = OpenAICompatibleLLM(
        openai_server.base_url, "test-model", api_key=SECRET, extra_headers={"api-key": header_secret}, max_retries=0
    )
    with pytest.raises(LLMError) as info:
        llm.complete(MSGS)
    assert "echo ***" in str(info.value)
    assert_hidden(everything_shown(info.value, logs), SECRET, header_secret)


def test_embedder_with_url_credentials(openai_server: FakeOpenAIServer, logs: Any) -> None:
    emb = OpenAICompatibleEmbedder(with_credentials(openai_server, "bob"), "embed-model", max_retries=0)
    assert emb.embed(["a", "b"]).shape == (2, openai_server.embedding_dim)
    assert_hidden(repr(emb) + emb.base_url)
    openai_server.embedding_data_hook = lambda data: data[:1]  # one vector for two inputs
    with pytest.raises(LLMError) as info:
        emb.embed(["a", "b"])
    assert "***@127.0.0.1" in str(info.value)
    assert_hidden(everything_shown(info.value, logs))
    openai_server.embedding_data_hook = None
    openai_server.fail_next(1, 503)
    with pytest.raises(LLMError) as info:
        emb.embed(["a"])
    assert_hidden(everything_shown(info.value, logs))


def test_configuration_errors_do_not_show_credentials() -> None:
    with pytest.raises(KvgraphError) as info:
        llm_from_env({"KVGRAPH_LLM_BASE_URL": f"http://alice:{SECRET}@llm.example/v1"})
    assert "KVGRAPH_LLM_MODEL" in str(info.value) and "***@llm.example" in str(info.value)
    assert_hidden("".join(traceback.format_exception(info.value)))
    for bad in (f"ftp://alice:{SECRET}@host/v1", f"http://alice:{SECRET}@[::bad/v1", f"alice:{SECRET}@host"):
        with pytest.raises(InvalidInputError) as err:
            normalize_base_url(bad)
        assert "invalid base URL" in str(err.value)
        assert_hidden("".join(traceback.format_exception(err.value)))


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"GET http://alice:{SECRET}@host/v1/models failed", "http://***@host/v1/models"),
        (f"https://{SECRET}@host/x", "https://***@host/x"),
        (f"url=http://host/v1?api_key={SECRET}&model=m", "?api_key=***&model=m"),
        (f"Authorization: Bearer {SECRET}", "Authorization: ***"),
        (f'{{"api_key": "{SECRET}", "model": "m"}}', '"api_key": "***"'),
        (f"token rejected: Bearer {SECRET}", "Bearer ***"),
        (f"x-api-key={SECRET} was refused", "x-api-key=***"),
    ],
)
def test_redact_secrets_catches_credential_shapes(text: str, kept: str) -> None:
    out = redact_secrets(text)
    assert SECRET not in out and kept in out


def test_redact_url_handles_percent_encoded_and_plain_urls() -> None:
    assert redact_url("http://localhost:8000/v1") == "http://localhost:8000/v1"
    assert redact_url("http://u:p%40ss@h/v1") == "http://***@h/v1"
    assert redact_secrets("server said: wrong password p@ss", ["p@ss"]) == "server said: wrong password ***"
