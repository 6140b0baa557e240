"""LLM triple extraction: parsing, the cached extraction run against a real loopback OpenAI server,
triples in the document graph (RELATED edges with provenance), and the knowledge base's build/refresh."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvgraph.docgraph.build import EDGE_TYPES, DocGraph, build_doc_graph, write_doc_graph
from kvgraph.docgraph.triples import Triple, TripleExtractor, TripleProgress, parse_triples
from kvgraph.errors import InvalidInputError
from kvgraph.graphdb.ladybug import LadybugGraphStore
from kvgraph.kb import KnowledgeBase
from kvgraph.llm.base import LLMError, LLMUnavailableError
from kvgraph.llm.openai_compat import OpenAICompatibleLLM
from kvgraph.retrieve.graph import describe_path
from kvgraph.schema import Document, Node
from kvgraph.testing.openai_server import FakeOpenAIServer

# What a good model would answer for each passage, keyed by a phrase of the passage.
FACTS = {
    "Aurelia Voss": [["Aurelia Voss", "composed", "Glass Harbor"], ["Aurelia Voss", "was born in", "Tallinn"]],
    "premiered": [["Glass Harbor", "premiered at", "Teatro Nerino"]],
    "Teatro Nerino stands": [["Teatro Nerino", "is located in", "Porto Vell"]],
    "bees": [["honey bees", "dance to signal", "flower locations"]],
}


def scripted_reply(messages: list[dict[str, Any]]) -> str:
    prompt = str(messages[0]["content"])
    passage = prompt.split("Passage:\n", 1)[1]
    if "NOJSON" in passage:
        return "I cannot help with that."
    rows = [row for phrase, rows in FACTS.items() if phrase in passage for row in rows]
    # Real models wrap JSON in prose and fences; the parser must cope.
    return "Here are the triples:\n```json\n" + json.dumps({"triples": rows}) + "\n```"


@pytest.fixture
def server(start_openai_server: Callable[..., FakeOpenAIServer]) -> FakeOpenAIServer:
    return start_openai_server(reply=scripted_reply)


def llm_for(server: FakeOpenAIServer) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(server.base_url, model="test-model", max_retries=0)


def chat_requests(server: FakeOpenAIServer) -> list[Any]:
    return server.requests_to("/v1/chat/completions")


# ---------------------------------------------------------------------- parsing


def test_parse_triples_accepts_the_shapes_models_write() -> None:
    assert parse_triples('{"triples": [["A", "Knows", "B"]]}') == [("A", "knows", "B")]
    assert parse_triples('Sure!\n```json\n[["A", "knows", "B"]]\n```\nHope this helps.') == [("A", "knows", "B")]
    rows = [{"subject": "Ada Lovelace", "predicate": "worked with", "object": "Charles Babbage"}]
    assert parse_triples(json.dumps({"facts": rows})) == [("Ada Lovelace", "worked with", "Charles Babbage")]
    assert parse_triples('{"triples": [{"head": "X", "relation": "r", "tail": "Y"}]}') == [("X", "r", "Y")]


def test_parse_triples_drops_bad_rows_and_repeats() -> None:
    reply = json.dumps(
        {
            "triples": [
                ["The Beatles", "recorded", "Abbey Road"],
                ["the beatles", "Recorded", "abbey road"],  # the same fact spelled differently
                ["Abbey Road", "is", "abbey road"],  # subject is its own object
                ["", "x", "y"],
                ["a", "b"],
                "not a row",
                ["A" * 300, "is", "long"],
                [1969, "year of", "Abbey Road"],
            ]
        }
    )
    assert parse_triples(reply) == [("The Beatles", "recorded", "Abbey Road"), ("1969", "year of", "Abbey Road")]
    assert parse_triples(reply, max_triples=1) == [("The Beatles", "recorded", "Abbey Road")]


def test_parse_triples_without_json_is_none_and_empty_list_is_empty() -> None:
    assert parse_triples("I cannot help with that.") is None
    assert parse_triples('{"answer": "none", "note": "x"}') is None
    assert parse_triples('{"triples": []}') == []


# ---------------------------------------------------------------------- extraction run


def chunk(id: str, text: str, title: str = "") -> Node:
    return Node(id=id, text=text, metadata={"title": title} if title else {})


CHUNKS = [
    chunk("c1", "Aurelia Voss wrote music all her life.", "Aurelia Voss"),
    chunk("c2", "Glass Harbor premiered in 1931 to mixed reviews.", "Glass Harbor"),
    chunk("c3", "Honey bees dance; bees tell the hive where flowers are.", "Bees"),
]


def test_extraction_keeps_provenance_counts_tokens_and_caches(server: FakeOpenAIServer, tmp_path: Path) -> None:
    cache = tmp_path / "triples.jsonl"
    seen: list[TripleProgress] = []
    with llm_for(server) as llm:
        run = TripleExtractor(llm, cache, concurrency=2, progress=seen.append).extract(CHUNKS)
    assert run.triples["c1"] == [
        Triple("Aurelia Voss", "composed", "Glass Harbor", "c1"),
        Triple("Aurelia Voss", "was born in", "Tallinn", "c1"),
    ]
    assert run.triples["c2"] == [Triple("Glass Harbor", "premiered at", "Teatro Nerino", "c2")]
    assert run.count == 4 and run.model == "test-model"
    assert [p.done for p in seen] == [1, 2, 3] and seen[-1].total == 3
    assert run.stats.requests == 3 and run.stats.cached == 0
    # the loopback server counts words as tokens; the run reports what the server reported
    assert run.stats.prompt_tokens > 3 * 60 and run.stats.completion_tokens > 0
    prompt = chat_requests(server)[0].body["messages"][0]["content"]
    assert "Title: " in prompt and '{"triples"' in prompt
    assert len(cache.read_text().splitlines()) == 3

    # A re-run, even with the chunks renamed, asks nothing: the cache is keyed by text, not id.
    renamed = [chunk("new-" + c.id, c.text, str(c.metadata.get("title", ""))) for c in CHUNKS]
    with llm_for(server) as llm:
        again = TripleExtractor(llm, cache).extract(renamed)
    assert len(chat_requests(server)) == 3
    assert again.stats.cached == 3 and again.stats.requests == 0 and again.stats.prompt_tokens == 0
    assert again.triples["new-c1"][0] == Triple("Aurelia Voss", "composed", "Glass Harbor", "new-c1")

    # Without an LLM: cached chunks still get their triples; the others are counted missing.
    offline = TripleExtractor(None, cache).extract([*CHUNKS, chunk("c4", "Teatro Nerino stands by the sea.")])
    assert offline.stats.missing == 1 and offline.stats.cached == 3 and "c4" not in offline.triples


def test_unparsable_reply_gets_one_retry_then_none(server: FakeOpenAIServer, tmp_path: Path) -> None:
    with llm_for(server) as llm:
        run = TripleExtractor(llm, tmp_path / "t.jsonl").extract([chunk("x", "NOJSON here")])
    requests = chat_requests(server)
    assert len(requests) == 2 and run.stats.unparsable == 1 and run.triples == {}
    retry = requests[1].body["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert retry[1]["content"] == "I cannot help with that." and "JSON only" in retry[2]["content"]
    # recorded as "no triples", so a re-run does not ask again
    with llm_for(server) as llm:
        TripleExtractor(llm, tmp_path / "t.jsonl").extract([chunk("x", "NOJSON here")])
    assert len(chat_requests(server)) == 2


def test_llm_failure_stops_and_keeps_finished_chunks(server: FakeOpenAIServer, tmp_path: Path) -> None:
    cache = tmp_path / "t.jsonl"
    with llm_for(server) as llm:
        TripleExtractor(llm, cache).extract(CHUNKS[:1])
        server.fail_next(10, status=500)
        with pytest.raises(LLMError):
            TripleExtractor(llm, cache, concurrency=1).extract(CHUNKS)
    assert len(cache.read_text().splitlines()) == 1  # c1 was cached before; nothing half-written


def test_bad_settings_are_named() -> None:
    with pytest.raises(InvalidInputError, match="concurrency"):
        TripleExtractor(None, concurrency=0)
    with pytest.raises(InvalidInputError, match="max_triples"):
        TripleExtractor(None, max_triples=True)


# ---------------------------------------------------------------------- the graph


def triples_of(*rows: tuple[str, str, str, str]) -> dict[str, list[Triple]]:
    out: dict[str, list[Triple]] = {}
    for s, r, o, c in rows:
        out.setdefault(c, []).append(Triple(s, r, o, c))
    return out


def test_triples_become_entities_mentions_and_related_edges(tmp_path: Path) -> None:
    triples = triples_of(
        ("Aurelia Voss", "composed", "Glass Harbor", "c1"),
        ("Glass Harbor", "premiered at", "Teatro Nerino", "c2"),
        ("Glass Harbor", "was revived at", "Teatro Nerino", "c3"),
    )
    g = build_doc_graph(CHUNKS, triples=triples, offline_entities=False)
    entities = {g.keys[i] for i, k in enumerate(g.kinds) if k == "entity"}
    assert entities == {"entity:aurelia voss", "entity:glass harbor", "entity:teatro nerino"}
    related = {(g.keys[a], g.keys[b]) for a, b, t in zip(g.src, g.dst, g.etype) if EDGE_TYPES[t] == "RELATED"}
    assert related == {("entity:aurelia voss", "entity:glass harbor"), ("entity:glass harbor", "entity:teatro nerino")}
    mentions = {(g.keys[a], g.keys[b]) for a, b, t in zip(g.src, g.dst, g.etype) if EDGE_TYPES[t] == "MENTIONS"}
    assert ("c3", "entity:teatro nerino") in mentions and ("c1", "entity:glass harbor") in mentions
    # the title entity is weighted like the offline extractor's title mentions
    w = {(g.keys[a], g.keys[b]): float(x) for a, b, t, x in zip(g.src, g.dst, g.etype, g.weight) if t == 2}
    assert w["c1", "entity:aurelia voss"] == 2.0 and w["c1", "entity:glass harbor"] == 1.0
    assert g.relations("entity:teatro nerino", "entity:glass harbor") == [
        ("premiered at", "<-", "c2"),
        ("was revived at", "<-", "c3"),
    ]
    assert g.meta["params"]["triples"] == 3 and g.meta["params"]["extractor"] is None
    assert describe_path(g, ["c1", "entity:aurelia voss", "entity:glass harbor", "entity:teatro nerino"]) == (
        "Aurelia Voss (chunk) → Aurelia Voss —composed→ Glass Harbor —premiered at→ Teatro Nerino"
    )
    assert describe_path(g, ["entity:teatro nerino", "entity:glass harbor", "gone"]) == (
        "Teatro Nerino ←premiered at— Glass Harbor → gone"
    )

    back = DocGraph.load(g.save(tmp_path / "g"))
    assert back.facts == g.facts and back.relations("entity:aurelia voss", "entity:glass harbor")

    # offline and LLM entities together: the offline names are still there
    both = build_doc_graph(CHUNKS, triples=triples)
    assert "entity:bees dance" in both.index and "entity:aurelia voss" in both.index


def test_a_graph_saved_before_related_edges_still_loads(tmp_path: Path) -> None:
    g = build_doc_graph(CHUNKS)
    d = g.save(tmp_path / "old")
    info = json.loads((d / "graph.json").read_text())
    info["edge_types"] = list(EDGE_TYPES[:5])
    del info["facts"]
    (d / "graph.json").write_text(json.dumps(info))
    assert DocGraph.load(d).facts == []
    info["edge_types"] = ["NEXT", "MENTIONS"]  # not a prefix: a different format
    (d / "graph.json").write_text(json.dumps(info))
    with pytest.raises(InvalidInputError, match="rebuild"):
        DocGraph.load(d)


def test_related_edges_export_to_cypher_with_relation_and_chunk(tmp_path: Path) -> None:
    triples = triples_of(
        ("Aurelia Voss", "composed", "Glass Harbor", "c1"),
        ("Aurelia Voss", "wrote", "Glass Harbor", "c2"),
    )
    g = build_doc_graph(CHUNKS, triples=triples)
    store = LadybugGraphStore.open(tmp_path / "graph")
    try:
        counts = write_doc_graph(g, store)
        assert counts["RELATED"] == 1
        rows = store.query(
            "MATCH (a:Entity)-[r:RELATED]->(b:Entity {id: $b}) RETURN a.name, r.relation, r.chunk_ids",
            {"b": "glass harbor"},
        ).rows
    finally:
        store.close()
    assert rows == [["Aurelia Voss", "composed; wrote", "c1 c2"]]


# ---------------------------------------------------------------------- through the knowledge base

DOCS = [
    Document(id="voss", text="Aurelia Voss wrote music from the age of six.", metadata={"title": "Aurelia Voss"}),
    Document(
        id="harbor",
        text="The opera premiered in the spring, and critics praised its second act.",
        metadata={"title": "Glass Harbor"},
    ),
    Document(
        id="nerino", text="Teatro Nerino stands on the waterfront of Porto Vell.", metadata={"title": "Teatro Nerino"}
    ),
    Document(id="bees", text="Honey bees dance to tell the hive where flowers are.", metadata={"title": "Bees"}),
]


@pytest.fixture
def no_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KVGRAPH_LLM_BASE_URL", "OPENAI_BASE_URL", "KVGRAPH_LLM_MODEL", "KVGRAPH_NEO4J_URI"):
        monkeypatch.delenv(name, raising=False)


def test_kb_build_with_llm_triples_walks_relations_and_refreshes_incrementally(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_llm: None, caplog: Any
) -> None:
    kb_dir = tmp_path / "kb"
    with KnowledgeBase.open(kb_dir, expand_neighbors=False) as kb:
        kb.add_documents(DOCS[:3])
        with pytest.raises(LLMUnavailableError, match="extractor llm"):
            kb.graph.build(extractor="llm")
        with pytest.raises(InvalidInputError, match="extractor"):
            kb.graph.build(extractor="spacy")

        monkeypatch.setenv("KVGRAPH_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("KVGRAPH_LLM_MODEL", "test-model")
        progress: list[TripleProgress] = []
        report = kb.graph.build(extractor="llm", progress=progress.append)
        extraction = report["triple_extraction"]
        assert (extraction["requests"], extraction["cached"], extraction["triples"]) == (3, 0, 4)
        assert extraction["prompt_tokens"] > 0 and extraction["completion_tokens"] > 0
        assert progress[-1].done == 3 and report["edges"]["RELATED"] == 4
        assert (kb_dir / "doc-graph" / "triples.jsonl").is_file()

        # "Glass Harbor" appears in no passage text: only the LLM's triples connect the Voss passage
        # to the premiere passage and on to the theatre's. The walk reaches them and the path says how.
        hits = kb.graph.retriever(seed_mode="dense", hops=3, seeds=1).retrieve("Who is Aurelia Voss?", 3)
        ids = {h.node.ref_doc_id: h for h in hits}
        assert {"voss", "harbor", "nerino"} <= set(ids)
        path = ids["nerino"].path
        assert "entity:glass harbor" in path or "entity:teatro nerino" in path
        g = kb.graph.doc_graph()
        assert g.relations("entity:aurelia voss", "entity:glass harbor")[0][:2] == ("composed", "->")

        # Ingest one more document: the rebuild asks the LLM about that chunk only.
        before = len(chat_requests(server))
        kb.add_documents(DOCS[3:])
        assert len(chat_requests(server)) == before + 1
        assert kb.graph.doc_graph().meta["extractor"] == "llm"
        assert "entity:honey bees" in kb.graph.doc_graph().index

        # Without an LLM the refresh keeps the cached triples and says what it could not extract.
        monkeypatch.delenv("KVGRAPH_LLM_BASE_URL")
        with caplog.at_level(logging.WARNING, logger="kvgraph.kb.graph"):
            kb.add_documents([Document(id="late", text="Teatro Nerino stands tall.", metadata={"title": "Late"})])
        assert re.search(r"without triples for 1 new chunks", caplog.text)
        g = kb.graph.doc_graph()
        assert g.relations("entity:aurelia voss", "entity:glass harbor") and "late" in set(g.doc_of.values())
    assert np.all(g.weight > 0)


def test_cli_graph_build_with_llm_triples(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_llm: None
) -> None:
    from click.testing import CliRunner

    from kvgraph.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "voss.md").write_text("# Aurelia Voss\n\nAurelia Voss wrote music from the age of six.\n")
    (docs / "harbor.md").write_text("# Glass Harbor\n\nThe opera premiered in the spring of 1931.\n")
    # People like Voss, so that dense search seeds the walk with them rather than with the opera
    # (more of them than the walk's default seed count)
    people = [("Marta Lind", "Oslo"), ("Peter Kask", "Riga"), ("Ilse Born", "Tartu"), ("Anna Tamm", "Parnu")]
    people += [("Jaan Kuusk", "Narva"), ("Liis Mets", "Viljandi"), ("Karl Saar", "Haapsalu")]
    for name, city in people:
        (docs / f"{city}.md").write_text(f"# {name}\n\n{name} was a composer and singer born in {city}.\n")
    kb = str(tmp_path / "kb")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--kb", kb, *args], catch_exceptions=False)

    assert run("ingest", str(docs)).exit_code == 0
    offline = run("graph", "build", "--extractor", "llm")
    assert offline.exit_code == 1 and "needs an LLM" in offline.output and "KVGRAPH_LLM_BASE_URL" in offline.output

    monkeypatch.setenv("KVGRAPH_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv("KVGRAPH_LLM_MODEL", "test-model")
    built = run("graph", "build", "--extractor", "both", "--concurrency", "2")
    assert built.exit_code == 0, built.output
    expected = r"triples \(test-model\): 3 from 2 chunks; 9 LLM requests, 0 chunks from the cache, [1-9]"
    assert re.search(expected, built.output)
    assert "3 RELATED" in built.output
    again = json.loads(run("graph", "build", "--extractor", "llm", "--json").output)
    assert again["triple_extraction"]["requests"] == 0 and again["triple_extraction"]["cached"] == 9
    assert again["extractor"] == "llm"

    found = json.loads(run("search", "Who is Aurelia Voss?", "--mode", "graph", "--json").output)["results"]
    harbor = next(h for h in found if h["metadata"]["file_name"] == "harbor.md")
    assert len(harbor["path"]) > 1 and harbor["path_text"].endswith("Glass Harbor (chunk)")
    shown = run("search", "Who is Aurelia Voss?", "--mode", "graph")
    assert "path: " in shown.output


def test_incremental_updates_with_llm_triples_match_a_rebuild(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_llm: None
) -> None:
    monkeypatch.setenv("KVGRAPH_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv("KVGRAPH_LLM_MODEL", "test-model")
    kb_dir = tmp_path / "kb"
    with KnowledgeBase.open(kb_dir, expand_neighbors=False) as kb:
        kb.add_documents(DOCS[:3])
        kb.graph.build(extractor="both")
        kb.add_documents(DOCS[3:])  # one more document: the graph is updated, and asks about its chunk only
        kb.delete("harbor")  # the only passage stating "premiered at": that fact and its edge go
        kb.graph.refresh()
        updated = kb.graph.doc_graph()
        assert updated.meta["updates"] == 2 and updated.meta["extractor"] == "both"
        nodes = [n for n in kb.store.get(kb.store.ids()) if n is not None]
        run = TripleExtractor(llm_for(server), kb_dir / "doc-graph" / "triples.jsonl").extract(nodes)
        assert run.stats.requests == 0  # every chunk's triples were cached by the build and the update
        rebuilt = build_doc_graph(
            nodes, np.stack([n.embedding_array() for n in nodes]), embedder=kb.embedder, triples=run.triples
        )

    def described(g: DocGraph) -> tuple[Any, ...]:
        edges = {(g.keys[a], g.keys[b], EDGE_TYPES[t]) for a, b, t in zip(g.src, g.dst, g.etype)}
        facts = {(g.keys[s], g.keys[o], r, c) for s, o, r, c in g.facts}
        return sorted(zip(g.keys, g.kinds, g.names)), edges, facts

    assert described(updated) == described(rebuilt)
    assert updated.relations("entity:aurelia voss", "entity:glass harbor")
    assert not updated.relations("entity:glass harbor", "entity:teatro nerino")
