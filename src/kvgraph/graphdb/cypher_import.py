"""Importing graphs: Cypher scripts written for Neo4j, and JSON/CSV node and edge lists.

Cypher scripts (dialect adaptation for Ladybug)
-----------------------------------------------
Neo4j is schema-free; Ladybug needs a node table per label (with a primary key) and a rel table
per relationship type (listing the label pairs it connects) before ``CREATE``/``MERGE`` can write.
:func:`import_cypher_script` therefore reads the script once with the guard's tokenizer and infers:

- node tables from node patterns ``(v:Label {k: literal, ...})``, with every property typed from
  its literals (``'text'`` STRING, ``12`` INT64, ``1.5`` DOUBLE, ``true`` BOOL, ``[..]`` a list of
  the element type; INT64 mixed with DOUBLE becomes DOUBLE, other mixes STRING). The primary key is
  the data's ``id`` property when every pattern of that label carries one, else an ``id SERIAL``
  column Ladybug numbers itself, so ``MERGE`` still matches on the full property map like Neo4j;
- rel tables from relationship patterns ``(a)-[:TYPE {..}]->(b)`` and ``(a)<-[:TYPE]-(b)``, the
  endpoint labels resolved through the variables bound earlier in the same statement. A type that
  connects several label pairs becomes one multi-pair table ``CREATE REL TABLE T(FROM A TO B, FROM
  A TO C, ...)``;
- for tables that exist already, missing columns (``ALTER TABLE L ADD p TYPE``) and missing label
  pairs (``ALTER TABLE T ADD FROM A TO B``).

Then the script runs unchanged, statement by statement (split at top-level ``;``), in one
transaction together with the table creation: a failure or a crash leaves the graph as it was.

Node and edge lists
-------------------
:func:`import_nodes_file` and :func:`import_edges_file` read a JSON array of objects, JSON Lines or
CSV with a header row. CSV values are typed: integers (without leading zeros), decimals,
``true``/``false``, empty as null, everything else text. A bad row raises InvalidInputError naming
the file and line (CSV, JSON Lines) or item (JSON array); nothing is written then.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kvgraph.errors import InvalidInputError
from kvgraph.graphdb.base import GraphError
from kvgraph.graphdb.guard import Token, tokenize
from kvgraph.graphdb.types import merge_types

if TYPE_CHECKING:
    from kvgraph.graphdb.base import GraphStore, QueryResult


class SchemaStore(Protocol):
    """What the script importer needs of a schema-first store (Ladybug): tables, and one transaction."""

    def has_table(self, name: str) -> bool: ...

    def ensure_node_table(self, label: str, column_types: Mapping[str, str | None], key_type: str) -> object: ...

    def ensure_rel_table(
        self, rel_type: str, pairs: Iterable[tuple[str, str]], column_types: Mapping[str, str | None]
    ) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def query(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        read_only: bool = True,
        timeout_s: float | None = ...,
        max_rows: int | None = ...,
    ) -> QueryResult: ...


@dataclass
class ScriptSchema:
    """What a Cypher script needs: labels with property types, rel types with pairs and property types."""

    labels: dict[str, dict[str, list[str | None]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    label_patterns: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    label_ids: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # patterns carrying an id
    rels: dict[str, dict[str, list[str | None]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    rel_pairs: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    statements: list[str] = field(default_factory=list)


class _Parser:
    """Walks a token list, collecting node and relationship patterns (anything else is skipped)."""

    def __init__(self, script: str, tokens: list[Token], out: ScriptSchema) -> None:
        self.script = script
        self.t = tokens
        self.i = 0
        self.out = out
        self.bindings: dict[str, str] = {}

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.t[j].text if j < len(self.t) else ""

    def error(self, msg: str) -> GraphError:
        pos = self.t[min(self.i, len(self.t) - 1)].pos if self.t else 0
        return GraphError(f"import script, offset {pos} ({self.script[pos : pos + 40]!r}): {msg}")

    def run(self) -> None:
        while self.i < len(self.t):
            tok = self.t[self.i]
            if tok.text == ";":
                self.bindings = {}
                self.i += 1
            elif tok.text == "(" and self._looks_like_node():
                self._chain()
            else:
                self.i += 1

    def _looks_like_node(self) -> bool:
        # "(" var ":" | "(" ":" | "(" var ")" followed by a relationship arrow
        a, b = self.peek(1), self.peek(2)
        if a == ":":
            return True
        if self.i + 1 < len(self.t) and self.t[self.i + 1].kind in ("word", "ident"):
            return b in (":", "{") or (b == ")" and self.peek(3) in ("-", "<-"))
        return False

    def _name(self) -> str:
        tok = self.t[self.i]
        self.i += 1
        return tok.text[1:-1].replace("``", "`") if tok.kind == "ident" else tok.text

    def _node(self) -> str | None:
        """Parse ``( var? (:Label)* {props}? )``; return its label (from the pattern or the variable)."""
        assert self.peek() == "("
        self.i += 1
        var = None
        if self.i < len(self.t) and self.t[self.i].kind in ("word", "ident"):
            var = self._name()
        labels = []
        while self.peek() == ":":
            self.i += 1
            labels.append(self._name())
        props: dict[str, str | None] = {}
        if self.peek() == "{":
            props = self._map()
        if self.peek() != ")":
            raise self.error("expected ')' to close a node pattern")
        self.i += 1
        if len(labels) > 1:
            raise self.error(f"node with several labels {labels}: Ladybug gives each node exactly one label")
        label = labels[0] if labels else (self.bindings.get(var) if var else None)
        if labels:
            if var:
                self.bindings[var] = labels[0]
            self.out.label_patterns[label] += 1  # type: ignore[index]
            self.out.label_ids[label] += "id" in props  # type: ignore[index]
            cols = self.out.labels[label]  # type: ignore[index]
            for k, ty in props.items():
                cols[k].append(ty)
        return label

    def _chain(self) -> None:
        left = self._node()
        while self.peek() in ("-", "<-") and self.peek(1) == "[":
            incoming = self.peek() == "<-"
            self.i += 2
            if self.i < len(self.t) and self.t[self.i].kind in ("word", "ident") and self.peek(1) != ":":
                self.i += 1  # relationship variable
            elif self.i < len(self.t) and self.t[self.i].kind in ("word", "ident") and self.peek(1) == ":":
                self.i += 1
            if self.peek() != ":":
                raise self.error("relationship pattern without a type; Ladybug needs [:TYPE] to write")
            self.i += 1
            rel_type = self._name()
            props = self._map() if self.peek() == "{" else {}
            if self.peek() != "]":
                raise self.error(
                    "expected ']' to close a relationship pattern (variable-length writes are not supported)"
                )
            self.i += 1
            arrow = self.peek()
            if arrow not in ("->", "-"):
                raise self.error("expected '->' or '-' after a relationship pattern")
            self.i += 1
            if incoming == (arrow == "->") and not incoming:
                pass
            if not incoming and arrow != "->":
                raise self.error(f"relationship [:{rel_type}] has no direction; Ladybug stores directed relationships")
            if self.peek() != "(":
                raise self.error("expected a node pattern after a relationship")
            right = self._node()
            a, b = (right, left) if incoming else (left, right)
            if a is None or b is None:
                raise self.error(
                    f"cannot tell the labels of [:{rel_type}]'s endpoints; bind each variable with a label earlier "
                    "in the same statement"
                )
            self.out.rel_pairs[rel_type].add((a, b))
            cols = self.out.rels[rel_type]
            for k, ty in props.items():
                cols[k].append(ty)
            left = right

    def _map(self) -> dict[str, str | None]:
        """Parse ``{k: literal, ...}`` into property name → type (None when the value is not a literal)."""
        assert self.peek() == "{"
        self.i += 1
        out: dict[str, str | None] = {}
        while self.peek() != "}":
            if self.i >= len(self.t):
                raise self.error("unterminated property map")
            key = self._name()
            if self.peek() != ":":
                raise self.error(f"expected ':' after property {key!r}")
            self.i += 1
            out[key] = self._value()
            if self.peek() == ",":
                self.i += 1
        self.i += 1
        return out

    def _value(self) -> str | None:
        tok = self.t[self.i]
        if tok.text == "-" and self.i + 1 < len(self.t) and self.t[self.i + 1].kind == "number":
            self.i += 1
            tok = self.t[self.i]
        if tok.kind == "string":
            self.i += 1
            return "STRING"
        if tok.kind == "number":
            self.i += 1
            return "INT64" if re.fullmatch(r"\d+", tok.text) else "DOUBLE"
        if tok.kind == "word" and tok.text.lower() in ("true", "false"):
            self.i += 1
            return "BOOL"
        if tok.kind == "word" and tok.text.lower() == "null":
            self.i += 1
            return None
        if tok.text == "[":
            self.i += 1
            inner: list[str | None] = []
            while self.peek() != "]":
                if self.i >= len(self.t):
                    raise self.error("unterminated list")
                inner.append(self._value())
                if self.peek() == ",":
                    self.i += 1
            self.i += 1
            t = merge_types(inner)
            return None if t is None else f"{t}[]"
        if tok.kind == "word" and self.peek(1) == "(":
            fn = tok.text.lower()
            self._skip_balanced()
            return {"date": "DATE", "timestamp": "TIMESTAMP", "datetime": "TIMESTAMP"}.get(fn, "STRING")
        # parameters, variables, expressions: type unknown
        self._skip_expression()
        return None

    def _skip_balanced(self) -> None:
        self.i += 1  # function name
        depth = 0
        while self.i < len(self.t):
            x = self.peek()
            self.i += 1
            if x in ("(", "[", "{"):
                depth += 1
            elif x in (")", "]", "}"):
                depth -= 1
                if depth == 0:
                    return

    def _skip_expression(self) -> None:
        depth = 0
        while self.i < len(self.t):
            x = self.peek()
            if depth == 0 and x in (",", "}"):
                return
            if x in ("(", "[", "{"):
                depth += 1
            elif x in (")", "]", "}"):
                depth -= 1
            self.i += 1


# Words Ladybug 0.22's parser refuses as variable names, found by trying each in ``MERGE (v:L)``
# (``order`` in the DevOps script is one). Backtick-quoted they work, and quoting changes nothing else.
LADYBUG_RESERVED = frozenset(
    [
        "order",
        "where",
        "end",
        "table",
        "group",
        "in",
        "union",
        "all",
        "desc",
        "asc",
        "case",
        "exists",
        "with",
        "single",
        "any",
        "none",
        "not",
        "and",
        "or",
        "xor",
        "starts",
        "ends",
        "shortest",
        "profile",
        "optional",
        "unwind",
        "on",
        "distinct",
        "null",
        "true",
        "false",
        "create",
        "macro",
        "column",
        "primary",
        "install",
        "then",
        "else",
        "when",
    ]
)


def quote_reserved_variables(script: str) -> str:
    """``script`` with names that Ladybug reserves backtick-quoted where they are names.

    Quoted: node variables (``(order:``, ``(order)``) and their property accesses (``order.name``),
    and labels or relationship types in patterns (``(:Order)``, ``[:ON]``). ``ORDER BY``, map values
    such as ``{paid: true}`` and other keyword uses are left alone.
    """
    tokens = tokenize(script)
    variables = {
        t.text
        for i, t in enumerate(tokens)
        if t.kind == "word"
        and i > 0
        and tokens[i - 1].text == "("
        and t.text.lower() in LADYBUG_RESERVED
        and i + 1 < len(tokens)
        and tokens[i + 1].text in (":", ")", "{")
    }
    out, last = [], 0
    stack: list[str] = []
    for i, t in enumerate(tokens):
        if t.text in ("(", "[", "{"):
            stack.append(t.text)
        elif t.text in (")", "]", "}") and stack:
            stack.pop()
        if t.kind != "word":
            continue
        prev = tokens[i - 1].text if i > 0 else ""
        nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
        as_variable = t.text in variables and ((prev == "(" and nxt in (":", ")", "{")) or (nxt == "." and prev != "."))
        as_label = prev == ":" and t.text.lower() in LADYBUG_RESERVED and stack and stack[-1] in ("(", "[")
        if as_variable or as_label:
            out.append(script[last : t.pos])
            out.append(f"`{t.text}`")
            last = t.pos + len(t.text)
    out.append(script[last:])
    return "".join(out)


def analyze_script(script: str) -> ScriptSchema:
    """The tables a Cypher script writes to, and its statements (split at top-level ``;``)."""
    tokens = tokenize(script)
    out = ScriptSchema()
    _Parser(script, tokens, out).run()
    start = 0
    for tok in tokens:
        if tok.text == ";":
            stmt = script[start : tok.pos].strip()
            if stmt:
                out.statements.append(stmt)
            start = tok.pos + 1
    rest = script[start:].strip()
    if rest and tokenize(rest):
        out.statements.append(rest)
    return out


def import_cypher_script(store: SchemaStore, script: str) -> int:
    """Create the tables ``script`` needs in ``store``, then run it unchanged in one transaction."""
    plan = analyze_script(quote_reserved_variables(script))
    if not plan.statements:
        raise InvalidInputError("import script is empty")
    with store.transaction():
        for label, cols in plan.labels.items():
            has_id = plan.label_ids[label] == plan.label_patterns[label] and plan.label_patterns[label] > 0
            if plan.label_ids[label] and not has_id and not store.has_table(label):
                raise GraphError(
                    f"label {label}: some nodes carry an 'id' property and some do not; kvgraph keys a label by "
                    "'id' only when every node has one"
                )
            col_types = {c: merge_types(ts) for c, ts in cols.items() if c != "id"}
            key_type = (merge_types(cols.get("id", [])) or "STRING") if has_id else "SERIAL"
            store.ensure_node_table(label, col_types, key_type)
        for rel, pairs in plan.rel_pairs.items():
            for a, b in pairs:
                if not store.has_table(a) or not store.has_table(b):
                    missing = b if store.has_table(a) else a
                    raise GraphError(
                        f"[:{rel}] connects label {missing}, which neither the script nor the graph defines"
                    )
            store.ensure_rel_table(rel, pairs, {c: merge_types(ts) for c, ts in plan.rels[rel].items()})
        for stmt in plan.statements:
            store.query(stmt, read_only=False, timeout_s=None, max_rows=0)
    return len(plan.statements)


# ----------------------------------------------------------------------------- JSON and CSV lists

_INT_RE = re.compile(r"^-?(0|[1-9]\d*)$")
_FLOAT_RE = re.compile(r"^-?\d+\.\d*([eE][+-]?\d+)?$|^-?\d+[eE][+-]?\d+$")


def csv_value(text: str) -> Any:
    """A CSV cell typed: int, float, bool, None for empty, else the text itself."""
    s = text.strip()
    if s == "":
        return None
    if _INT_RE.match(s):
        return int(s)
    if _FLOAT_RE.match(s):
        return float(s)
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return text


def read_rows(path: str | Path, fmt: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a JSON array, JSON Lines or CSV file as ("file:line" or "file item N", row)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found")
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    text = path.read_text(encoding="utf-8-sig")
    if fmt == "csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        if not reader.fieldnames:
            raise InvalidInputError(f"{path}: CSV file has no header row")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:
                raise InvalidInputError(f"{where}: more cells than header columns")
            yield where, {k: (csv_value(v) if v is not None else None) for k, v in row.items()}
        return
    if fmt not in ("json", "jsonl", "ndjson"):
        raise InvalidInputError(f"{path}: unknown file format {fmt!r}; use json, jsonl or csv")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidInputError(f"{path} item {n}: expected an object, got {type(item).__name__}")
            yield f"{path} item {n}", item
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
        if not isinstance(item, dict):
            raise InvalidInputError(f"{path}:{lineno}: expected an object, got {type(item).__name__}")
        yield f"{path}:{lineno}", item


def _select(
    row: dict[str, Any], properties: Sequence[str] | Mapping[str, str] | None, keep: Sequence[str]
) -> dict[str, Any]:
    if properties is None:
        return dict(row)
    mapping = dict(properties) if isinstance(properties, Mapping) else {p: p for p in properties}
    out = {new: row.get(old) for old, new in mapping.items()}
    for k in keep:
        out.setdefault(k, row.get(k))
    return out


def import_nodes_file(
    store: GraphStore,
    path: str | Path,
    label: str,
    key: str = "id",
    properties: Sequence[str] | Mapping[str, str] | None = None,
    fmt: str | None = None,
) -> int:
    """Upsert one node of ``label`` per row, identified by column ``key``; return how many.

    ``properties`` picks columns (a list) or renames them (a mapping file column → property);
    by default every column becomes a property.
    """
    rows = []
    for where, row in read_rows(path, fmt):
        if row.get(key) in (None, ""):
            raise InvalidInputError(f"{where}: the key column {key!r} is missing or empty")
        rows.append(_select(row, properties, [key]))
    if not rows:
        raise InvalidInputError(f"{path}: no rows")
    return len(store.upsert_nodes(label, rows, key=key))


def import_edges_file(
    store: GraphStore,
    path: str | Path,
    rel_type: str,
    source: str = "source",
    target: str = "target",
    source_label: str | None = None,
    target_label: str | None = None,
    key: str = "id",
    properties: Sequence[str] | Mapping[str, str] | None = None,
    fmt: str | None = None,
) -> int:
    """Create one ``rel_type`` relationship per row from column ``source`` to column ``target``.

    With ``source_label``/``target_label`` the columns hold the endpoint nodes' ``key`` property
    (looked up among nodes of that label); without, they hold node keys. Other columns become
    relationship properties (or those picked by ``properties``). Returns the number of edges.
    """
    raw: list[tuple[str, Any, Any, dict[str, Any]]] = []
    for where, row in read_rows(path, fmt):
        s, t = row.get(source), row.get(target)
        if s in (None, "") or t in (None, ""):
            raise InvalidInputError(f"{where}: the source column {source!r} and target column {target!r} need values")
        rest = {k: v for k, v in row.items() if k not in (source, target)}
        props = _select(rest, properties, []) if properties is not None else rest
        raw.append((where, s, t, {k: v for k, v in props.items() if v is not None}))
    if not raw:
        raise InvalidInputError(f"{path}: no rows")
    src_keys = _resolve(store, source_label, key, [(w, s) for w, s, _, _ in raw])
    dst_keys = _resolve(store, target_label, key, [(w, t) for w, _, t, _ in raw])
    return store.upsert_edges(rel_type, [(a, b, r[3]) for a, b, r in zip(src_keys, dst_keys, raw)])


def _resolve(store: GraphStore, label: str | None, key: str, refs: list[tuple[str, Any]]) -> list[str]:
    """Node keys for (where, value) references: values are node keys, or ``label``'s ``key`` property."""
    if label is None:
        return [str(v) for _, v in refs]
    # Compared as text in Python: file values (CSV typing) and the stored column type may differ.
    found: dict[str, list[str]] = defaultdict(list)
    for node_key, props in store.nodes(label, [key]):
        if props.get(key) is not None:
            found[str(props[key])].append(node_key)
    out = []
    for where, v in refs:
        keys = found.get(str(v), [])
        if not keys:
            raise InvalidInputError(f"{where}: no {label} node has {key} = {v!r}")
        if len(keys) > 1:
            raise InvalidInputError(f"{where}: {len(keys)} {label} nodes have {key} = {v!r}; use a unique key")
        out.append(keys[0])
    return out
