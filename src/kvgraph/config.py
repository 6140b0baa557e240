"""Knowledge-base settings: a TOML file in the KB directory, overridable by environment and flags.

Precedence, lowest first: defaults, ``<kb>/kvgraph.toml``, ``KVGRAPH_<NAME>`` environment
variables, explicit overrides (CLI flags or keyword arguments). Secrets (API keys) are never
written to the file: they come from the environment only.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError

CONFIG_FILE = "kvgraph.toml"


@dataclass
class Settings:
    # embedding: see kvgraph.embed.factory for the spec syntax
    embedder: str = "onnx-int8"
    embed_threads: int = 0  # texts embedded at once by the local model; 0 = one per core
    # chunking, in the embedder's own tokens; 254 + [CLS] + [SEP] = all-MiniLM-L6-v2's 256 window
    chunk_size: int = 254
    chunk_overlap: int = 32
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    # retrieval and answers
    top_k: int = 5
    mode: str = "dense"  # dense | sparse | hybrid | mmr | graph (after kvgraph graph build)
    answerer: str = "auto"  # auto (LLM when configured, else extractive) | extractive | llm
    llm_base_url: str = ""  # an OpenAI-compatible API root, e.g. http://localhost:11434/v1
    llm_model: str = ""
    expand_neighbors: bool = True  # give the answerer the chunks next to the top hits (kvgraph.retrieve.neighbors)
    max_answer_sentences: int = 6
    max_answer_chars: int = 900
    # node references (docs/retrieval.md): none | chunk | metadata | both. Search then matches the
    # small nodes (children, summaries, questions) and returns the parent chunks they point to.
    references: str = "none"
    parent_size: int = 1024  # tokens per parent chunk
    child_sizes: list[int] = field(default_factory=lambda: [128, 256, 512])  # chunk references' sizes
    n_questions: int = 5  # metadata references: questions (offline: key sentences) per parent
    reference_writer: str = "extractive"  # extractive (offline) | llm (needs llm_base_url; costs tokens)
    # a second stage over the first rerank_fetch_k hits: none | mmr | cross-encoder:MODEL_PATH_OR_NAME
    rerank: str = "none"
    rerank_fetch_k: int = 20

    def to_toml(self) -> str:
        lines = ["# kvgraph knowledge-base settings (API keys come from the environment, never from here)"]
        for f in fields(self):
            lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _coerce(name: str, value: Any, like: Any, source: str) -> Any:
    """Convert a value from TOML, the environment or a flag to the setting's type."""
    try:
        if isinstance(like, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(like, int):
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if isinstance(like, list):
            items = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else list(value)
            if like and isinstance(like[0], int):  # a list of ints (child_sizes)
                if any(isinstance(x, bool) for x in items):
                    raise ValueError(value)
                return [int(x) for x in items]
            return [str(x) for x in items]
        return str(value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"setting {name!r} from {source}: {value!r} is not a valid {type(like).__name__}"
        ) from None


def load_settings(
    kb_dir: str | os.PathLike[str] | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    s = Settings()
    known = {f.name: f for f in fields(s)}
    values: dict[str, Any] = {}
    if kb_dir is not None:
        path = Path(kb_dir) / CONFIG_FILE
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise InvalidInputError(f"{path}: not valid TOML: {e}") from None
            for k, v in data.items():
                if k not in known:
                    raise InvalidInputError(f"{path}: unknown setting {k!r}; known: {', '.join(sorted(known))}")
                values[k] = _coerce(k, v, getattr(s, k), str(path))
    for k in known:
        ev = env.get(f"KVGRAPH_{k.upper()}")
        if ev is not None and ev != "":
            values[k] = _coerce(k, ev, getattr(s, k), f"KVGRAPH_{k.upper()}")
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in known:
            raise InvalidInputError(f"unknown setting {k!r}; known: {', '.join(sorted(known))}")
        values[k] = _coerce(k, v, getattr(s, k), "arguments")
    s = dataclasses.replace(s, **values)
    validate(s)
    return s


def validate(s: Settings) -> None:
    if s.chunk_size <= 0:
        raise InvalidInputError(f"chunk_size must be positive, got {s.chunk_size}")
    if not 0 <= s.chunk_overlap < s.chunk_size:
        raise InvalidInputError(f"chunk_overlap must be >= 0 and < chunk_size ({s.chunk_size}), got {s.chunk_overlap}")
    if s.embed_threads < 0:
        raise InvalidInputError(f"embed_threads must be >= 0 (0 = one per core), got {s.embed_threads}")
    if s.top_k <= 0:
        raise InvalidInputError(f"top_k must be positive, got {s.top_k}")
    if s.mode not in ("dense", "sparse", "hybrid", "mmr", "graph"):
        raise InvalidInputError(f"mode must be dense, sparse, hybrid, mmr or graph, got {s.mode!r}")
    if s.answerer not in ("auto", "extractive", "llm"):
        raise InvalidInputError(f"answerer must be auto, extractive or llm, got {s.answerer!r}")
    if s.references not in ("none", "chunk", "metadata", "both"):
        raise InvalidInputError(f"references must be none, chunk, metadata or both, got {s.references!r}")
    if s.references in ("chunk", "both"):
        if not s.child_sizes or len(set(s.child_sizes)) != len(s.child_sizes):
            raise InvalidInputError(f"child_sizes must be distinct sizes, got {s.child_sizes}")
        if any(not 0 < c < s.parent_size for c in s.child_sizes):
            raise InvalidInputError(
                f"child_sizes must be positive and smaller than parent_size ({s.parent_size}), got {s.child_sizes}"
            )
    if s.parent_size <= 0:
        raise InvalidInputError(f"parent_size must be positive, got {s.parent_size}")
    if s.n_questions < 0:
        raise InvalidInputError(f"n_questions must be >= 0, got {s.n_questions}")
    if s.reference_writer not in ("extractive", "llm"):
        raise InvalidInputError(f"reference_writer must be extractive or llm, got {s.reference_writer!r}")
    if s.rerank not in ("none", "mmr") and not s.rerank.startswith("cross-encoder:"):
        raise InvalidInputError(f"rerank must be none, mmr or cross-encoder:MODEL, got {s.rerank!r}")
    if s.rerank_fetch_k <= 0:
        raise InvalidInputError(f"rerank_fetch_k must be positive, got {s.rerank_fetch_k}")


def write_settings(kb_dir: str | os.PathLike[str], s: Settings) -> Path:
    from kvgraph.fileio import atomic_write

    path = Path(kb_dir) / CONFIG_FILE
    atomic_write(path, [s.to_toml().encode("utf-8")])
    return path
