"""The read-only guard: decide from the query text alone whether untrusted Cypher may run.

Queries written by users and LLMs pass :func:`check_read_only` before anything reaches the engine,
in both backends. The guard is an allow-list: whatever it does not know is refused.

1. **Limits**, checked first, because the engine's parser is where one query can take the process
   down (measured on Ladybug 0.22: ``RETURN`` + 5,000 nested ``(`` segfaults; 2,000 levels take
   4 s; a 4,000-term sum 2.2 s to parse; the query timeout does not cover parsing):
   length, tokens, nesting depth, operators, integer literals, and the sizes that ``range()``,
   ``repeat()``, ``lpad()`` and ``rpad()`` would build when their arguments are literals or
   parameters (:class:`CypherLimits`). Refusals raise :class:`QueryLimitError`.
2. **Statement kinds**: one statement that starts with MATCH, OPTIONAL MATCH, UNWIND, WITH, RETURN
   or CALL (optionally after EXPLAIN/PROFILE). ``UNINSTALL json``, ``UPDATE json``, ``COMMENT ON``,
   ``CHECKPOINT``, ``DROP`` ... are refused because they are not on the list, not because they
   are on a deny-list.
3. **Clauses and operators**: a word where a clause or operator stands (after a complete
   expression) must be a read keyword (:data:`READ_KEYWORDS`). Write clauses are refused in every
   position where the engine could read them as clauses (``WITH * SET n.x = 1`` runs on Ladybug).
4. **Functions**: a call ``name(...)`` or ``ns.name(...)`` must name a read-only function
   (:data:`READ_FUNCTIONS`; ``nextval``, ``setseed``, macros and ``apoc.*`` are not);
   :class:`FunctionNotAllowedError` otherwise.
5. **Procedures**: ``CALL name(...)`` must name a schema-reading procedure (:data:`READ_PROCEDURES`);
   ``CALL { ... }`` subqueries are checked like the rest of the query.
6. **Traversals**: variable-length patterns need an upper bound of at most ``max_hops``
   (:class:`UnboundedTraversalError`): three undirected hops through hubs reached 98.6% of a
   100k-node graph in 35 s.

The tokenizer keeps string literals, backtick names and comments as single tokens, so
``'... DETACH DELETE ...'`` is data, and words count as keywords only where they are keywords:
``n.set``, ``{create: 1}``, ``(:Delete)``, ``$merge`` and ``(set)`` are a property, a map key, a
label, a parameter and a variable. Where the tokenizer and the engine's lexer could disagree
(a ``//`` comment ended by ``\\r``, control characters), the guard takes the stricter reading or
refuses. The guard is the first layer; the stores add the engine's read-only handle or read
transaction, a timeout, a row limit and (Ladybug) a sandbox process (docs/security.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kvgraph.graphdb.base import WriteRejectedError

DEFAULT_MAX_HOPS = 5


@dataclass(frozen=True)
class CypherLimits:
    """Sizes an untrusted query may have; checked on the text before the engine parses it.

    The defaults leave room for any query a person or an LLM writes by hand (the longest
    text-to-Cypher query in the tests is ~300 characters, 3 levels deep) and keep the engine's
    parse time under ~0.5 s on this machine.
    """

    max_chars: int = 10_000
    max_tokens: int = 2_000
    max_depth: int = 32  # nesting of (, [ and {
    max_terms: int = 500  # binary operators (+ - * / % ^ = < > AND OR XOR ...)
    max_int: int = 2**63 - 1  # magnitude of an integer literal
    max_size: int = 1_000_000  # elements of range(), characters of repeat()/lpad()/rpad()


DEFAULT_LIMITS = CypherLimits()


class UnboundedTraversalError(WriteRejectedError):
    """A read-only query has a variable-length pattern without a small upper bound."""


class QueryLimitError(WriteRejectedError):
    """A query is too long, too deep, has too many terms or asks for too large a literal range."""


class FunctionNotAllowedError(WriteRejectedError):
    """A query calls a function that is not on the read-only allow-list."""


# Where a statement may start (after an optional EXPLAIN or PROFILE).
STATEMENT_STARTS = frozenset({"MATCH", "OPTIONAL", "UNWIND", "WITH", "RETURN", "CALL"})

# Every keyword a reading query uses: clauses, operators, literals, path modifiers.
READ_KEYWORDS = frozenset(
    {
        *("MATCH", "OPTIONAL", "WHERE", "WITH", "UNWIND", "RETURN", "CALL", "YIELD", "UNION", "ALL"),
        *("ORDER", "BY", "SKIP", "LIMIT", "OFFSET", "ASC", "ASCENDING", "DESC", "DESCENDING", "DISTINCT"),
        *("AS", "AND", "OR", "XOR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE", "STARTS", "ENDS", "CONTAINS"),
        *("CASE", "WHEN", "THEN", "ELSE", "END", "EXISTS", "COUNT", "COLLECT", "ANY", "NONE", "SINGLE"),
        *("SHORTEST", "WSHORTEST", "TRAIL", "ACYCLIC", "WALK", "FINISH"),
    }
)
# Keywords after which an expression is complete: a word after them stands where a clause can.
_ENDING_KEYWORDS = frozenset({"END", "NULL", "TRUE", "FALSE", "ASC", "ASCENDING", "DESC", "DESCENDING"})

# Words that start a clause which writes or reads files, inside a query. They are refused wherever
# the engine could read them as a keyword, not only where the guard expects a clause: after `*`
# (`WITH * SET n.x = 1` runs on Ladybug) a clause and an operand look alike.
WRITE_CLAUSES = frozenset(
    {"CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "FOREACH", "INSERT", "LOAD", "COPY", "USE"}
)
# Words that start a writing or administrative statement. A statement can only start a query, so
# these are refused there (as is every word off STATEMENT_STARTS) and where a clause stands; as
# variables and column names (`CALL show_tables() RETURN name, comment`) they are harmless.
WRITE_STATEMENTS = frozenset(
    {
        *("DROP", "ALTER", "INSTALL", "UNINSTALL", "UPDATE", "ATTACH", "IMPORT", "EXPORT", "TRUNCATE"),
        *("BEGIN", "COMMIT", "ROLLBACK", "CHECKPOINT", "COMMENT", "GRANT", "REVOKE", "DENY"),
    }
)
WRITE_WORDS = WRITE_CLAUSES | WRITE_STATEMENTS

# Procedures that only read the schema (Ladybug/Kùzu names and Neo4j's db.* ones). Left out on
# purpose: current_setting (it shows paths such as home_directory) and every table function
# that reads files (read_csv, read_parquet, ...) or changes state (project_graph, ...).
READ_PROCEDURES = frozenset(
    {
        *("show_tables", "table_info", "show_connection", "show_functions", "show_indexes", "show_macros"),
        *("show_sequences", "show_graphs", "show_attached_databases", "show_official_extensions"),
        *("show_loaded_extensions", "db_version"),
        *("db.labels", "db.relationshiptypes", "db.propertykeys", "db.schema.visualization"),
        *("db.schema.nodetypeproperties", "db.schema.reltypeproperties", "db.indexes", "db.constraints"),
        "dbms.components",
    }
)


def _words(text: str) -> list[str]:
    return text.split()


# Read-only scalar, aggregate and path functions, lower case. Ladybug 0.22's `show_functions`
# list without nextval/currval (sequences), setseed (connection state), error and internal
# helpers; plus the Neo4j names an LLM writes.
READ_FUNCTIONS = frozenset(
    _words(
        """
    abs acos all any array_append array_cat array_concat array_contains array_cosine_similarity
    array_cross_product array_distance array_dot_product array_extract array_has array_indexof
    array_inner_product array_position array_prepend array_push_back array_push_front array_slice
    array_squared_distance array_value asin atan atan2 avg bitshift_left bitshift_right bitwise_and
    bitwise_or bitwise_xor blob cardinality cast cbrt ceil ceiling century coalesce collect concat
    concat_ws contains cos cost cot count count_if current_date current_timestamp date date_part
    date_trunc datepart datetrunc dayname decode degrees duration element_at encode end_node ends_with
    epoch_ms equals even factorial floor gamma gen_random_uuid greater_than greater_than_equals
    greatest hash histogram id ifnull initcap interval is_acyclic is_trail keys label labels last_day
    lcase least left length less_than less_than_equals levenshtein lgamma list_any_value list_append
    list_cat list_concat list_contains list_creation list_distinct list_element list_extract
    list_filter list_has list_has_all list_has_any list_indexof list_max list_min list_position
    list_prepend list_product list_reduce list_reverse list_reverse_sort list_slice list_sort list_sum
    list_to_string list_transform list_unique ln log log10 log2 lower lpad ltrim make_date map
    map_extract map_keys map_values max md5 min monthname negate nodes none not_equals nullif
    octet_length offset percentilecont percentiledisc pi pow prefix properties radians random range
    regexp_extract regexp_extract_all regexp_full_match regexp_matches regexp_replace
    regexp_split_to_array relationships rels repeat replace reverse right round rowid rpad rtrim
    sha256 sign sin single size split_part sqrt start_node starts_with str_split string string_split
    string_to_array struct_extract struct_pack substr substring suffix sum tan time_bucket timestamp
    to_blob to_bool to_date to_days to_double to_epoch_ms to_float to_hours to_int128 to_int16
    to_int32 to_int64 to_int8 to_interval to_microseconds to_milliseconds to_minutes to_months
    to_seconds to_serial to_string to_timestamp to_uint128 to_uint16 to_uint32 to_uint64 to_uint8
    to_uuid to_years tolower toupper trim typeof ucase union_extract union_tag union_value upper uuid
    elementid type startnode endnode head last tail tostring tostringornull tointeger tointegerornull
    tofloat tofloatornull toboolean tobooleanornull split btrim normalize e rand exp haversin stdev
    stdevp datetime localdatetime localtime time point distance exists isempty isnan reduce
    shortestpath allshortestpaths randomuuid valuetype char_length character_length
    date.truncate datetime.truncate localdatetime.truncate localtime.truncate time.truncate
    duration.between duration.inmonths duration.indays duration.inseconds point.distance
    point.withinbbox vector.similarity.cosine vector.similarity.euclidean
    """
    )
)

# Functions whose output size is one of their arguments: (argument index, what it sizes).
_SIZED_FUNCTIONS = {"repeat": 1, "lpad": 1, "rpad": 1}
_OPERATORS = frozenset({"+", "-", "*", "/", "%", "^", "=", "<", ">", "AND", "OR", "XOR"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PATH_MODIFIERS = frozenset({"SHORTEST", "ALL", "WSHORTEST", "TRAIL", "ACYCLIC", "WALK"})


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", "ident" (backtick), "param", "number", "punct"
    text: str
    pos: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line_comment>//[^\n\r]*)
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
    """Split ``cypher`` into tokens, dropping whitespace and comments.

    A ``//`` comment ends at ``\\r`` as well as ``\\n``: should the engine end it at either, the
    guard must see what follows.
    """
    out: list[Token] = []
    for m in _TOKEN_RE.finditer(cypher):
        kind = m.lastgroup or "punct"
        if kind in ("ws", "line_comment", "block_comment"):
            continue
        out.append(Token(kind, m.group(), m.start()))
    return out


def _short(cypher: str, limit: int = 200) -> str:
    """The query on one line, cut to ``limit`` characters, for error messages."""
    flat = " ".join(cypher.split())
    return flat if len(flat) <= limit else flat[:limit] + f"... ({len(cypher):,} characters)"


def _where(cypher: str, pos: int) -> str:
    return f"at offset {pos}: {' '.join(cypher[max(0, pos - 20) : pos + 30].split())!r}"


def _refuse(cls: type[WriteRejectedError], reason: str, cypher: str) -> WriteRejectedError:
    return cls(f"read-only query rejected: {reason}. Query: {_short(cypher)}")


def check_read_only(
    cypher: str,
    max_hops: int | None = DEFAULT_MAX_HOPS,
    *,
    params: Mapping[str, Any] | None = None,
    limits: CypherLimits = DEFAULT_LIMITS,
) -> None:
    """Raise WriteRejectedError (or a subclass) unless ``cypher`` may run as an untrusted read.

    ``params`` are the values bound to ``$names``; they let the size limits see through
    ``range(1, $n)``. ``max_hops=None`` skips the traversal bound (the engine's default applies).
    """
    if not isinstance(cypher, str):
        raise WriteRejectedError(f"a Cypher query must be a string, got {type(cypher).__name__}")
    tokens = check_limits(cypher, limits, params)
    if not tokens:
        raise WriteRejectedError("empty query: nothing to run")
    _check_statement(cypher, tokens)
    _check_words(cypher, tokens)
    if max_hops is not None:
        check_bounded(cypher, tokens, max_hops)


# ---------------------------------------------------------------------- limits


def check_limits(
    cypher: str, limits: CypherLimits = DEFAULT_LIMITS, params: Mapping[str, Any] | None = None
) -> list[Token]:
    """Refuse a query whose size could exhaust the engine's parser or memory; return its tokens."""
    if len(cypher) > limits.max_chars:
        raise _refuse(QueryLimitError, f"{len(cypher):,} characters, the limit is {limits.max_chars:,}", cypher)
    bad = _CONTROL.search(cypher)
    if bad:
        raise _refuse(QueryLimitError, f"control character {bad.group()!r} {_where(cypher, bad.start())}", cypher)
    tokens = tokenize(cypher)
    if len(tokens) > limits.max_tokens:
        raise _refuse(QueryLimitError, f"{len(tokens):,} tokens, the limit is {limits.max_tokens:,}", cypher)
    depth = terms = 0
    for i, tok in enumerate(tokens):
        if tok.kind == "punct":
            if tok.text in "([{":
                depth += 1
                if depth > limits.max_depth:
                    raise _refuse(
                        QueryLimitError,
                        f"nested deeper than {limits.max_depth} levels {_where(cypher, tok.pos)}",
                        cypher,
                    )
            elif tok.text in ")]}":
                depth = max(0, depth - 1)
            elif tok.text in _OPERATORS:
                terms += 1
        elif tok.kind == "word":
            if tok.text.upper() in _OPERATORS:
                terms += 1
            elif i + 1 < len(tokens) and tokens[i + 1].text == "(" and (i == 0 or tokens[i - 1].text != "."):
                _check_sizes(cypher, tokens, i, limits, params)
        elif tok.kind == "number" and tok.text.isdigit() and int(tok.text) > limits.max_int:
            raise _refuse(
                QueryLimitError,
                f"integer literal {tok.text[:30]}{'...' if len(tok.text) > 30 else ''} is larger than "
                f"{limits.max_int:,}",
                cypher,
            )
        if terms > limits.max_terms:
            raise _refuse(QueryLimitError, f"more than {limits.max_terms} operators", cypher)
    return tokens


def _arguments(tokens: list[Token], open_paren: int) -> list[list[Token]]:
    """The top-level comma-separated arguments of the call whose ``(`` is at ``open_paren``."""
    args: list[list[Token]] = [[]]
    depth = 0
    for tok in tokens[open_paren + 1 :]:
        if tok.kind == "punct" and tok.text in "([{":
            depth += 1
        elif tok.kind == "punct" and tok.text in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif tok.kind == "punct" and tok.text == "," and depth == 0:
            args.append([])
            continue
        args[-1].append(tok)
    return args


def _int_value(arg: list[Token], params: Mapping[str, Any] | None) -> int | None:
    """The integer an argument is when it is a (negated) literal or an integer parameter, else None."""
    sign = 1
    if len(arg) == 2 and arg[0].text == "-":
        sign, arg = -1, arg[1:]
    if len(arg) != 1:
        return None
    tok = arg[0]
    if tok.kind == "number" and tok.text.isdigit():
        return sign * int(tok.text)
    if tok.kind == "param" and params is not None:
        value = params.get(tok.text[1:].strip("`"))
        if isinstance(value, int) and not isinstance(value, bool):
            return sign * value
    return None


def _check_sizes(
    cypher: str, tokens: list[Token], i: int, limits: CypherLimits, params: Mapping[str, Any] | None
) -> None:
    """Refuse ``range()``/``repeat()``/``lpad()``/``rpad()`` that would build more than ``max_size`` items."""
    name = tokens[i].text.lower()
    if name != "range" and name not in _SIZED_FUNCTIONS:
        return
    args = [_int_value(a, params) for a in _arguments(tokens, i + 1)]
    size: int | None = None
    if name == "range" and len(args) >= 2 and args[0] is not None and args[1] is not None:
        step = args[2] if len(args) > 2 and args[2] is not None else 1
        if step != 0:
            size = (args[1] - args[0]) // step + 1
    elif name in _SIZED_FUNCTIONS and len(args) > _SIZED_FUNCTIONS[name]:
        size = args[_SIZED_FUNCTIONS[name]]
    if size is not None and size > limits.max_size:
        raise _refuse(
            QueryLimitError,
            f"{name}() {_where(cypher, tokens[i].pos)} would build {size:,} items; the limit is {limits.max_size:,}",
            cypher,
        )


# ---------------------------------------------------------------------- statement, clauses, calls


def _check_statement(cypher: str, tokens: list[Token]) -> None:
    """One statement, of a reading kind."""
    for i, tok in enumerate(tokens):
        if tok.kind == "punct" and tok.text == ";" and i + 1 < len(tokens):
            raise _refuse(
                WriteRejectedError,
                f"several statements (';' {_where(cypher, tok.pos)}); send one statement at a time",
                cypher,
            )
    first = 1 if tokens[0].kind == "word" and tokens[0].text.upper() in ("EXPLAIN", "PROFILE") else 0
    head = tokens[first] if first < len(tokens) else tokens[0]
    word = head.text.upper() if head.kind == "word" else head.text
    if head.kind != "word" or word not in STATEMENT_STARTS:
        what = "would change the graph, the database or files" if word in WRITE_WORDS else "is not a reading statement"
        raise _refuse(
            WriteRejectedError,
            f"{word} {_where(cypher, head.pos)} {what}; a read-only query starts with MATCH, OPTIONAL MATCH, "
            "UNWIND, WITH, RETURN or CALL (use --write / read_only=False to write)",
            cypher,
        )


def _dotted_name(tokens: list[Token], i: int) -> tuple[str, int]:
    """The dotted name starting at token ``i`` (``db.schema.visualization``) and the index after it."""
    parts: list[str] = []
    while i < len(tokens) and tokens[i].kind in ("word", "ident"):
        t = tokens[i].text
        parts.append(t[1:-1].replace("``", "`") if tokens[i].kind == "ident" else t)
        if i + 2 < len(tokens) and tokens[i + 1].text == "." and tokens[i + 2].kind in ("word", "ident"):
            i += 2
        else:
            i += 1
            break
    return ".".join(parts), i


def _is_call(tokens: list[Token], i: int) -> bool:
    """Whether a (dotted) name starting at ``i`` is followed by ``(``: a function call."""
    _, end = _dotted_name(tokens, i)
    return end < len(tokens) and tokens[end].text == "(" and end > i


def _is_data(tokens: list[Token], i: int) -> bool:
    """Whether the word at ``i`` is a property, label, relationship type, map key or pattern variable."""
    prev = tokens[i - 1].text if i > 0 else ""
    nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
    if prev == ".":
        return True  # n.prop (and the later parts of a dotted call, checked at its first part)
    if prev.upper() == "AS" and tokens[i - 1].kind == "word":
        return tokens[i].text.upper() not in WRITE_CLAUSES  # an alias or a type: CAST(x AS DECIMAL(5, 2))
    if _is_call(tokens, i):
        return False  # fn(...) and ns.fn(...), also as a map value {a: fn(...)} or a slice bound [0:fn(...)]
    if prev == ":" or nxt in (":", "."):
        return True  # (:Label), [:TYPE], {key: ...}, (n:Label), n.prop
    if prev in ("(", "[") and nxt in (")", "]", "{", ","):
        return True  # (set), [load], (merge {...}): a variable spelled like a keyword is never a clause
    # the second and later types of :A|B|C
    return prev == "|" and i >= 3 and tokens[i - 2].kind in ("word", "ident") and tokens[i - 3].text in (":", "|")


def _check_words(cypher: str, tokens: list[Token]) -> None:
    """Every word is data, a variable, a read keyword, an allowed function or an allowed procedure."""
    ended = False  # the tokens so far end an expression: a word here stands where a clause or operator does
    i = 1 if tokens[0].kind == "word" and tokens[0].text.upper() in ("EXPLAIN", "PROFILE") else 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "ident" and _is_call(tokens, i) and (i == 0 or tokens[i - 1].text != "."):
            i = _check_function(cypher, tokens, i)  # `nextval`('s'): a quoted name is still a call
            ended = False
            continue
        if tok.kind != "word":
            if tok.kind == "punct":
                # after `{` a word starts a subquery (CALL { MATCH ...}) unless it is a map key or selector
                ended = tok.text in (")", "]", "}") or (
                    tok.text == "{" and i + 2 < len(tokens) and tokens[i + 2].text not in (":", "}", ",")
                )
            else:
                ended = True
            i += 1
            continue
        word = tok.text.upper()
        if _is_data(tokens, i):
            ended = True
            i += 1
            continue
        if word == "CALL":
            i = _check_call(cypher, tokens, i)
            ended = True
            continue
        if word in READ_KEYWORDS:
            ended = word in _ENDING_KEYWORDS
            i += 1
            continue
        if word in WRITE_CLAUSES or (ended and word in WRITE_STATEMENTS):
            raise _refuse(
                WriteRejectedError,
                f"{word} {_where(cypher, tok.pos)} would change the graph, the database or files; only reading "
                "queries may run here (use --write / read_only=False to write)",
                cypher,
            )
        if _is_call(tokens, i):
            i = _check_function(cypher, tokens, i)
            ended = False
            continue
        if ended:
            raise _refuse(
                WriteRejectedError,
                f"{tok.text} {_where(cypher, tok.pos)} is not a clause or operator that read-only queries may use "
                "(a variable there would be a syntax error)",
                cypher,
            )
        ended = True  # a variable
        i += 1


def _check_function(cypher: str, tokens: list[Token], i: int) -> int:
    """A call ``name(`` / ``ns.name(`` must name a read-only function. Returns the index of its ``(``."""
    name, end = _dotted_name(tokens, i)
    if name.lower() not in READ_FUNCTIONS:
        raise _refuse(
            FunctionNotAllowedError,
            f"function {name}() {_where(cypher, tokens[i].pos)} is not on the read-only allow-list "
            "(kvgraph.graphdb.guard.READ_FUNCTIONS)",
            cypher,
        )
    return end


def _check_call(cypher: str, tokens: list[Token], i: int) -> int:
    """``CALL {`` / ``CALL (`` subqueries pass; ``CALL name(...)`` needs an allowed procedure.

    Returns the index after what was checked.
    """
    if i + 1 < len(tokens) and tokens[i + 1].text in ("{", "("):
        return i + 1  # a subquery: its clauses are checked by the same loop
    name, end = _dotted_name(tokens, i + 1)
    if name.lower() not in READ_PROCEDURES:
        raise _refuse(
            WriteRejectedError,
            f"CALL {name or '?'} {_where(cypher, tokens[i].pos)} is not an allowed read procedure "
            f"(allowed: {', '.join(sorted(READ_PROCEDURES))})",
            cypher,
        )
    return end


# ---------------------------------------------------------------------- traversals


def check_bounded(cypher: str, tokens: list[Token], max_hops: int) -> None:
    """Reject ``[*]``, ``[*2..]``, ``[*..N]``/``[*M..N]``/``[*N]`` with N above ``max_hops``, and the same
    for Neo4j's quantified path patterns ``((a)-->(b)){M,N}``."""
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
        if tok.text == "{" and i > 0 and tokens[i - 1].text == ")":
            _check_quantifier(cypher, tokens, i, max_hops)
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
        end = tokens[j - 1].pos + len(tokens[j - 1].text)  # the pattern so far, for the message
        if j < len(tokens) and tokens[j].text == "..":
            end = tokens[j].pos + 2
            j += 1
            if j < len(tokens) and tokens[j].kind == "number":
                upper = tokens[j].text
                end = tokens[j].pos + len(upper)
        elif lower is not None:
            upper = lower  # *3 means exactly three hops
        _check_upper(cypher, tok.pos, cypher[tok.pos : end], upper, max_hops)


def _check_quantifier(cypher: str, tokens: list[Token], i: int, max_hops: int) -> None:
    """``){M,N}`` / ``){N}`` after a parenthesized path: N must be given and at most ``max_hops``."""
    j = i + 1
    parts: list[str] = []
    while j < len(tokens) and tokens[j].text != "}" and len(parts) < 4:
        parts.append(tokens[j].text)
        j += 1
    if not parts or not all(p.isdigit() or p == "," for p in parts):
        return  # a map or a subquery body, not a quantifier
    upper = parts[-1] if parts[-1].isdigit() else None
    _check_upper(cypher, tokens[i].pos, "{" + "".join(parts) + "}", upper, max_hops)


def _check_upper(cypher: str, pos: int, pattern: str, upper: str | None, max_hops: int) -> None:
    if upper is None:
        raise _refuse(
            UnboundedTraversalError,
            f"variable-length pattern {pattern!r} {_where(cypher, pos)} has no upper bound; write e.g. "
            f"*1..{max_hops} (at most {max_hops} hops)",
            cypher,
        )
    if not upper.isdigit() or int(upper) > max_hops:
        raise _refuse(
            UnboundedTraversalError,
            f"variable-length pattern {pattern!r} {_where(cypher, pos)} allows {upper} hops; the limit is {max_hops}",
            cypher,
        )
