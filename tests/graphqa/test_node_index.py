"""Vectors on graph nodes: incremental indexing, search, joining back into Cypher, the real DevOps graph."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from devops_support import import_devops, questions
from kvgraph.embed.factory import embedder_from_spec
from kvgraph.embed.hashing import HashingEmbedder
from kvgraph.errors import DimensionMismatchError, InvalidInputError, ReadOnlyError
from kvgraph.graphdb.ladybug import LadybugGraphStore
from kvgraph.graphqa.node_index import NodeIndex, node_text

TEXT = ["name", "description", "status"]


class RecordingEmbedder(HashingEmbedder):
    """The hashing embedder, remembering what it was asked to embed (to check what was re-embedded)."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim)
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return super().embed(texts)

    def embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]


TASKS = [
    {"key": "t1", "name": "LoginFix", "description": "Fix the login bug on the mobile app.", "status": "open"},
    {"key": "t2", "name": "Search", "description": "Add full text search to the catalog.", "status": "open"},
    {"key": "t3", "name": "Billing", "description": "Move invoices to the new billing provider.", "status": "done"},
]


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[LadybugGraphStore]:
    store = LadybugGraphStore.open(tmp_path / "graph")
    store.upsert_nodes("Task", TASKS, key="key")
    store.upsert_nodes("Team", [{"key": "a", "name": "TeamA"}], key="key")
    try:
        yield store
    finally:
        store.close()


def test_node_text_joins_the_set_properties_in_order() -> None:
    props = {"name": "A", "description": "  does x ", "status": None, "tags": ["p", "q"], "empty": " "}
    assert node_text(props, ["description", "name", "status", "tags", "empty"]) == (
        "description: does x\nname: A\ntags: p, q"
    )


def test_index_then_reindex_embeds_only_what_changed(graph: LadybugGraphStore, tmp_path: Path) -> None:
    emb = RecordingEmbedder()
    with NodeIndex.open(graph, tmp_path / "index", emb) as index:
        first = index.index_nodes("Task", TEXT)
        assert (first.added, first.updated, first.removed, first.unchanged) == (3, 0, 0, 0)
        assert len(emb.embedded()) == 3

        emb.calls.clear()
        again = index.index_nodes("Task", TEXT)
        assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 3)
        assert emb.embedded() == []

        # one description changes, one node goes away, one node appears
        graph.query(
            "MATCH (t:Task) WHERE t.key = $k SET t.description = $d",
            {"k": "t2", "d": "Add semantic vector search to the catalog."},
            read_only=False,
        )
        graph.delete_nodes(["Task:t3"])
        graph.upsert_nodes(
            "Task", [{"key": "t4", "name": "Docs", "description": "Write the API guide.", "status": "open"}], key="key"
        )
        emb.calls.clear()
        changed = index.index_nodes("Task", TEXT)
        assert (changed.added, changed.updated, changed.removed, changed.unchanged) == (1, 1, 1, 1)
        assert sorted(emb.embedded()) == sorted(
            [
                "name: Search\ndescription: Add semantic vector search to the catalog.\nstatus: open",
                "name: Docs\ndescription: Write the API guide.\nstatus: open",
            ]
        )
        keys = {h.node_key for h in index.search("anything at all", k=10)}
        assert keys == {"Task:t1", "Task:t2", "Task:t4"}
        hit = index.search("semantic vector search", k=1)[0]
        assert hit.node_key == "Task:t2" and hit.properties["description"].startswith("Add semantic")
        assert index.vector_store.count() == 3


def test_a_node_without_text_is_not_indexed_and_its_vector_goes(graph: LadybugGraphStore, tmp_path: Path) -> None:
    with NodeIndex.open(graph, tmp_path / "index", RecordingEmbedder()) as index:
        index.index_nodes("Task", ["description"])
        graph.query("MATCH (t:Task) WHERE t.key = 't1' SET t.description = NULL", read_only=False)
        report = index.index_nodes("Task", ["description"])
        assert (report.removed, report.empty, report.unchanged) == (1, 1, 2)
        assert "Task:t1" not in {h.node_key for h in index.search("login bug", k=5)}


def test_changing_only_the_key_property_keeps_the_vector(graph: LadybugGraphStore, tmp_path: Path) -> None:
    emb = RecordingEmbedder()
    with NodeIndex.open(graph, tmp_path / "index", emb) as index:
        index.index_nodes("Task", ["description"], key="name")
        graph.query("MATCH (t:Task) WHERE t.key = 't1' SET t.name = 'LoginHotfix'", read_only=False)
        emb.calls.clear()
        report = index.index_nodes("Task", ["description"], key="name")
        assert report.embedded == 0 and report.unchanged == 3
        hit = index.search("description: Fix the login bug on the mobile app.", k=1)[0]  # the indexed text
        assert (hit.node_key, hit.name, hit.score) == ("Task:t1", "LoginHotfix", pytest.approx(1.0, abs=1e-5))


def test_changing_the_text_properties_reembeds(graph: LadybugGraphStore, tmp_path: Path) -> None:
    emb = RecordingEmbedder()
    with NodeIndex.open(graph, tmp_path / "index", emb) as index:
        index.index_nodes("Task", ["description"])
        emb.calls.clear()
        report = index.index_nodes("Task", ["name", "description"])
        assert report.updated == 3 and len(emb.embedded()) == 3
        assert index.manifest()["Task"]["text_properties"] == ["name", "description"]


def test_results_join_back_into_cypher(graph: LadybugGraphStore, tmp_path: Path) -> None:
    with NodeIndex.open(graph, tmp_path / "index", RecordingEmbedder()) as index:
        index.index_nodes("Task", TEXT)
        index.index_nodes("Team", ["name"])
        hits = index.search("login bug mobile app", k=2, label="Task")
        assert all(h.label == "Task" for h in hits) and hits[0].node_key == "Task:t1"
        clause = graph.match_keys_clause("t", "ids")
        rows = graph.query(
            f"MATCH (t:Task) WHERE {clause} RETURN t.name ORDER BY t.name", {"ids": [h.node_key for h in hits]}
        ).rows
        assert sorted(r[0] for r in rows) == sorted(h.properties["name"] for h in hits)
        assert [h.label for h in index.search("TeamA", k=1, label="Team")] == ["Team"]


def test_bad_input_names_it_and_keeps_the_index(graph: LadybugGraphStore, tmp_path: Path) -> None:
    with NodeIndex.open(graph, tmp_path / "index", RecordingEmbedder()) as index:
        index.index_nodes("Task", TEXT)
        with pytest.raises(InvalidInputError, match="Nope"):
            index.index_nodes("Nope", TEXT)
        with pytest.raises(InvalidInputError, match="colour"):
            index.index_nodes("Task", ["name", "colour"])
        with pytest.raises(InvalidInputError, match="text_properties"):
            index.index_nodes("Task", "name")
        with pytest.raises(InvalidInputError, match="text_properties"):
            index.index_nodes("Task", [])
        with pytest.raises(InvalidInputError, match="not indexed"):
            index.search("x", label="Team")
        with pytest.raises(InvalidInputError, match="empty"):
            index.search("  ")
        assert index.vector_store.count() == 3
        assert list(index.manifest()) == ["Task"]


def test_the_index_persists_and_refuses_another_embedder(graph: LadybugGraphStore, tmp_path: Path) -> None:
    with NodeIndex.open(graph, tmp_path / "index", RecordingEmbedder()) as index:
        index.index_nodes("Task", TEXT)
    with NodeIndex.open(graph, tmp_path / "index", RecordingEmbedder(), read_only=True) as index:
        assert index.search("billing invoices", k=1)[0].node_key == "Task:t3"
        with pytest.raises(ReadOnlyError, match="read-only"):
            index.index_nodes("Task", TEXT)
    with pytest.raises(DimensionMismatchError):
        NodeIndex.open(graph, tmp_path / "index", RecordingEmbedder(dim=32))

    other = RecordingEmbedder()
    other.model_name = "another-model"

    with (
        NodeIndex.open(graph, tmp_path / "index", other, read_only=True) as index,
        pytest.raises(InvalidInputError, match="index the nodes again"),
    ):
        index.search("billing")
    with pytest.raises(InvalidInputError, match="index-nodes"):
        NodeIndex.open(graph, tmp_path / "never-made", RecordingEmbedder(), read_only=True)


def test_remove_label(graph: LadybugGraphStore, tmp_path: Path) -> None:
    with NodeIndex.open(graph, tmp_path / "index", RecordingEmbedder()) as index:
        index.index_nodes("Task", TEXT)
        index.index_nodes("Team", ["name"])
        assert index.remove_label("Task") == 3
        assert list(index.manifest()) == ["Team"] and index.vector_store.count() == 1


# ---------------------------------------------------------------------- the DevOps graph, real embedder


def test_devops_vector_question_finds_its_gold_task(tmp_path: Path) -> None:
    q = questions()["devops-01"]
    store = import_devops(tmp_path / "graph")
    try:
        with NodeIndex.open(store, tmp_path / "index", embedder_from_spec("onnx-int8")) as index:
            report = index.index_nodes("Task", TEXT)
            assert report.added == 10  # both tasks named Optimize are there: keys are not names
            for question in (q["question"], "How will the recommendation service be updated?"):
                hits = index.search(question, k=4, label="Task")
                print(question, [(h.name, round(h.score, 3)) for h in hits])
                assert hits[0].name == q["gold_task"]
            gold_key = hits[0].node_key
            clause = store.match_keys_clause("t", "ids")
            row = store.query(f"MATCH (t:Task) WHERE {clause} RETURN t.name, t.status", {"ids": [gold_key]}).rows
            assert row == [[q["gold_task"], "in progress"]]
    finally:
        store.close()
