"""Augmented examples in the `ask` prompt, and the validated OpenAI / SFT / DPO files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvgraph.answer.synthesize import LLMAnswerer
from kvgraph.errors import InvalidInputError
from kvgraph.finetune.augment import AugmentConfig, ChatExample, augment, chat_messages, load_examples, save_examples
from kvgraph.finetune.export import (
    check_messages,
    conversation_tokens,
    export_chat,
    export_dpo,
    rejected_answers,
    tokenizer_counter,
)
from kvgraph.finetune.pairs import TrainingPair
from kvgraph.llm.openai_compat import OpenAICompatibleLLM
from kvgraph.schema import Node, NodeWithScore
from kvgraph.testing.openai_server import FakeOpenAIServer

CHUNKS = [
    Node(f"c{i}", text, {"file_name": f"doc{i}.md", "heading_path": f"Part {i}"}, ref_doc_id=f"doc{i}")
    for i, text in enumerate(
        [
            "The tower is 330 metres tall and was finished in 1889.",
            "Bees dance to show where flowers are.",
            "Compost needs three parts browns to one part greens.",
            "Routers should get a new administrator password.",
        ]
    )
]


class WordRetriever:
    """Ranks the chunks by words shared with the query (a real, deterministic retriever for the plumbing)."""

    def retrieve(self, query: str, k: int) -> list[NodeWithScore]:
        words = set(query.lower().split())
        scored = sorted(CHUNKS, key=lambda n: -len(words & set(n.text.lower().split())))
        return [NodeWithScore(n, float(len(words & set(n.text.lower().split())))) for n in scored[:k]]


PAIRS = [
    TrainingPair("How tall is the tower?", answer="It is 330 metres tall [1].", doc_id="doc0", positive_id="c0"),
    TrainingPair("Why do bees dance?", answer="To show where flowers are [1].", doc_id="doc1", positive_id="c1"),
    TrainingPair("No answer here?", doc_id="doc2"),
]


def test_the_prompt_is_the_one_ask_sends(llm: OpenAICompatibleLLM) -> None:
    hits = WordRetriever().retrieve("How tall is the tower?", 3)
    ours = chat_messages("How tall is the tower?", "It is tall [1].", hits, 12_000)
    theirs = LLMAnswerer(llm).messages("How tall is the tower?", hits)
    assert ours[:-1] == [{"role": m.role, "content": m.content} for m in theirs]
    assert ours[-1] == {"role": "assistant", "content": "It is tall [1]."}
    assert "[1] doc0.md" in ours[1]["content"]


def test_joined_and_separate_contexts() -> None:
    joined = augment(PAIRS, WordRetriever(), AugmentConfig(k=2))
    assert [e.kind for e in joined] == ["retrieved", "retrieved"]  # the pair without an answer is skipped
    assert joined[0].context_ids[0] == "c0" and len(joined[0].context_ids) == 2
    assert "[2]" in joined[0].messages[1]["content"]
    separate = augment(PAIRS, WordRetriever(), AugmentConfig(k=2, contexts="separate"))
    assert len(separate) == 4
    assert all(len(e.context_ids) == 1 and "[2]" not in e.messages[1]["content"] for e in separate)


def test_distractor_and_no_context_examples_keep_the_answer() -> None:
    pool = [NodeWithScore(n, 0.0) for n in CHUNKS]
    config = AugmentConfig(k=1, distractor_ratio=1.0, no_context_ratio=1.0, seed=3)
    examples = augment(PAIRS, WordRetriever(), config, distractors=pool)
    kinds = [e.kind for e in examples]
    assert kinds == ["retrieved", "distractor", "no-context"] * 2
    for e in examples:
        assert e.messages[-1]["content"] == e.answer
    distractors = [e for e in examples if e.kind == "distractor"]
    assert all(e.context_ids[0] not in (e.doc_id.replace("doc", "c"),) for e in distractors)
    assert all("(no passages were found)" in e.messages[1]["content"] for e in examples if e.kind == "no-context")
    with pytest.raises(InvalidInputError, match="pool of chunks"):
        augment(PAIRS, WordRetriever(), AugmentConfig(distractor_ratio=0.5))


def test_examples_round_trip(tmp_path: Path) -> None:
    examples = augment(PAIRS, WordRetriever(), AugmentConfig(k=1))
    path = save_examples(examples, tmp_path / "ex.jsonl")
    assert [e.to_dict() for e in load_examples(path)] == [e.to_dict() for e in examples]


def conversation(answer: str = "Yes [1].") -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Context: x\n\nQuestion: q?"},
        {"role": "assistant", "content": answer},
    ]


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([], "no messages"),
        ([{"role": "user", "content": "q"}], "must end with an assistant message"),
        ([{"role": "tool", "content": "x"}, {"role": "assistant", "content": "a"}], "role 'tool'"),
        ([{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}], "empty content"),
        ([{"role": "user", "content": "q"}, {"role": "system", "content": "s"}], "system message must come first"),
        ([{"role": "assistant", "content": "a"}], "must start with a user message"),
        (
            [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "alternate",
        ),
    ],
)
def test_invalid_conversations_are_named(messages: list[dict[str, str]], reason: str) -> None:
    got = check_messages(messages)
    assert got is not None and reason in got
    assert check_messages(conversation()) is None


def test_export_openai_drops_and_reports(tmp_path: Path) -> None:
    good = ChatExample(conversation(), "q?", "Yes [1].")
    long = ChatExample(conversation("word " * 2000), "long?", "...")
    empty = ChatExample(conversation(" "), "empty?", "")
    out = tmp_path / "train.jsonl"
    report = export_chat([good, long, empty, good], out, max_tokens=1000)
    assert report.written == 2
    assert [(d.index, d.reason.split(":")[0]) for d in report.dropped] == [
        (1, "over 1000 tokens"),
        (2, "message 2 (assistant) has empty content"),
    ]
    assert report.to_dict()["dropped_by_reason"] == {
        "over 1000 tokens": 1,
        "message 2 (assistant) has empty content": 1,
    }
    assert any("at least 10 examples" in w for w in report.warnings)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{"messages": conversation()}] * 2
    assert report.tokens_largest == conversation_tokens(conversation())
    with pytest.raises(InvalidInputError, match="no example left"):
        export_chat([empty], tmp_path / "none.jsonl")


def test_a_tokenizer_counts_exactly(tmp_path: Path, embedder: object) -> None:
    from tokenizers import Tokenizer

    path = embedder.model_dir / "tokenizer.json"  # type: ignore[attr-defined]
    count = tokenizer_counter(path)
    text = "composting needs greens and browns"
    reference = Tokenizer.from_file(str(path))
    reference.no_padding()
    assert count(text) == len(reference.encode(text, add_special_tokens=False).ids) == 7
    assert count("word " * 1000) == 1000  # no truncation at the model's window
    report = export_chat([ChatExample(conversation(), "q?", "Yes")], tmp_path / "t.jsonl", fmt="sft", count=count)
    assert report.token_count == "tokenizer" and report.written == 1


def test_dpo_with_other_answers_offline(tmp_path: Path) -> None:
    examples = [ChatExample(conversation(f"answer {i} [1]."), f"q{i}?", f"answer {i} [1].") for i in range(4)]
    bad = rejected_answers(examples, "other", seed=1)
    assert all(b != e.answer for b, e in zip(bad, examples))
    report = export_dpo(examples, bad, tmp_path / "dpo.jsonl")
    assert report.written == 4
    first = json.loads((tmp_path / "dpo.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]
    assert first["chosen"] == [{"role": "assistant", "content": "answer 0 [1]."}]
    assert first["rejected"][0]["content"] in {e.answer for e in examples[1:]}


def test_dpo_rejected_by_the_base_model_is_cached_and_equal_answers_dropped(
    tmp_path: Path, start_openai_server: type[FakeOpenAIServer]
) -> None:
    def reply(messages: list[dict[str, str]]) -> str:
        return "answer 0 [1]." if "q0" in messages[-1]["content"] else "I don't know from the given sources."

    server = start_openai_server(reply=reply)  # type: ignore[call-arg]
    client = OpenAICompatibleLLM(server.base_url, "test-model", max_retries=0)
    examples = [
        ChatExample(
            [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": f"Context: x\n\nQuestion: q{i}?"},
                {"role": "assistant", "content": f"answer {i} [1]."},
            ],
            f"q{i}?",
            f"answer {i} [1].",
        )
        for i in range(3)
    ]
    cache = tmp_path / "rejected.jsonl"
    bad = rejected_answers(examples, "base", client, cache)
    assert bad == ["answer 0 [1].", "I don't know from the given sources.", "I don't know from the given sources."]
    asked = len(server.requests_to("/v1/chat/completions"))
    assert asked == 3
    assert rejected_answers(examples, "base", client, cache) == bad
    assert len(server.requests_to("/v1/chat/completions")) == asked  # all from the cache
    report = export_dpo(examples, bad, tmp_path / "dpo.jsonl")
    assert report.written == 2 and report.dropped[0].reason == "rejected answer equals the chosen one"
    no_context = rejected_answers(examples[:1], "no-context", client, tmp_path / "nc.jsonl")
    last = server.requests_to("/v1/chat/completions")[-1].body["messages"][-1]["content"]
    assert "(no passages were found)" in last and "Question: q0?" in last and no_context
    client.close()
    with pytest.raises(InvalidInputError, match="needs an LLM"):
        rejected_answers(examples, "base", None)
