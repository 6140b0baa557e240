"""Untrusted Cypher through every interface: nothing changes, nothing crashes, the store keeps answering.

The audit of issue 12 (tests/graphdb/cypher_attacks.py) runs through the Python API
(``kb.graph.query`` on a writable knowledge base, the most exposed path), the command line
(``kvgraph graph query``) and text-to-Cypher (the attack as the LLM's reply, from a real loopback
OpenAI server); then grammar-generated queries (hypothesis) mixing reading clauses, writes,
statements, comments, odd whitespace, huge literals and disallowed functions. After each one:

- the graph's contents and catalog (labels, properties, relationship types and endpoints, table
  comments) are as before;
- no file changed under the knowledge base or under $HOME, which points at a temporary directory
  with an "installed" extension (what ``UNINSTALL json`` deleted in the audit);
- the outcome is rows or a kvgraph error (anything else fails the test), and the test process,
  which is the caller, is still here to check.

The fast part takes about 20 s; ``slow`` runs ten times the generated queries (1,500, ~90 s).
"""

from __future__ import annotations

import contextlib
import json
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from cypher_attacks import AUDIT, PAST_THE_GUARD, build_graph, fake_home, file_hashes, graph_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvgraph.cli.graph import graph
from kvgraph.errors import KvgraphError
from kvgraph.graphdb.base import QueryAbortedError, QueryTimeoutError, WriteRejectedError
from kvgraph.graphqa.text2cypher import TextToCypher
from kvgraph.kb import KnowledgeBase
from kvgraph.llm import OpenAICompatibleLLM
from kvgraph.testing.openai_server import FakeOpenAIServer


@dataclass
class Env:
    kb: KnowledgeBase
    kb_dir: Path
    home: Path

    def fingerprint(self) -> tuple[Any, ...]:
        comments = self.kb.graph.query("CALL show_tables() RETURN name, comment ORDER BY name").rows
        return file_hashes(self.kb_dir, self.home), graph_state(self.kb.graph.store), comments


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("fuzz")
    home = root / "home"
    fake_home(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))  # an UNINSTALL that got through would delete the fake extension
        mp.delenv("KVGRAPH_NEO4J_URI", raising=False)
        kb = KnowledgeBase.open(root / "kb")  # writable, as the Python API opens it by default
        build_graph(kb.graph.store)
        try:
            yield Env(kb, root / "kb", home)
        finally:
            kb.close()


def test_a_read_changes_nothing(env: Env) -> None:
    """The baseline of every check below: an ordinary read leaves the fingerprint as it was."""
    before = env.fingerprint()
    assert env.kb.graph.query("MATCH (t:Task)-[:ASSIGNED_TO]->(m:Team) RETURN m.name, count(t)").rows
    assert env.fingerprint() == before


@pytest.mark.parametrize("attack", AUDIT, ids=[a.name for a in AUDIT])
def test_the_audit_is_refused_through_the_python_api(env: Env, attack: Any) -> None:
    before = env.fingerprint()
    with pytest.raises(WriteRejectedError) as e:
        env.kb.graph.query(attack.cypher, attack.params)
    assert "\n" not in str(e.value) and len(str(e.value)) < 600
    assert env.fingerprint() == before
    assert env.kb.graph.query("MATCH (n) RETURN count(n)").scalar() == 17


@pytest.mark.parametrize(
    ("attack", "timeout_s"),
    [(PAST_THE_GUARD[0], 10.0), (PAST_THE_GUARD[2], 1.0)],
    ids=[PAST_THE_GUARD[0].name, PAST_THE_GUARD[2].name],
)
def test_what_passes_the_guard_is_stopped_by_the_sandbox(env: Env, attack: Any, timeout_s: float) -> None:
    before = env.fingerprint()
    with pytest.raises((QueryAbortedError, QueryTimeoutError)):
        env.kb.graph.query(attack.cypher, attack.params, timeout_s=timeout_s)
    assert env.fingerprint() == before
    assert env.kb.graph.query("MATCH (n) RETURN count(n)").scalar() == 17


def test_the_audit_is_refused_through_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    fake_home(home)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KVGRAPH_NEO4J_URI", raising=False)
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        build_graph(kb.graph.store)

    @click.group()
    @click.pass_context
    def main(ctx: click.Context) -> None:
        ctx.obj = {"kb": str(tmp_path / "kb")}

    main.add_command(graph)
    before = file_hashes(tmp_path / "kb", home)
    for attack in AUDIT:
        args = ["graph", "query", attack.cypher]
        args += [f"--param={k}={v}" for k, v in attack.params.items()]
        r = CliRunner().invoke(main, args)
        assert r.exit_code != 0, (attack.name, r.stdout)
        assert r.exception is None or isinstance(r.exception, SystemExit), (attack.name, r.exception)
        assert r.stderr.startswith("error: read-only query rejected"), (attack.name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (attack.name, r.stderr)
    r = CliRunner().invoke(main, ["graph", "query", "MATCH (n) RETURN count(n) AS n", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"] == [[17]]
    assert file_hashes(tmp_path / "kb", home) == before


def test_the_audit_written_by_an_llm_is_refused(env: Env, start_openai_server: Callable[..., FakeOpenAIServer]) -> None:
    """Text-to-Cypher: the model's reply is the attack (a prompt injection got through)."""
    current: dict[str, str] = {}
    server = start_openai_server(reply=lambda messages: current["reply"])
    before = env.fingerprint()
    with OpenAICompatibleLLM(server.base_url, "test-model", max_retries=0) as llm:
        t2c = TextToCypher(llm, env.kb.graph.store)
        for attack in [*AUDIT, *PAST_THE_GUARD[:1]]:
            current["reply"] = f"```cypher\n{attack.cypher}\n```"
            with contextlib.suppress(KvgraphError):  # refused, or nothing usable: either way nothing ran
                t2c.ask("How many teams are there?", synthesize=False)
            assert env.fingerprint() == before, attack.name
    assert env.kb.graph.query("MATCH (n) RETURN count(n)").scalar() == 17


# ---------------------------------------------------------------------- generated queries

LABELS = ["Team", "Person", "Task", "Nope", "`Task`"]
RELS = ["MEMBER", "ASSIGNED_TO", "DEPENDS_ON", "X"]
PROPS = ["id", "name", "status", "w", "age", "since", "set", "create", "`delete`"]
VARS = ["a", "b", "n", "m", "set", "load", "merge", "comment", "update"]
FUNCS = [
    *("count", "toLower", "size", "range", "coalesce", "abs", "labels", "label", "sum", "collect", "repeat"),
    *("lpad", "nextval", "setseed", "apoc.do.it", "read_csv", "current_setting", "`nextval`", "date.truncate"),
]
WORDS = [
    *("CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "FOREACH", "LOAD", "COPY", "USE", "INSTALL"),
    *("UNINSTALL", "UPDATE", "COMMENT", "CHECKPOINT", "DROP", "ALTER", "ATTACH", "BEGIN", "COMMIT", "EXPORT"),
    *("MATCH", "RETURN", "WITH", "UNWIND", "WHERE", "CALL", "UNION", "FOO", "EXPLAIN"),
]
STATEMENTS = [a.cypher for a in AUDIT if len(a.cypher) < 200]
STRINGS = [
    "'x'",
    "'it\\'s'",
    "'a''b'",
    '"DETACH DELETE n"',
    "'; CREATE (x) //'",
    "'/*'",
    "'\\'' SET n.name = 'q' //'",
    "'\\u0041'",
    '"\\" SET n.x = 1 //"',
]
SEPARATORS = [" ", "\n", " /* c */ ", " // c\n", "\t", " //x\r", "\u00a0", "\r\n", " /* SET n.x = 1 */ "]
OPS = ["+", "-", "*", "/", "%", "=", "<>", "<", ">=", "AND", "OR", "XOR", "IN", "=~", "STARTS WITH", "CONTAINS"]

name = st.sampled_from
ints = st.one_of(st.integers(-5, 50), st.sampled_from([300_000_000, 2**63, 10**30, 1000000]))
literals = st.one_of(
    ints.map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    name(STRINGS),
    st.text(string.ascii_letters + " ;'\"\\/*-", max_size=10).map(lambda s: "'" + s.replace("'", "\\'") + "'"),
    name(["NULL", "true", "false", "[]", "$p", "$n", "$merge"]),
)
atoms = st.one_of(literals, name(VARS), st.tuples(name(VARS), name(PROPS)).map(lambda t: f"{t[0]}.{t[1]}"))


def _extend(e: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(e, name(OPS), e).map(" ".join),
        e.map(lambda x: f"({x})"),
        st.tuples(name(FUNCS), st.lists(e, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.lists(e, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(name(PROPS), e).map(lambda t: "{" + f"{t[0]}: {t[1]}" + "}"),
        e.map(lambda x: f"NOT {x}"),
        st.tuples(e, e, e).map(lambda t: f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"),
        st.tuples(name(VARS), e, e).map(lambda t: f"[{t[0]} IN {t[1]} | {t[2]}]"),
        st.tuples(e, name(["IS NULL", "IS NOT NULL"])).map(" ".join),
    )


exprs = st.recursive(atoms, _extend, max_leaves=8)
hops = name(["", "*", "*1..3", "*2..", "*1..9", "*3", "* SHORTEST 1..3", "*..4"])
nodes = st.tuples(name(["", *VARS]), name(["", *LABELS])).map(lambda t: f"({t[0]}{':' + t[1] if t[1] else ''})")
rels = st.tuples(name(["", "r"]), name(RELS), hops, name(["-{}->", "<-{}-", "-{}-"])).map(
    lambda t: t[3].format(f"[{t[0]}:{t[1]}{t[2]}]")
)
patterns = st.tuples(nodes, st.lists(st.tuples(rels, nodes), max_size=2)).map(
    lambda t: t[0] + "".join(r + n for r, n in t[1])
)
clauses = st.one_of(
    st.tuples(patterns, st.one_of(st.just(""), exprs.map(lambda x: f" WHERE {x}"))).map(
        lambda t: f"MATCH {t[0]}{t[1]}"
    ),
    patterns.map(lambda p: f"OPTIONAL MATCH {p}"),
    st.tuples(exprs, name(VARS)).map(lambda t: f"WITH {t[0]} AS {t[1]}"),
    st.just("WITH *"),
    st.tuples(exprs, name(VARS)).map(lambda t: f"UNWIND {t[0]} AS {t[1]}"),
    st.lists(exprs, min_size=1, max_size=3).map(lambda xs: "RETURN " + ", ".join(xs)),
    st.tuples(exprs, ints).map(lambda t: f"RETURN {t[0]} ORDER BY {t[0]} DESC LIMIT {abs(t[1]) % 50}"),
    name(["CALL show_tables() RETURN *", "CALL table_info('Task') RETURN *", "CALL threads=1"]),
    patterns.map(lambda p: f"CALL {{ MATCH {p} RETURN count(*) AS c }}"),
    st.tuples(name(WORDS), exprs).map(" ".join),
    patterns.map(lambda p: f"CREATE {p}"),
    st.tuples(name(VARS), name(PROPS), exprs).map(lambda t: f"SET {t[0]}.{t[1]} = {t[2]}"),
    name(VARS).map(lambda v: f"DETACH DELETE {v}"),
    st.just("LOAD FROM '/etc/passwd' RETURN *"),
)
# Reading queries that mostly parse and bind, so that the engine (in the sandbox) runs many of them.
read_atoms = st.one_of(
    name(["a.id", "a.name", "a.id", "label(a)", "count(*)"]),
    st.integers(-3, 20).map(str),
    name(["'open'", "'Team 1'", "'x\\'y'", "NULL", "true", "$p", "$n"]),
)
read_exprs = st.recursive(
    read_atoms,
    lambda e: st.one_of(
        st.tuples(e, name(["+", "*", "=", "<>", "<", "CONTAINS", "STARTS WITH"]), e).map(" ".join),
        e.map(lambda x: f"({x})"),
        st.tuples(name(["toLower", "size", "coalesce", "abs", "upper", "to_string", "list_sort"]), e).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.lists(e, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(e, e, e).map(lambda t: f"CASE WHEN {t[0]} IS NULL THEN {t[1]} ELSE {t[2]} END"),
    ),
    max_leaves=6,
)
reading = st.tuples(
    name(["(a:Task)", "(a:Person)", "(a)", "(a:Task)-[:DEPENDS_ON*1..3]->(b:Task)", "(a:Person)-[:MEMBER]->(b:Team)"]),
    st.one_of(st.just(""), read_exprs.map(lambda x: f" WHERE {x} IS NOT NULL")),
    st.lists(read_exprs, min_size=1, max_size=3),
    name(["", " ORDER BY 1", " LIMIT 3", " SKIP 1 LIMIT 2"]),
    name(SEPARATORS),
).map(lambda t: f"MATCH {t[0]}{t[1]}{t[4]}RETURN {', '.join(t[2])}{t[3]}")
queries = st.one_of(
    reading,
    reading,
    st.tuples(
        name(["", "EXPLAIN ", "PROFILE "]),
        st.lists(st.tuples(clauses, name(SEPARATORS)), min_size=1, max_size=5),
        name(["", ";", "; UNINSTALL json", "; CREATE (:Team {id: 'q'})", " // end", ";\n"]),
    ).map(lambda t: t[0] + "".join(c + s for c, s in t[1]) + t[2]),
    name(STATEMENTS),
    # an attack spliced into a reading query at any point
    st.tuples(
        name(["MATCH (n:Task) RETURN n.name", "MATCH (a)-[:MEMBER]->(b) RETURN a, b", "RETURN 1"]),
        st.integers(0, 40),
        name(["SET n.name = 'x' ", "UNINSTALL json ", " CREATE (:Team) ", "; CHECKPOINT", " nextval('s') "]),
    ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]),
)
params = st.fixed_dictionaries(
    {"p": st.one_of(st.integers(), st.text(max_size=5)), "n": ints, "merge": st.just("CREATE (x)")}
)


def _fuzz(env: Env, examples: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    before = env.fingerprint()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(query=queries, bound=params)
    def run(query: str, bound: dict[str, Any]) -> None:
        try:
            env.kb.graph.query(query, bound, timeout_s=5, max_rows=100)
            outcomes["ran"] += 1
        except WriteRejectedError:
            outcomes["refused by the guard"] += 1
        except (QueryAbortedError, QueryTimeoutError):
            outcomes["stopped by the sandbox"] += 1
        except KvgraphError:
            outcomes["engine error"] += 1  # a syntax or binder error: the engine refused it
        assert env.fingerprint() == before, query

    run()
    assert env.kb.graph.query("MATCH (n) RETURN count(n)").scalar() == 17
    return outcomes


def test_generated_queries_change_nothing_and_crash_nothing(env: Env) -> None:
    outcomes = _fuzz(env, 150)
    # both sides of the guard were exercised
    assert outcomes["ran"] + outcomes["engine error"] > 0 and outcomes["refused by the guard"] > 0, outcomes


@pytest.mark.slow
def test_many_generated_queries(env: Env) -> None:
    outcomes = _fuzz(env, 1500)
    assert outcomes["ran"] > 0 and outcomes["refused by the guard"] > 0, outcomes
