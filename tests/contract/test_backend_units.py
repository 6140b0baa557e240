"""The pure parts of the server backends, without a server: SQL translation, the Postgres planner,
URIs and the settings that name the backends."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kvgraph.config import load_settings, write_settings
from kvgraph.errors import InvalidInputError
from kvgraph.filters import parse_filter
from kvgraph.graphdb.dialect import detect
from kvgraph.graphdb.open import parse_bolt_uri
from kvgraph.store.pg_sql import check_schema_name, exact_json, filter_sql, redact_uri, split_uri
from kvgraph.store.postgres import MAX_EF, choose_plan


def test_values_are_bound_never_formatted() -> None:
    evil = "x'); DROP TABLE nodes; --"
    spec = {"$or": [{evil: evil}, {"k": {"$text_match": evil}}, {"n": {"$in": [evil, 1]}}, {"s": {"$gt": evil}}]}
    sql, params = filter_sql(parse_filter(spec))
    assert evil not in sql and "DROP" not in sql
    assert sql.count("%s") == len(params)
    assert evil in params


def test_exact_json_keeps_every_digit() -> None:
    assert exact_json(0.1) == "0.1000000000000000055511151231257827021181583404541015625"
    assert exact_json(1733363000123456789) == "1733363000123456789"
    assert exact_json(float(1733363000123456789)) == "1733363000123456768"
    assert exact_json([1, "a", None, True]) == '[1,"a",null,true]'


def test_unmatchable_operands_are_false_not_errors() -> None:
    for spec in ({"a": math.nan}, {"a": {"$gt": math.nan}}, {"a": "nul\x00"}, {"a": {"$in": [math.inf]}}):
        sql, _ = filter_sql(parse_filter(spec))
        assert "FALSE" in sql


def test_the_planner() -> None:
    common = {"has_index": True, "ef_search": 40, "ef_override": None, "exact_limit": 10_000, "iterative": False}
    assert choose_plan(k=10, n_live=5_000, n_allowed=None, selectivity=None, strategy="auto", **common).kind == "exact"
    unfiltered = choose_plan(k=10, n_live=200_000, n_allowed=None, selectivity=None, strategy="auto", **common)
    assert (unfiltered.kind, unfiltered.ef) == ("ann", 40)
    # a selective filter (fewer matches than exact_limit) is answered exactly
    selective = choose_plan(k=10, n_live=200_000, n_allowed=2_000, selectivity=None, strategy="auto", **common)
    assert selective.kind == "exact"
    # a broad one by HNSW, its depth raised by 1 / selectivity
    broad = choose_plan(k=10, n_live=200_000, n_allowed=10_000, selectivity=0.5, strategy="auto", **common)
    assert broad.kind == "ann" and broad.ef == 80
    # too deep for pgvector without iterative scans: exact
    deep = choose_plan(k=50, n_live=1_000_000, n_allowed=10_000, selectivity=0.05, strategy="auto", **common)
    assert deep.kind == "exact"
    iterative = choose_plan(
        k=10, n_live=1_000_000, n_allowed=10_000, selectivity=0.01, strategy="auto", **{**common, "iterative": True}
    )
    assert iterative.kind == "ann" and iterative.iterative and iterative.ef <= MAX_EF
    assert choose_plan(k=10, n_live=10**6, n_allowed=None, selectivity=None, strategy="exact", **common).kind == "exact"
    no_index = {**common, "has_index": False}
    assert choose_plan(k=10, n_live=10**6, n_allowed=None, selectivity=None, strategy="ann", **no_index).kind == "exact"
    with pytest.raises(InvalidInputError):
        choose_plan(k=10, n_live=10, n_allowed=None, selectivity=None, strategy="fast", **common)


def test_uris_names_and_secrets(tmp_path: Path) -> None:
    assert split_uri("postgresql://u@h/db?schema=kb1&sslmode=require", ("schema",)) == (
        "postgresql://u@h/db?sslmode=require",
        {"schema": "kb1"},
    )
    assert redact_uri("postgresql://u:hunter2@h:5432/db?password=x") == "postgresql://u:***@h:5432/db?password=***"
    with pytest.raises(InvalidInputError):
        check_schema_name('kb"; DROP')
    t = parse_bolt_uri("neo4j+s://u:p@example.org:7687?database=kb", env={})
    assert (t.uri, t.user, t.password, t.database) == ("neo4j+s://example.org:7687", "u", "p", "kb")
    with pytest.raises(InvalidInputError):
        parse_bolt_uri("http://example.org")
    assert detect("Neo4j/5.26.0 compatible (ArcadeDB 26.10.2)").name == "arcadedb"
    assert detect("Neo4j/5.26.0").server_timeouts
    # settings: URIs from the file or the environment; a password is never written to the file
    s = load_settings(None, {"store_uri": "postgresql://kv:hunter2@db/kb?schema=a", "graph_uri": "bolt://n:pw@g"})
    write_settings(tmp_path, s)
    text = (tmp_path / "kvgraph.toml").read_text()
    assert "hunter2" not in text and "pw@" not in text and "postgresql://kv@db/kb?schema=a" in text
    assert load_settings(tmp_path, env={"KVGRAPH_GRAPH_URI": "neo4j://h2"}).graph_uri == "neo4j://h2"
    with pytest.raises(InvalidInputError, match="store_uri"):
        load_settings(None, {"store_uri": "mysql://h/db"})
