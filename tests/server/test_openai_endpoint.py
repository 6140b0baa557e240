"""The OpenAI-compatible endpoint, driven by the official ``openai`` Python package."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_support import KEY

openai = pytest.importorskip("openai", reason="the openai package is a dev dependency")


def client(server, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0, timeout=60)


def test_models_lists_the_knowledge_base_once_per_mode(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    ids = [m.id for m in client(s).models.list()]
    assert ids[0] == "kvgraph"
    assert {"kvgraph-dense", "kvgraph-sparse", "kvgraph-hybrid", "kvgraph-graph"} <= set(ids)


def test_a_completion_answers_from_the_knowledge_base_with_citations(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    completion = client(s).chat.completions.create(
        model="kvgraph",
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Which Wi-Fi channels on the 2.4 GHz band do not overlap?"},
        ],
        temperature=0.2,  # accepted, ignored
    )
    text = completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert "[1]" in text and "\n\nSources:\n[1] home-network-handbook.pdf p." in text
    citations = completion.model_extra["citations"]
    assert citations[0]["file_name"] == "home-network-handbook.pdf" and citations[0]["text"]
    assert completion.model_extra["kvgraph"]["question"]["standalone"].startswith("Which Wi-Fi channels")
    assert completion.usage.completion_tokens == len(text.split())


def test_streaming_completion_arrives_in_chunks_and_ends_with_citations(
    serve, sample_kb: Path, start_openai_server
) -> None:
    llm = start_openai_server(reply=lambda messages: "Clean the panels twice a year [1].")
    s = serve(sample_kb, kb_overrides={"llm_base_url": llm.base_url, "llm_model": "test-model"})
    stream = client(s).chat.completions.create(
        model="kvgraph-hybrid",
        messages=[{"role": "user", "content": "How often should solar panels be cleaned?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Clean the panels twice a year [1].")
    assert "Sources:\n[1] solar-maintenance.md" in text
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 4
    last = next(c for c in reversed(chunks) if c.choices)
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["citations"][0]["file_name"] == "solar-maintenance.md"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_earlier_messages_make_the_follow_up_standalone(serve, tmp_path: Path) -> None:
    from kvgraph.kb import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tea.md").write_text("# Green tea\n\nGreen tea is steeped at 80 degrees for two minutes.\n")
    (docs / "coffee.md").write_text("# Coffee\n\nEspresso is brewed for 25 seconds at 93 degrees.\n")
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs])
    s = serve(tmp_path / "kb")
    completion = client(s).chat.completions.create(
        model="kvgraph",
        messages=[
            {"role": "user", "content": "How is Green tea made?"},
            {"role": "assistant", "content": "It is steeped at 80 degrees [1]."},
            {"role": "user", "content": [{"type": "text", "text": "for how long?"}]},
        ],
    )
    assert completion.model_extra["kvgraph"]["question"]["method"] == "entities"
    assert completion.model_extra["citations"][0]["file_name"] == "tea.md"


def test_unknown_models_bad_messages_and_missing_keys_are_openai_errors(serve, sample_kb: Path) -> None:
    s = serve(sample_kb, api_key=KEY)
    with pytest.raises(openai.AuthenticationError):
        client(s, "wrong-key-wrong-key").models.list()
    good = client(s, KEY)
    assert good.models.list().data
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        good.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="last message must be a user message"):
        good.chat.completions.create(model="kvgraph", messages=[{"role": "assistant", "content": "hi"}])
