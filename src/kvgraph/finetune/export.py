"""Training files for the LLM: OpenAI chat JSONL, Hugging Face / TRL SFT JSONL, DPO preference pairs.

Every example is validated before it is written, and what is dropped is reported with the
reason, never silently:

- roles: ``system`` (optional, first), then ``user`` / ``assistant`` turns, ending with an
  ``assistant`` turn (what the model learns); no other role;
- every ``content`` a non-empty string;
- the conversation's token count at most ``max_tokens`` (OpenAI refuses longer examples).
  Tokens are counted with a tokenizer when one is given (``tokenizer.json``), else estimated
  as one per four characters plus four per message (OpenAI's rule of thumb).

``openai`` and ``sft`` both write ``{"messages": [...]}`` per line (TRL's conversational
format is OpenAI's); ``dpo`` writes TRL's conversational preference format,
``{"prompt": [system, user], "chosen": [assistant], "rejected": [assistant]}``, where the
rejected answer is the base model's answer to the same prompt (``base``), its answer without
the context (``no-context``), or, offline, another question's answer (``other``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError
from kvgraph.finetune.augment import ChatExample
from kvgraph.finetune.pairs import normalize_query
from kvgraph.llm.base import LLM, ChatMessage
from kvgraph.llm.cache import JsonlCache
from kvgraph.llm.jobs import run_jobs
from kvgraph.llm.prompts import NO_CONTEXT, answer_messages

FORMATS = ("openai", "sft", "dpo")
REJECTED = ("base", "no-context", "other")
ROLES = ("system", "user", "assistant")
DEFAULT_MAX_TOKENS = 16_384
MIN_OPENAI_EXAMPLES = 10  # the fine-tuning API refuses fewer

TokenCount = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """About one token per four characters (OpenAI's rule of thumb for English)."""
    return math.ceil(len(text) / 4)


def tokenizer_counter(tokenizer_json: str | os.PathLike[str]) -> TokenCount:
    """Exact counts with a Hugging Face ``tokenizer.json`` (the model's own, when you have it)."""
    from kvgraph.embed.tokens import HFTokenCounter

    counter = HFTokenCounter(tokenizer_json)
    return lambda text: counter.count([text])[0]


def conversation_tokens(messages: Sequence[dict[str, Any]], count: TokenCount = estimate_tokens) -> int:
    return 2 + sum(4 + count(str(m.get("content") or "")) for m in messages)


def check_messages(messages: object) -> str | None:
    """Why a conversation cannot be trained on, or None when it can."""
    if not isinstance(messages, list) or not messages:
        return "no messages"
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"message {i} is not an object"
        role = m.get("role")
        if role not in ROLES:
            return f"message {i} has role {role!r} (allowed: {', '.join(ROLES)})"
        if role == "system" and i != 0:
            return f"message {i}: a system message must come first"
        content = m.get("content")
        if not isinstance(content, str) or not content.strip():
            return f"message {i} ({role}) has empty content"
    turns = [m["role"] for m in messages if m["role"] != "system"]
    if not turns or turns[0] != "user":
        return "the conversation must start with a user message"
    if turns[-1] != "assistant":
        return "the conversation must end with an assistant message"
    if any(a == b for a, b in itertools.pairwise(turns)):
        return "user and assistant messages must alternate"
    return None


@dataclass
class Dropped:
    index: int
    query: str
    reason: str


@dataclass
class ExportReport:
    path: str
    format: str
    written: int
    max_tokens: int
    tokens_total: int = 0
    tokens_largest: int = 0
    token_count: str = "estimate"
    dropped: list[Dropped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "written": self.written,
            "dropped": len(self.dropped),
            "dropped_by_reason": _reasons(self.dropped),
            "max_tokens": self.max_tokens,
            "tokens_total": self.tokens_total,
            "tokens_largest": self.tokens_largest,
            "token_count": self.token_count,
            "warnings": self.warnings,
        }


def _reasons(dropped: Sequence[Dropped]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dropped:
        key = d.reason.split(":")[0] if d.reason.startswith("over") else d.reason
        out[key] = out.get(key, 0) + 1
    return out


def _write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def export_chat(
    examples: Sequence[ChatExample],
    path: str | os.PathLike[str],
    fmt: str = "openai",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    count: TokenCount | None = None,
) -> ExportReport:
    """Validate and write the examples as ``{"messages": [...]}`` lines (``openai`` or ``sft``)."""
    if fmt not in ("openai", "sft"):
        raise InvalidInputError(f"chat format must be openai or sft, got {fmt!r}")
    report = ExportReport(str(path), fmt, 0, max_tokens, token_count="tokenizer" if count else "estimate")
    records = []
    for i, ex in enumerate(examples):
        tokens = _check(ex.messages, max_tokens, count or estimate_tokens)
        if isinstance(tokens, str):
            report.dropped.append(Dropped(i, ex.query, tokens))
            continue
        records.append({"messages": [{"role": m["role"], "content": m["content"]} for m in ex.messages]})
        report.tokens_total += tokens
        report.tokens_largest = max(report.tokens_largest, tokens)
    report.written = len(records)
    if not records:
        raise InvalidInputError(f"no example left to write to {path}: {_reasons(report.dropped) or 'none given'}")
    if fmt == "openai" and len(records) < MIN_OPENAI_EXAMPLES:
        report.warnings.append(
            f"OpenAI fine-tuning needs at least {MIN_OPENAI_EXAMPLES} examples, this file has {len(records)}"
        )
    _write_jsonl(records, Path(path))
    return report


def _check(messages: object, max_tokens: int, count: TokenCount) -> int | str:
    reason = check_messages(messages)
    if reason is not None:
        return reason
    assert isinstance(messages, list)
    tokens = conversation_tokens(messages, count)
    if tokens > max_tokens:
        return f"over {max_tokens} tokens: {tokens}"
    return tokens


# ---------------------------------------------------------------------- DPO


def rejected_answers(
    examples: Sequence[ChatExample],
    how: str,
    llm: LLM | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    concurrency: int = 4,
    seed: int = 0,
) -> list[str]:
    """A rejected answer per example (see the module docstring); LLM answers are cached in ``cache_path``."""
    if how not in REJECTED:
        raise InvalidInputError(f"rejected must be one of {', '.join(REJECTED)}, got {how!r}")
    if how == "other":
        if len(examples) < 2:
            raise InvalidInputError("rejected = other needs at least two examples")
        rng = random.Random(seed)
        out = []
        for i in range(len(examples)):
            j = rng.randrange(len(examples) - 1)
            out.append(examples[j if j < i else j + 1].answer)
        return out
    if llm is None:
        raise InvalidInputError(f"rejected = {how} needs an LLM (the base model): configure one, or use other")
    cache = JsonlCache(cache_path)
    model = str(getattr(llm, "model", "") or "")

    def prompt(ex: ChatExample) -> list[ChatMessage]:
        if how == "no-context":
            return answer_messages(ex.query, NO_CONTEXT)
        return [ChatMessage(m["role"], m["content"]) for m in ex.messages if m["role"] != "assistant"]

    def key(ex: ChatExample) -> str:
        body = json.dumps([how, model, [(m.role, m.content) for m in prompt(ex)]], ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()

    results: dict[int, str] = {}
    todo = []
    for i, ex in enumerate(examples):
        hit = cache.get(key(ex))
        if isinstance(hit, str):
            results[i] = hit
        else:
            todo.append(i)

    def work(i: int) -> str:
        return llm.complete(prompt(examples[i]), temperature=0.0).strip()

    def done(i: int, text: str) -> None:
        results[i] = text
        if text:
            cache.put(key(examples[i]), text, {"model": model, "rejected": how})

    run_jobs(todo, work, done, concurrency, name="kvgraph-rejected")
    return [results[i] for i in range(len(examples))]


def export_dpo(
    examples: Sequence[ChatExample],
    rejected: Sequence[str],
    path: str | os.PathLike[str],
    max_tokens: int = DEFAULT_MAX_TOKENS,
    count: TokenCount | None = None,
) -> ExportReport:
    """Validate and write preference pairs; a rejected answer that is empty or equals the chosen one is dropped."""
    if len(rejected) != len(examples):
        raise InvalidInputError(f"{len(examples)} examples but {len(rejected)} rejected answers")
    report = ExportReport(str(path), "dpo", 0, max_tokens, token_count="tokenizer" if count else "estimate")
    records = []
    for i, (ex, bad) in enumerate(zip(examples, rejected)):
        tokens = _check(ex.messages, max_tokens, count or estimate_tokens)
        if isinstance(tokens, str):
            report.dropped.append(Dropped(i, ex.query, tokens))
            continue
        if not bad.strip():
            report.dropped.append(Dropped(i, ex.query, "empty rejected answer"))
            continue
        if normalize_query(bad) == normalize_query(ex.answer):
            report.dropped.append(Dropped(i, ex.query, "rejected answer equals the chosen one"))
            continue
        *prompt, chosen = ex.messages
        records.append(
            {
                "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
                "chosen": [{"role": "assistant", "content": chosen["content"]}],
                "rejected": [{"role": "assistant", "content": bad}],
            }
        )
        report.tokens_total += tokens
        report.tokens_largest = max(report.tokens_largest, tokens)
    report.written = len(records)
    if not records:
        raise InvalidInputError(f"no preference pair left to write to {path}: {_reasons(report.dropped)}")
    _write_jsonl(records, Path(path))
    return report
