"""Node-reference retrievers in the eval runner, the LLM-free page question set, and their CLI commands.

Plumbing tests use the hashing embedder (``KVGRAPH_EMBEDDER=hashing``: instant, lexical); the
tests where meaning matters use the real all-MiniLM-L6-v2 on pages of the Llama 2 paper and skip
when the shared datasets are absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kvgraph.cli import main
from kvgraph.embed.tokens import WhitespaceTokenCounter
from kvgraph.errors import InvalidInputError
from kvgraph.eval import retrievers
from kvgraph.eval.datasets import EvalDataset, Passage, Query, read_beir, read_llamaindex_rag
from kvgraph.eval.page_questions import (
    N_KEYWORDS,
    content_words,
    llama2_question_set,
    page_question_set,
    parent_passages,
    save_beir,
    save_llamaindex_rag,
)
from kvgraph.eval.runner import RETRIEVERS, EvalContext, run_retrieval
from kvgraph.schema import Document
from kvgraph.text import split_sentences
from support import datasets_root

SHARED = datasets_root()
needs_llama2 = pytest.mark.skipif(
    not (SHARED / "llama2" / "llama2_paper_pdftext.txt").is_file(), reason="shared Llama 2 text not present"
)

TOPICS = ["glacier", "volcano", "harbour", "orchard", "monastery", "railway", "observatory", "vineyard", "lighthouse"]
PLACES = ["Norway", "Chile", "Kenya", "Japan", "Peru", "Iceland", "Canada", "Greece", "Vietnam", "Morocco"]
VERBS = ["surveyed", "restored", "mapped", "photographed", "documented", "inspected", "measured", "catalogued"]


def long_text(topic: str, n: int = 240) -> str:
    """A document of ``n`` distinct sentences about ``topic`` (several 1024-token parents by whitespace count)."""
    sentences = []
    for i in range(n):
        place, verb = PLACES[i % len(PLACES)], VERBS[(i // len(PLACES)) % len(VERBS)]
        sentences.append(f"In season {i} the team {verb} the {topic} near {place} and logged item {topic}{i}.")
    return " ".join(sentences)


@pytest.fixture
def hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVGRAPH_EMBEDDER", "hashing")


def small_dataset() -> EvalDataset:
    passages = [Passage(f"doc-{t}", long_text(t)) for t in TOPICS[:3]]
    # Each query names a sentence late in a passage: only the passage's later parents hold it.
    queries = [
        Query(
            f"q-{t}",
            f"In season 230 the team {VERBS[7]} the {t} near {PLACES[0]} and logged item {t}230.",
            [f"doc-{t}"],
        )
        for t in TOPICS[:3]
    ]
    return EvalDataset("small", passages, queries)


# ---------------------------------------------------------------------- runner


REF_RETRIEVERS = ["base", "base_bm25", "chunk_refs", "chunk_refs_hybrid", "metadata_refs", "metadata_refs_hybrid"]


def test_reference_retrievers_map_parents_back_to_passages(tmp_path: Path, hashing: None) -> None:
    ds = small_dataset()
    run = run_retrieval(ds, REF_RETRIEVERS, ks=(1, 3), work_dir=tmp_path / "work")
    passage_ids = {p.id for p in ds.passages}
    for name in REF_RETRIEVERS:
        report = run.reports[name]
        for row in report.rows:
            assert row.ranked and set(row.ranked) <= passage_ids  # parents count as their passage
            assert len(row.ranked) == len(set(row.ranked))
        assert run.index_built[name] is (name in ("base", "chunk_refs", "metadata_refs"))
    # The query sentence is verbatim in a late parent of its passage: lexical retrieval finds that passage.
    assert run.reports["base_bm25"].means["hit_rate@1"] == 1.0
    assert run.reports["chunk_refs_hybrid"].means["hit_rate@1"] == 1.0
    # the indexes exist, with several parents per passage and children pointing to them
    from kvgraph.store import EmbeddedVectorStore

    with EmbeddedVectorStore.open(tmp_path / "work" / "refs" / "chunk_refs", read_only=True) as store:
        parents = store.get(store.ids(filters={"role": "parent"}))
        children = store.get(store.ids(filters={"role": "child"}))
    assert len(parents) > len(ds.passages)
    parent_ids = {p.id for p in parents if p is not None}
    assert all(c is not None and c.relationships["ref"] in parent_ids for c in children)


def test_reference_indexes_are_reused_and_rebuilt_when_passages_change(tmp_path: Path, hashing: None) -> None:
    ds = small_dataset()
    first = run_retrieval(ds, ["chunk_refs", "metadata_refs"], ks=(1, 2), work_dir=tmp_path / "work")
    again = run_retrieval(ds, ["chunk_refs", "metadata_refs"], ks=(1, 2), work_dir=tmp_path / "work")
    assert again.index_built == {"chunk_refs": False, "metadata_refs": False}
    for name in ("chunk_refs", "metadata_refs"):
        assert [r.ranked for r in again.reports[name].rows] == [r.ranked for r in first.reports[name].rows]
    ds.passages[0] = Passage(ds.passages[0].id, ds.passages[0].text + " A new closing sentence about rivers.")
    changed = run_retrieval(ds, ["chunk_refs"], ks=(1,), work_dir=tmp_path / "work")
    assert changed.index_built == {"chunk_refs": True}


def test_indexes_are_rebuilt_when_the_ingest_code_changes(
    tmp_path: Path, hashing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = small_dataset()
    names = ["chunk_refs", "kvgraph"]  # a reference index, and a knowledge base ingested as a user would
    run_retrieval(ds, names, ks=(1,), work_dir=tmp_path / "work")
    assert run_retrieval(ds, names, ks=(1,), work_dir=tmp_path / "work").index_built == dict.fromkeys(names, False)
    # what a change to a loader, the splitter or the headers does to the hash of the ingest code
    monkeypatch.setattr(retrievers, "ingest_code_hash", lambda: "another version of the loaders")
    assert run_retrieval(ds, names, ks=(1,), work_dir=tmp_path / "work").index_built == dict.fromkeys(names, True)


def test_registry_takes_a_new_retriever_in_one_line(
    tmp_path: Path, hashing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[EvalContext] = []

    def reverse_order(ctx: EvalContext):
        seen.append(ctx)
        ids = [p.id for p in ctx.dataset.passages][::-1][: ctx.k_max]
        return lambda texts: [ids for _ in texts]

    monkeypatch.setitem(RETRIEVERS, "reverse", reverse_order)
    ds = small_dataset()
    run = run_retrieval(ds, ["reverse", "bm25"], ks=(1, 2), work_dir=tmp_path / "work")
    assert seen and seen[0].k_max == 2
    assert [r.ranked for r in run.reports["reverse"].rows] == [["doc-harbour", "doc-volcano"]] * 3
    assert run.reports["reverse"].means["hit_rate@1"] == pytest.approx(1 / 3)
    assert run.reports["bm25"].means["hit_rate@1"] == 1.0  # the passage KB retrievers work as before
    with pytest.raises(InvalidInputError, match=r"unknown retriever.*reverse"):
        run_retrieval(ds, ["nope"], work_dir=tmp_path / "work")


# ---------------------------------------------------------------------- question set


PAGE_ONE = (
    "Caption text carried over from the previous page ends here. "
    "# 3.1 Supervised Fine-Tuning\n\n"
    "We collected thousands of high-quality annotations from vendors for supervised fine-tuning of the model. "
    "|Model|Score|\n|---|---|\n|7B|54.2|\n"
    "Touvron, H., Lavril, T., Izacard, G., Martinet, X., and Lample, G. Llama: Open and efficient models. 2023. "
    "the tail of a sentence that started before a page break and continues with several more words here. "
    "Short sentence here. "
    "Annotators compared two sampled responses and marked which one followed the safety guidelines more closely. "
    "We collected thousands of high-quality annotations from vendors for supervised fine-tuning of the model."
)
PAGE_TWO = (
    "Page two starts with a sentence that may continue the previous page entirely. "
    "The reward model takes a response and its prompt and outputs a scalar score indicating the quality. "
    "Rejection sampling draws several outputs from the model and keeps the best one under the reward model."
)


def test_candidates_skip_debris_duplicates_fragments_and_page_starts() -> None:
    pages = [Document(id="p1", text=PAGE_ONE, metadata={"page": 1}), Document(id="p2", text=PAGE_TWO)]
    ds, sources = page_question_set(pages, WhitespaceTokenCounter(), per_parent=10)
    assert [s.text for s in sources] == [
        "Annotators compared two sampled responses and marked which one followed the safety guidelines more closely.",
        "The reward model takes a response and its prompt and outputs a scalar score indicating the quality.",
        "Rejection sampling draws several outputs from the model and keeps the best one under the reward model.",
    ]  # the repeated sentence, table, reference, fragment, short sentence and page-first sentences are out
    assert [q.text for q in ds.queries] == [s.text for s in sources]
    assert ds.queries[0].relevant == ["p1:0"] and ds.queries[1].relevant == ["p2:0"]
    with pytest.raises(InvalidInputError, match="kind"):
        page_question_set(pages, WhitespaceTokenCounter(), kind="paraphrase")


@pytest.fixture(scope="module")
def counter():
    from kvgraph.embed.factory import embedder_from_spec

    return embedder_from_spec("onnx-int8").token_counter()  # type: ignore[attr-defined]


@needs_llama2
def test_llama2_question_set_is_deterministic_and_gold_parents_hold_the_span(counter) -> None:
    from kvgraph.eval.sources import llama2_pages

    pages = llama2_pages(SHARED)
    ds, sources = llama2_question_set(counter, "sentence", per_parent=2, seed=0, root=SHARED)
    again, _ = llama2_question_set(counter, "sentence", per_parent=2, seed=0, root=SHARED)
    other, _ = llama2_question_set(counter, "sentence", per_parent=2, seed=1, root=SHARED)
    assert [(q.id, q.text, q.relevant) for q in ds.queries] == [(q.id, q.text, q.relevant) for q in again.queries]
    assert [q.text for q in other.queries] != [q.text for q in ds.queries]
    assert len(ds.queries) >= 150 and ds.meta["passages"] == len(ds.passages)
    ranges = {p.id: (page, a, b) for p, page, a, b in parent_passages(pages, counter)}
    page_by_id = {page.id: page for page in pages}
    for q, src in zip(ds.queries, sources):
        page = page_by_id[src.page_id]
        assert " ".join(page.text[src.start : src.end].split()) == src.text == q.text
        first_start = split_sentences(page.text)[0][0]
        assert src.start != first_start and "|" not in src.text and src.text[:1].isupper()
        for pid in q.relevant:  # every gold parent holds the whole span, and no other parent does
            gold_page, a, b = ranges[pid]
            assert gold_page.id == src.page_id and a <= src.start and src.end <= b
        assert {
            pid for pid, (pg, a, b) in ranges.items() if pg.id == src.page_id and a <= src.start and src.end <= b
        } == set(q.relevant)
    keywords, _ = llama2_question_set(counter, "keywords", root=SHARED)
    masked, _ = llama2_question_set(counter, "masked", root=SHARED)
    for kq, mq, src in zip(keywords.queries, masked.queries, sources):
        words = content_words(src.text)
        assert kq.relevant == mq.relevant and 0 < len(kq.text.split()) <= N_KEYWORDS
        assert set(kq.text.split()) <= set(words)
        assert len(mq.text) < len(src.text)


@needs_llama2
def test_reference_retrievers_on_llama2_pages_with_the_real_model(tmp_path: Path, counter) -> None:
    from kvgraph.eval.sources import llama2_pages

    pages = [p for p in llama2_pages(SHARED) if p.metadata["page"] in range(5, 13)]
    ds, _ = page_question_set(pages, counter, "sentence", per_parent=2)
    run = run_retrieval(ds, ["base", "chunk_refs", "metadata_refs"], ks=(1, 3), work_dir=tmp_path / "work")
    # A verbatim sentence embeds closest to a small node containing it; the base parent is embedded
    # from its first ~254 tokens only, so sentences further in are often missed.
    assert run.reports["chunk_refs"].means["hit_rate@1"] >= 0.8
    assert run.reports["chunk_refs"].means["hit_rate@3"] >= run.reports["base"].means["hit_rate@3"]
    assert run.reports["metadata_refs"].means["mrr@3"] > 0.5


# ---------------------------------------------------------------------- CLI


def test_cli_runs_reference_retrievers_on_a_beir_folder(tmp_path: Path, hashing: None) -> None:
    folder = save_beir(small_dataset(), tmp_path / "beir")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["eval", "retrieval", "--dataset", str(folder), "--format", "beir", "--retrievers",
         "base,chunk_refs,metadata_refs,bm25,hybrid", "-k", "2,5,10", "--metrics", "hit_rate,mrr",
         "--work-dir", str(tmp_path / "work"), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 queries over 3 passages" in result.output
    data = json.loads((out / "retrieval.json").read_text())["reports"]
    assert list(data) == ["base", "chunk_refs", "metadata_refs", "bm25", "hybrid"]
    assert data["chunk_refs"]["index_built"] is True and data["chunk_refs"]["index_seconds"] > 0
    assert data["bm25"]["means"]["hit_rate@2"] == 1.0
    bad = CliRunner().invoke(
        main, ["eval", "retrieval", "--dataset", str(folder), "--format", "beir", "--retrievers", "chunk_ref"]
    )
    assert bad.exit_code == 2 and "unknown retriever(s) ['chunk_ref']" in bad.output and "chunk_refs" in bad.output


@needs_llama2
def test_cli_writes_the_llama2_question_set_as_beir_and_labelled_rag(tmp_path: Path, counter) -> None:
    out = tmp_path / "l2"
    result = CliRunner().invoke(
        main, ["eval", "page-questions", "--kind", "keywords", "--datasets", str(SHARED), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    expected, _ = llama2_question_set(counter, "keywords", root=SHARED)
    beir = read_beir(out)
    assert [(q.id, q.text, q.relevant) for q in beir.queries] == [(q.id, q.text, q.relevant) for q in expected.queries]
    assert [p.id for p in beir.passages] == [p.id for p in expected.passages]  # distractor parents included
    rag = read_llamaindex_rag(out / "rag_dataset.json")
    assert [q.text for q in rag.queries] == [q.text for q in expected.queries]
    save_llamaindex_rag(expected, tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads((out / "rag_dataset.json").read_text())
