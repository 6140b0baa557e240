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
RERANKERS = ("auto", "none", "mmr", "sentences", "tokens")  # and cross-encoder:MODEL


@dataclass
class Settings:
    # embedding: see kvgraph.embed.factory for the spec syntax
    embedder: str = "onnx-int8"
    embed_threads: int = 0  # texts embedded at once by the local model; 0 = one per core
    # chunking, in the embedder's own tokens; 254 + [CLS] + [SEP] = all-MiniLM-L6-v2's 256 window
    chunk_size: int = 254
    chunk_overlap: int = 32
    # contextual chunk headers (docs/retrieval.md): embed "title > heading path" with each chunk's text;
    # the header's tokens come out of chunk_size, the shown text stays the chunk's own
    context_headers: bool = True
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    max_file_mb: int = 200  # ingest skips (and reports) files larger than this many MiB
    # retrieval and answers
    top_k: int = 5
    mode: str = "hybrid"  # dense | sparse | hybrid | mmr | graph (after kvgraph graph build)
    # hybrid fusion (kvgraph.retrieve.fusion): confidence (BM25 weighted by how much of the question its
    # best chunk covers) | minmax (fixed weights on min-max scores) | rrf (weighted reciprocal ranks)
    fusion: str = "confidence"
    fusion_alpha: float = 0.4  # the dense side's weight in hybrid fusion (0..1)
    query_feedback: str = "none"  # pseudo-relevance feedback in hybrid mode: none | rocchio | rm3
    query_expansion: str = "none"  # with an LLM: none | hyde | multi (multi-query, fused)
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
    # a second stage that reorders the first rerank_fetch_k hits: auto (tokens with the local ONNX
    # model, in dense and hybrid modes; none otherwise) | none | mmr | sentences (best sentence, offline)
    # | tokens (late interaction over the model's token vectors, offline) | cross-encoder:MODEL_PATH_OR_NAME
    rerank: str = "auto"
    rerank_fetch_k: int = 0  # 0: the reranker's own depth (tokens 5, the others 20)
    # backends (docs/scale.md): "" keeps the embedded engines in the KB directory. A password in a
    # URI is never written to kvgraph.toml: give it in the environment (PGPASSWORD, KVGRAPH_NEO4J_PASSWORD).
    store_uri: str = ""  # postgresql://user@host:5432/db?schema=NAME (Postgres + pgvector)
    graph_uri: str = ""  # bolt://host:7687?database=NAME or neo4j://... (Neo4j, ArcadeDB)

    def to_toml(self) -> str:
        lines = ["# kvgraph knowledge-base settings (API keys come from the environment, never from here)"]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("store_uri", "graph_uri", "llm_base_url"):
                value = _without_password(value)
            lines.append(f"{f.name} = {_toml_value(value)}")
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


def _without_password(uri: str) -> str:
    """``uri`` with the password of its user info left out (secrets are never written to the file)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}"))


_INVALID = object()


def _coerce(name: str, value: Any, like: Any, source: str, parse_text: bool = True) -> Any:
    """``value`` as the type of the setting's default ``like``, or a one-line error naming ``source`` and ``name``.

    Text (an environment variable, a command-line or spec string) is parsed when ``parse_text``;
    a typed value (TOML, a Python argument) must already have the type: ``top_k = "5"`` in
    kvgraph.toml is an error (docs/configuration.md), not a silent conversion.
    """
    if isinstance(value, str) and parse_text:
        out = _from_text(value.strip(), like)
    else:
        out = _typed(value, like)
    if out is not _INVALID:
        return out
    got = _shown(value, quoted=not parse_text)
    hint = ""
    if (
        not parse_text
        and isinstance(value, str)
        and not isinstance(like, list)
        and _from_text(value, like) is not _INVALID
    ):
        hint = f" (write {name} = {_toml_value(_from_text(value, like))}, without quotes)"
    raise InvalidInputError(f"{source}: {name} must be {_expected(like)}, got {got}{hint}")


def _from_text(text: str, like: Any) -> Any:
    """A setting parsed from text (``KVGRAPH_TOP_K=8``, ``KVGRAPH_CHILD_SIZES=128,256``), or _INVALID."""
    if isinstance(like, str):
        return text
    if isinstance(like, bool):
        words = {"1": True, "true": True, "yes": True, "on": True}
        words |= {"0": False, "false": False, "no": False, "off": False}
        return words.get(text.lower(), _INVALID)
    if isinstance(like, list):
        items = [p.strip() for p in text.split(",") if p.strip()]
        parsed = [_from_text(p, like[0] if like else "") for p in items]
        return _INVALID if any(p is _INVALID for p in parsed) else parsed
    try:
        return int(text) if isinstance(like, int) else float(text)
    except ValueError:
        return _INVALID


def _typed(value: Any, like: Any) -> Any:
    """A typed value (from TOML or Python) checked against the setting's type, or _INVALID."""
    if isinstance(like, bool):
        return value if isinstance(value, bool) else _INVALID
    if isinstance(like, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if isinstance(like, float):
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _INVALID
    if isinstance(like, list):
        if not isinstance(value, (list, tuple)):
            return _INVALID
        items = [_typed(x, like[0] if like else "") for x in value]
        return _INVALID if any(x is _INVALID for x in items) else items
    return value if isinstance(value, str) else _INVALID


def _expected(like: Any) -> str:
    if isinstance(like, bool):
        return "true or false"
    if isinstance(like, int):
        return "an integer"
    if isinstance(like, float):
        return "a number"
    if isinstance(like, list):
        return "a list of integers" if like and isinstance(like[0], int) else "a list of strings"
    return "a string"


def _shown(value: Any, quoted: bool) -> str:
    """How a wrong value is named in the error: TOML syntax for the file, the text for the environment."""
    if isinstance(value, dict):
        return "a table"
    if not quoted:
        text = repr(value)
    else:
        try:
            text = _toml_value(value)
        except TypeError:
            text = repr(value)
        if isinstance(value, str):
            text = f"the string {text}"
    return text if len(text) <= 60 else text[:57] + "..."


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
                values[k] = _coerce(k, v, getattr(s, k), str(path), parse_text=False)
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
    if s.rerank not in RERANKERS and not s.rerank.startswith("cross-encoder:"):
        raise InvalidInputError(
            f"rerank must be auto, none, mmr, sentences, tokens or cross-encoder:MODEL, got {s.rerank!r}"
        )
    if s.fusion not in ("confidence", "minmax", "rrf"):
        raise InvalidInputError(f"fusion must be confidence, minmax or rrf, got {s.fusion!r}")
    if not 0.0 <= s.fusion_alpha <= 1.0:
        raise InvalidInputError(f"fusion_alpha must be between 0 and 1, got {s.fusion_alpha}")
    if s.query_feedback not in ("none", "rocchio", "rm3"):
        raise InvalidInputError(f"query_feedback must be none, rocchio or rm3, got {s.query_feedback!r}")
    if s.query_expansion not in ("none", "hyde", "multi"):
        raise InvalidInputError(f"query_expansion must be none, hyde or multi, got {s.query_expansion!r}")
    if s.rerank_fetch_k < 0:
        raise InvalidInputError(
            f"rerank_fetch_k must be 0 (the reranker's own depth) or positive, got {s.rerank_fetch_k}"
        )
    if s.store_uri and not s.store_uri.startswith(("postgresql://", "postgres://")):
        raise InvalidInputError(f"store_uri must be empty (embedded) or a postgresql:// URI, got {s.store_uri[:40]!r}")
    if s.graph_uri and not s.graph_uri.startswith(("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s")):
        raise InvalidInputError(
            f"graph_uri must be empty (embedded) or a bolt:// or neo4j:// URI, got {s.graph_uri[:40]!r}"
        )
    if s.max_file_mb <= 0:
        raise InvalidInputError(f"max_file_mb must be a positive number of MiB, got {s.max_file_mb}")


def write_settings(kb_dir: str | os.PathLike[str], s: Settings) -> Path:
    from kvgraph.fileio import atomic_write

    path = Path(kb_dir) / CONFIG_FILE
    atomic_write(path, [s.to_toml().encode("utf-8")])
    return path
