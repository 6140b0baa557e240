"""The read-only guard: decide from the query text alone whether a Cypher query may run read-only.

Queries written by users and LLMs run through :func:`check_read_only` before anything reaches
the engine, in both backends. The guard tokenizes the query (string literals, backtick-quoted
identifiers and comments are single tokens, so ``'... DETACH DELETE ...'`` inside a string is
data, not a clause) and rejects:

- write and admin clauses: CREATE, MERGE, SET, DELETE, DETACH, REMOVE, DROP, ALTER, COPY, LOAD,
  INSTALL, ATTACH, IMPORT, EXPORT, and transaction/database control (BEGIN, COMMIT, CHECKPOINT, ...);
- ``CALL`` of anything but a short allow-list of schema-reading procedures (``CALL { ... }``
  subqueries are allowed: their bodies are checked like the rest of the query);
- several statements (a ``;`` followed by anything but whitespace or comments);
- variable-length relationship patterns without an upper bound (``*``, ``*2..``) or with an upper
  bound above ``max_hops``: three undirected hops through hub nodes reached 98.6% of a 100k-node
  graph and took 35 s (ARCHITECTURE.md), so a traversal's depth must be explicit and small.

Keywords count only where they are keywords: ``n.set``, ``{create: 1}``, ``(:Delete)`` and
``$merge`` are a property, a map key, a label and a parameter. The guard is one layer; the stores
add a timeout, a row limit, a read transaction (Neo4j) and a read-only database handle (Ladybug).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kvgraph.graphdb.base import WriteRejectedError

DEFAULT_MAX_HOPS = 5

WRITE_KEYWORDS = frozenset(
    {
        "CREATE",
        "MERGE",
        "SET",
        "DELETE",
        "DETACH",
        "REMOVE",
        "DROP",
        "ALTER",
        "COPY",
        "LOAD",
        "INSTALL",
        "ATTACH",
        "IMPORT",
        "EXPORT",
        "FOREACH",
        "TRUNCATE",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "CHECKPOINT",
        "USE",
    }
)

# Procedures that only read the schema or settings (Ladybug/Kùzu names and Neo4j's db.* ones).
READ_PROCEDURES = frozenset(
    {
        "show_tables",
        "table_info",
        "show_connection",
        "show_functions",
        "show_indexes",
        "show_macros",
        "show_attached_databases",
        "show_official_extensions",
        "show_loaded_extensions",
        "current_setting",
        "db_version",
        "db.labels",
        "db.relationshiptypes",
        "db.propertykeys",
        "db.schema.visualization",
        "db.schema.nodetypeproperties",
        "db.schema.reltypeproperties",
        "db.indexes",
        "db.constraints",
        "dbms.components",
    }
)


class UnboundedTraversalError(WriteRejectedError):
    """A read-only query has a variable-length pattern without a small upper bound."""


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", "ident" (backtick), "param", "number", "punct"
    text: str
    pos: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^'\\]|\\.|'')*(?:'|\Z)|"(?:[^"\\]|\\.|"")*(?:"|\Z))
  | (?P<ident>`(?:[^`]|``)*(?:`|\Z))
  | (?P<param>\$(?:[A-Za-z_][A-Za-z0-9_]*|\d+|`(?:[^`]|``)*`))
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>\.\.|<-|->|.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(cypher: str) -> list[Token]:
    """Split ``cypher`` into tokens, dropping whitespace and comments."""
    out: list[Token] = []
    for m in _TOKEN_RE.finditer(cypher):
        kind = m.lastgroup or "punct"
        if kind in ("ws", "line_comment", "block_comment"):
            continue
        out.append(Token(kind, m.group(), m.start()))
    return out


def _is_keyword(tokens: list[Token], i: int) -> bool:
    """True when the word at ``i`` stands where a clause keyword can (not a property, label or map key)."""
    prev = tokens[i - 1].text if i > 0 else ""
    nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
    if prev in (".", ":") or nxt in (":", "."):
        return False
    # a variable that happens to be spelled like a keyword: (set), [load], (merge {..}) — never a clause
    return not (prev in ("(", "[") and nxt in (")", "]", "{", ","))


def _procedure_name(tokens: list[Token], i: int) -> tuple[str, int]:
    """The dotted procedure name starting at token ``i`` and the index after it."""
    parts: list[str] = []
    while i < len(tokens) and tokens[i].kind in ("word", "ident"):
        t = tokens[i].text
        parts.append(t[1:-1].replace("``", "`") if tokens[i].kind == "ident" else t)
        if i + 1 < len(tokens) and tokens[i + 1].text == ".":
            i += 2
        else:
            i += 1
            break
    return ".".join(parts), i


def _where(cypher: str, pos: int) -> str:
    return f"at offset {pos}: {cypher[max(0, pos - 20) : pos + 30]!r}"


def check_read_only(cypher: str, max_hops: int | None = DEFAULT_MAX_HOPS) -> None:
    """Raise WriteRejectedError unless ``cypher`` is one statement that only reads, with bounded traversals.

    ``max_hops=None`` skips the traversal bound (the engine's own default bound then applies).
    """
    tokens = tokenize(cypher)
    if not tokens:
        raise WriteRejectedError("empty query")
    for i, tok in enumerate(tokens):
        if tok.kind == "punct" and tok.text == ";":
            if i + 1 < len(tokens):
                raise WriteRejectedError(
                    f"read-only query rejected: several statements (';' {_where(cypher, tok.pos)}); "
                    f"send one statement at a time. Query: {cypher}"
                )
            continue
        if tok.kind != "word" or not _is_keyword(tokens, i):
            continue
        word = tok.text.upper()
        if word in WRITE_KEYWORDS:
            raise WriteRejectedError(
                f"read-only query rejected: {word} {_where(cypher, tok.pos)} would change the graph or the "
                f"database; only reading queries may run here (use --write / read_only=False to write). "
                f"Query: {cypher}"
            )
        if word == "CALL":
            if i + 1 < len(tokens) and tokens[i + 1].text in ("{", "("):
                continue  # a subquery: its clauses are checked by this same loop
            name, _ = _procedure_name(tokens, i + 1)
            if name.lower() not in READ_PROCEDURES:
                raise WriteRejectedError(
                    f"read-only query rejected: CALL {name or '?'} {_where(cypher, tok.pos)} is not an allowed "
                    f"read procedure (allowed: {', '.join(sorted(READ_PROCEDURES))}). Query: {cypher}"
                )
    if max_hops is not None:
        check_bounded(cypher, tokens, max_hops)


_PATH_MODIFIERS = frozenset({"SHORTEST", "ALL", "WSHORTEST", "TRAIL", "ACYCLIC", "WALK"})


def check_bounded(cypher: str, tokens: list[Token], max_hops: int) -> None:
    """Reject ``[*]``, ``[*2..]`` and ``[*..N]``/``[*M..N]``/``[*N]`` with N above ``max_hops``."""
    depth = 0  # inside a relationship pattern's [ ... ]
    for i, tok in enumerate(tokens):
        if tok.kind != "punct":
            continue
        if tok.text == "[":
            prev = tokens[i - 1].text if i > 0 else ""
            depth = depth + 1 if (prev in ("-", "<-") or depth) else depth
            continue
        if tok.text == "]" and depth:
            depth -= 1
            continue
        if tok.text != "*" or not depth:
            continue
        j = i + 1
        while j < len(tokens) and tokens[j].kind == "word" and tokens[j].text.upper() in _PATH_MODIFIERS:
            j += 1
        lower: str | None = None
        upper: str | None = None
        if j < len(tokens) and tokens[j].kind == "number":
            lower = tokens[j].text
            j += 1
        has_range = j < len(tokens) and tokens[j].text == ".."
        if has_range:
            j += 1
            if j < len(tokens) and tokens[j].kind == "number":
                upper = tokens[j].text
        elif lower is not None:
            upper = lower  # *3 means exactly three hops
        pattern = cypher[tok.pos : tokens[min(j, len(tokens) - 1)].pos + 1].strip()
        if upper is None:
            raise UnboundedTraversalError(
                f"read-only query rejected: variable-length pattern {pattern!r} {_where(cypher, tok.pos)} has no "
                f"upper bound; write e.g. *1..{max_hops} (at most {max_hops} hops). Query: {cypher}"
            )
        if not upper.isdigit() or int(upper) > max_hops:
            raise UnboundedTraversalError(
                f"read-only query rejected: variable-length pattern {pattern!r} {_where(cypher, tok.pos)} allows "
                f"{upper} hops; the limit is {max_hops}. Query: {cypher}"
            )
