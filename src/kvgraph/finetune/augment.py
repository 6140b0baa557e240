"""Retrieval-augmented training examples (RA-DIT's LM fine-tuning): each pair with its retrieved context.

Every (question, answer) pair is sent through a kvgraph retriever (``KnowledgeBase.retriever()``
with any mode, filters or node references, or ``kb.graph.retriever()``); the top ``k`` chunks are
numbered and put into the very prompt ``kvgraph ask`` sends (:func:`kvgraph.llm.prompts.answer_messages`
and :func:`~kvgraph.llm.prompts.format_context`), and the answer is the assistant's reply. So the
model is trained on exactly what it will see at query time.

``contexts="joined"`` makes one example with the ``k`` chunks; ``"separate"`` makes ``k``
examples with one chunk each (RA-DIT fine-tunes on each retrieved chunk separately, which
multiplies the data and teaches the model to answer from a single, possibly irrelevant, chunk).

Robustness mixing (RA-DIT): with probability ``distractor_ratio`` a pair also gets an example
whose only context is a random chunk unrelated to it, and with ``no_context_ratio`` one with no
context at all, both keeping the reference answer, so the model learns to fall back on what it
knows when retrieval fails rather than to copy whatever it is shown.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError
from kvgraph.finetune.pairs import TrainingPair
from kvgraph.llm.prompts import answer_messages, format_context
from kvgraph.retrieve.base import Retriever
from kvgraph.schema import NodeWithScore, source_label

CONTEXT_MODES = ("joined", "separate")
KINDS = ("retrieved", "distractor", "no-context")
MAX_CONTEXT_CHARS = 12_000  # as kvgraph.answer.synthesize.LLMAnswerer


@dataclass
class ChatExample:
    """One training conversation (system, user with the numbered context, assistant) and where it came from."""

    messages: list[dict[str, str]]
    query: str
    answer: str
    kind: str = "retrieved"
    context_ids: list[str] = field(default_factory=list)
    doc_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "query": self.query,
            "answer": self.answer,
            "kind": self.kind,
            "context_ids": self.context_ids,
            "doc_id": self.doc_id,
        }


@dataclass
class AugmentConfig:
    k: int = 3
    contexts: str = "joined"
    distractor_ratio: float = 0.0
    no_context_ratio: float = 0.0
    seed: int = 0
    max_context_chars: int = MAX_CONTEXT_CHARS

    def check(self) -> None:
        if self.k < 1:
            raise InvalidInputError(f"k must be at least 1, got {self.k}")
        if self.contexts not in CONTEXT_MODES:
            raise InvalidInputError(f"contexts must be one of {', '.join(CONTEXT_MODES)}, got {self.contexts!r}")
        for name in ("distractor_ratio", "no_context_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{name.replace('_', ' ')} must be between 0 and 1, got {value}")


def chat_messages(question: str, answer: str, hits: Sequence[NodeWithScore], max_chars: int) -> list[dict[str, str]]:
    """The ``ask`` prompt for ``question`` over ``hits`` (numbered as ``ask`` numbers them), then ``answer``."""
    chunks: list[tuple[int, str, str]] = []
    budget = max_chars
    for hit in hits:
        text = hit.node.text.strip()
        if not text:
            continue
        if len(text) > budget:
            if chunks:
                break
            text = text[:budget]
        chunks.append((len(chunks) + 1, source_label(hit.node.metadata), text))
        budget -= len(text)
        if budget <= 0:
            break
    messages = [{"role": m.role, "content": m.content} for m in answer_messages(question, format_context(chunks))]
    return [*messages, {"role": "assistant", "content": answer}]


def augment(
    pairs: Sequence[TrainingPair],
    retriever: Retriever,
    config: AugmentConfig | None = None,
    distractors: Sequence[NodeWithScore] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[ChatExample]:
    """Chat examples for the pairs that have an answer (see the module docstring); seeded, in pair order.

    ``distractors`` is the pool random unrelated chunks are drawn from (e.g. every chunk of the
    knowledge base); a drawn chunk that is among the pair's retrieved ones or from its document
    is drawn again.
    """
    cfg = config or AugmentConfig()
    cfg.check()
    if cfg.distractor_ratio > 0 and not distractors:
        raise InvalidInputError("a distractor ratio needs a pool of chunks to draw distractors from")
    rng = random.Random(cfg.seed)
    out: list[ChatExample] = []
    usable = [p for p in pairs if p.answer.strip()]
    for n, pair in enumerate(usable, start=1):
        hits = retriever.retrieve(pair.query, cfg.k)
        ids = [h.node.id for h in hits]
        if cfg.contexts == "joined":
            groups = [hits]
        else:
            groups = [[h] for h in hits] or [[]]
        for group in groups:
            out.append(
                ChatExample(
                    chat_messages(pair.query, pair.answer, group, cfg.max_context_chars),
                    pair.query,
                    pair.answer,
                    "retrieved",
                    [h.node.id for h in group],
                    pair.doc_id,
                )
            )
        if cfg.distractor_ratio and rng.random() < cfg.distractor_ratio:
            unrelated = _draw(distractors, set(ids) | {pair.positive_id}, pair.doc_id, rng)
            if unrelated is not None:
                messages = chat_messages(pair.query, pair.answer, [unrelated], cfg.max_context_chars)
                out.append(
                    ChatExample(messages, pair.query, pair.answer, "distractor", [unrelated.node.id], pair.doc_id)
                )
        if cfg.no_context_ratio and rng.random() < cfg.no_context_ratio:
            messages = chat_messages(pair.query, pair.answer, [], cfg.max_context_chars)
            out.append(ChatExample(messages, pair.query, pair.answer, "no-context", [], pair.doc_id))
        if progress is not None:
            progress(n, len(usable))
    return out


def _draw(pool: Sequence[NodeWithScore], avoid: set[str], doc_id: str, rng: random.Random) -> NodeWithScore | None:
    for _ in range(20):
        hit = pool[rng.randrange(len(pool))]
        if hit.node.id not in avoid and (not doc_id or (hit.node.ref_doc_id or hit.node.id) != doc_id):
            return hit
    return None


def save_examples(examples: Sequence[ChatExample], path: str | os.PathLike[str]) -> Path:
    """Write examples as JSONL (messages plus provenance), the input of ``kvgraph finetune export``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return target


def load_examples(path: str | os.PathLike[str]) -> list[ChatExample]:
    """Read examples written by :func:`save_examples` (or any JSONL with a ``messages`` list per line)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{p}: examples file not found")
    out: list[ChatExample] = []
    for n, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise InvalidInputError(f"{p}:{n}: not valid JSON ({e})") from None
        if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
            raise InvalidInputError(f"{p}:{n}: expected an object with a 'messages' list")
        messages = record["messages"]
        last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), {})
        last_assistant = next(
            (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "assistant"), {}
        )
        out.append(
            ChatExample(
                messages,
                str(record.get("query") or last_user.get("content") or ""),
                str(record.get("answer") or last_assistant.get("content") or ""),
                str(record.get("kind") or "retrieved"),
                [str(i) for i in record.get("context_ids") or []],
                str(record.get("doc_id") or ""),
            )
        )
    return out
