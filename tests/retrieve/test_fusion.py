"""Hybrid search that adapts to the question: confidence fusion, feedback, and their settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvgraph.config import load_settings
from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase
from kvgraph.retrieve.base import StoreRetriever
from kvgraph.retrieve.fusion import (
    FusionRetriever,
    Hits,
    Ranked,
    confidence_fusion,
    minmax_fusion,
    query_coverage,
    rrf_fusion,
)

DENSE = Ranked(["a", "b", "c"], [0.9, 0.8, 0.1])
SPARSE = Ranked(["c", "b"], [12.0, 1.0])

DOCS = {
    "bread.md": "# Bread\n\nSourdough bread rises because wild yeast in the starter ferments the flour. "
    "Bakers feed the starter daily with equal weights of flour and water.",
    "tea.md": "# Tea\n\nGreen tea is steamed or pan-fired soon after picking so that its leaves do not oxidise. "
    "Black tea is left to oxidise fully before it is dried.",
    "config.md": "# Settings\n\nThe option max_seq_len sets how many tokens the encoder reads. "
    "Set KVGRAPH_EMBED_THREADS to limit the threads used for embedding.",
    "bikes.md": "# Bicycles\n\nA derailleur moves the chain between sprockets so the rider can change gear. "
    "Disc brakes stop the wheel by squeezing a rotor with pads.",
}


def test_coverage_zero_leaves_the_dense_order() -> None:
    assert [i for i, _ in confidence_fusion(DENSE, SPARSE, 0.0, 0.4)] == ["a", "b", "c"]


def test_full_coverage_lets_bm25_decide() -> None:
    assert next(i for i, _ in confidence_fusion(DENSE, SPARSE, 1.0, 0.4)) == "c"
    assert next(i for i, _ in minmax_fusion(DENSE, SPARSE, 0.4)) == "c"


def test_weighted_rrf() -> None:
    assert [i for i, _ in rrf_fusion([DENSE, SPARSE], [1.0, 0.0])] == ["a", "b", "c"]
    assert [i for i, _ in rrf_fusion([DENSE, SPARSE], [0.0, 1.0])][:2] == ["c", "b"]


def test_query_coverage_counts_the_questions_stemmed_terms() -> None:
    assert query_coverage("How are starters feeding?", "Bakers feed the starter daily.") == pytest.approx(1.0)
    assert query_coverage("how do raters agree", "inter-annotator reliability") == 0.0
    assert query_coverage("the of and", "anything") == 0.0


@pytest.fixture(scope="module")
def kb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fusion")
    folder = root / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    with KnowledgeBase.open(root / "kb") as kb:
        kb.ingest(folder)
    return root / "kb"


def test_the_default_search_is_confidence_fusion(kb_path: Path) -> None:
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        assert kb.settings.mode == "hybrid" and kb.settings.fusion == "confidence"
        reranking: Any = kb.retriever()  # the first stage, then the default reranker (tokens)
        retriever = reranking.base
        assert isinstance(retriever, FusionRetriever) and retriever.alpha == kb.settings.fusion_alpha
        assert isinstance(kb.retriever(alpha=0.5).base, StoreRetriever)  # type: ignore[attr-defined]
        hit = kb.search("what does max_seq_len set", k=1)[0]
        assert hit.node.metadata["file_name"] == "config.md"
        hit = kb.search("why does sourdough rise", k=1)[0]
        assert hit.node.metadata["file_name"] == "bread.md"


def test_rocchio_moves_the_query_towards_the_first_hits(kb_path: Path, embedder: OnnxEmbedder) -> None:
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        fusion = FusionRetriever(kb.store, embedder, feedback="rocchio", feedback_docs=1)
        query = "changing gear on a bike"
        qv = fusion.vector(query)
        nodes = Hits()
        first = fusion._fuse(query, fusion._dense(qv, nodes, 10), fusion._sparse(query, nodes, 10), nodes)
        top = kb.store.get([first[0][0]])[0]
        assert top is not None and top.metadata["file_name"] == "bikes.md"
        moved = fusion._rocchio(qv, first)
        tv = top.embedding_array()
        assert tv is not None and not np.allclose(moved, qv)
        assert float(moved @ tv) > float(qv @ tv)  # closer to the hit it was fed back from
        assert fusion.retrieve(query, 2)[0].node.metadata["file_name"] == "bikes.md"


def test_rm3_expands_the_bm25_query_with_terms_of_the_first_hits(kb_path: Path, embedder: OnnxEmbedder) -> None:
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        fusion = FusionRetriever(kb.store, embedder, feedback="rm3", rm3_terms=5)
        terms = fusion.expansion_terms("green tea", [DOCS["tea.md"]])
        assert terms and "tea" not in terms and "green" not in terms
        assert set(terms) & {"oxidis", "leav", "steam", "black"}
        assert fusion.retrieve("green tea leaves", 1)[0].node.metadata["file_name"] == "tea.md"


@pytest.mark.parametrize("feedback", ["none", "rocchio", "rm3"])
def test_the_first_results_do_not_depend_on_how_many_are_asked_for(
    kb_path: Path, embedder: OnnxEmbedder, feedback: str
) -> None:
    # RecursiveRetriever asks again for more when its hits merge into fewer parents: the top of
    # the list (order and scores) must stay what a smaller request gave.
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        fusion = FusionRetriever(kb.store, embedder, pool=2, feedback=feedback, feedback_docs=1)
        query = "how does the encoder read tokens and how do bakers feed the starter"
        few = fusion.retrieve(query, 2)
        more = fusion.retrieve(query, 4)
    assert len(few) == 2 and len(more) == 4
    assert [h.node.id for h in more[:2]] == [h.node.id for h in few]
    assert [h.score for h in more[:2]] == pytest.approx([h.score for h in few])
    scores = [h.score for h in more]
    assert scores == sorted(scores, reverse=True)


def test_settings_are_typed_and_checked(tmp_path: Path) -> None:
    s = load_settings(None, {"fusion_alpha": "0.7", "fusion": "rrf"}, env={})
    assert s.fusion_alpha == 0.7 and s.fusion == "rrf"
    assert load_settings(None, env={"KVGRAPH_FUSION_ALPHA": "0.25"}).fusion_alpha == 0.25
    for bad in ({"fusion": "borda"}, {"fusion_alpha": "1.5"}, {"query_feedback": "prf"}, {"query_expansion": "x"}):
        with pytest.raises(InvalidInputError):
            load_settings(None, bad, env={})
    with pytest.raises(InvalidInputError, match="fusion_alpha"):
        load_settings(None, {"fusion_alpha": "high"}, env={})
    with pytest.raises(InvalidInputError, match="fusion must be"):
        FusionRetriever(None, None, method="borda")  # type: ignore[arg-type]


def test_bm25_runs_beside_the_embedding_and_fuses_the_same(
    kb_path: Path, embedder: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        fusion = FusionRetriever(kb.store, embedder)
        query = "how do bakers feed the starter"
        vector = fusion.vector(query)
        given = fusion.search(query, vector, 4)  # the vector given: one side after the other
        sides: list[str] = []
        sparse = FusionRetriever._sparse

        def recorded(self: FusionRetriever, text: str, nodes: Hits, k: int) -> object:
            sides.append(threading.current_thread().name)
            return sparse(self, text, nodes, k)

        monkeypatch.setattr(FusionRetriever, "_sparse", recorded)
        embedded_on: list[str] = []

        def embed() -> np.ndarray:
            embedded_on.append(threading.current_thread().name)
            return vector

        beside = fusion.search(query, embed, 4)
        assert sides and sides[0].startswith("kvgraph-bm25") and embedded_on == [threading.current_thread().name]
        assert [(h.node.id, h.score) for h in beside] == [(h.node.id, h.score) for h in given]
        assert [h.node.id for h in fusion.retrieve(query, 4)] == [h.node.id for h in given]

        # Every side thread busy (a loaded server): the query runs both sides itself, not in a queue.
        from kvgraph.retrieve import fusion as fusion_module

        busy = threading.BoundedSemaphore(1)
        busy.acquire()
        pool = fusion_module._BESIDE[0] if fusion_module._BESIDE else None
        monkeypatch.setattr(fusion_module, "_BESIDE", (pool, busy))
        sides.clear()
        inline = fusion.search(query, embed, 4)
        assert sides == [threading.current_thread().name]
        assert [(h.node.id, h.score) for h in inline] == [(h.node.id, h.score) for h in given]

        def broken() -> np.ndarray:
            raise RuntimeError("the embedder failed")

        with pytest.raises(RuntimeError, match="embedder failed"):  # raised, after the BM25 side ends
            fusion.search(query, broken, 4)
