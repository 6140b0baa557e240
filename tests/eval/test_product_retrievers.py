"""The product in the eval runner: ``kvgraph`` (KnowledgeBase search with any settings) and ``graph``
(kb.graph.build + kb.graph.retriever), retriever specs, page datasets ingested as files, the SVG chart.

Plumbing tests use the hashing embedder (instant, lexical); the Llama 2 dev-set checks read the
shared paper text and skip without it.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from kvgraph.cli import main
from kvgraph.errors import InvalidInputError
from kvgraph.eval.chart import grouped_bar_svg
from kvgraph.eval.datasets import EvalDataset, Passage, Query, page_id, read_page_questions
from kvgraph.eval.runner import resolve_retrievers, run_retrieval
from kvgraph.eval.specs import RetrieverSpec, parse_assignments, parse_retrievers
from kvgraph.kb import KnowledgeBase
from support import REPO_ROOT, require_dataset

DEV_SET = REPO_ROOT / "bench" / "data" / "llama2_dev_questions.json"


@pytest.fixture
def hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVGRAPH_EMBEDDER", "hashing")


# ---------------------------------------------------------------------- specs


def test_specs_parse_names_options_and_list_values() -> None:
    specs = parse_retrievers("bm25, kvgraph:mode=hybrid,references=both,graph:damping=0.5,dense")
    assert specs == [
        RetrieverSpec("bm25"),
        RetrieverSpec("kvgraph", (("mode", "hybrid"), ("references", "both"))),
        RetrieverSpec("graph", (("damping", "0.5"),)),
        RetrieverSpec("dense"),
    ]
    assert specs[1].label == "kvgraph:mode=hybrid,references=both"
    assert specs[1].merged({"mode": "dense", "chunk_size": "128"}).label == (
        "kvgraph:chunk_size=128,mode=hybrid,references=both"
    )  # --set first, the spec's own option wins
    assert parse_assignments(["mode=hybrid", "child_sizes=128+256"]) == {"mode": "hybrid", "child_sizes": "128+256"}
    for bad, message in [
        ("mode=hybrid", "before any retriever"),
        ("kvgraph:mode", "key=value"),
        ("kvgraph:mode=a,mode=b", "more than once"),
        ("9lives", "not a retriever name"),
        ("", "no retriever"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            parse_retrievers(bad)
    with pytest.raises(InvalidInputError, match="--set 'mode'"):
        parse_assignments(["mode"])


def test_specs_are_checked_before_any_work() -> None:
    labels = [label for label, _ in resolve_retrievers(["kvgraph,graph:seed_mode=dense,hops=2"], {"mode": "hybrid"})]
    assert labels == ["kvgraph:mode=hybrid", "graph:seed_mode=dense,hops=2"]  # --set mode does not reach graph
    assert [label for label, _ in resolve_retrievers(["base:mode=hybrid", "dense:chunk_size=128"])] == [
        "base:mode=hybrid",
        "dense:chunk_size=128",
    ]
    for specs, message in [
        (["kvgraph:chunk_size=-3"], "chunk_size must be positive"),
        (["kvgraph:references=all"], "references must be"),
        (["kvgraph:damping=0.5"], "graph-walk option"),
        (["graph:damping=high"], "damping='high' should be float"),
        (["graph:hops=none,seeds=2.5"], "seeds='2.5' should be int"),
        (["graph:mode=dense"], "graph always walks"),
        (["graph:colour=red"], "unknown option 'colour'"),
        (["bm25:mode=dense"], "shape the chunks"),
        (["base:chunk_size=64"], "takes mode only"),
        (["chunk_refs_hybrid:mode=dense"], "takes no options"),
        (["colbert", "splade"], r"unknown retriever\(s\) \['colbert', 'splade'\]"),
        (["bm25,bm25"], "more than once"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            resolve_retrievers(specs)


# ---------------------------------------------------------------------- the product in the runner

TOPICS = {
    "p1": "The Danube flows through ten countries and empties into the Black Sea near the delta town of Sulina.",
    "p2": "Basalt forms when lava rich in iron and magnesium cools quickly at the surface of a volcano.",
    "p3": "The honeybee waggle dance tells nest mates the direction and distance of flowers in the meadow.",
    "p4": "Champollion announced his decipherment of Egyptian hieroglyphs in Paris in 1822.",
    "p5": "Sulina is a port town of Romania where the Danube delta lighthouse stands.",
}


def small() -> EvalDataset:
    queries = [
        Query("q1", "Which sea does the Danube empty into?", ["p1"]),
        Query("q2", "How do honeybees tell each other where flowers are?", ["p3"]),
        Query("q3", "When were Egyptian hieroglyphs deciphered?", ["p4"]),
        Query("q4", "Which country is the Danube delta town Sulina in?", ["p1", "p5"]),
    ]
    return EvalDataset("small", [Passage(k, v) for k, v in TOPICS.items()], queries)


def test_kvgraph_and_graph_retrievers_run_through_the_knowledge_base(tmp_path: Path, hashing: None) -> None:
    ds = small()
    work = tmp_path / "work"
    specs = ["kvgraph", "kvgraph:mode=sparse", "kvgraph:references=both,mode=hybrid", "graph", "bm25"]
    run = run_retrieval(ds, specs, ks=(1, 3), work_dir=work)
    assert list(run.reports) == specs
    for label in specs:
        for row in run.reports[label].rows:
            assert row.ranked and set(row.ranked) <= set(TOPICS) and len(set(row.ranked)) == len(row.ranked)
    # sparse search through the knowledge base ranks like the store's BM25 over the same chunks
    assert [r.ranked for r in run.reports["kvgraph:mode=sparse"].rows] == [r.ranked for r in run.reports["bm25"].rows]
    assert run.reports["kvgraph:mode=sparse"].means["hit_rate@1"] == 1.0
    # the graph was built through kb.graph.build and saved in the knowledge base; references=both got its own KB
    assert (work / "doc-graph" / "graph.npz").exists() and run.index_built["graph"]
    variant = work / "variants" / "references-both"
    with KnowledgeBase.open(variant, read_only=True) as kb:
        assert kb.stored_references() == "both"
        roles = {n.metadata.get("role") for n in kb.store.get(kb.store.ids()) if n is not None}
        assert {"parent", "child"} <= roles
    # a second run ingests nothing and builds nothing, and ranks the same
    again = run_retrieval(ds, specs, ks=(1, 3), work_dir=work)
    assert not any(again.index_built.values())
    for label in specs:
        assert [r.ranked for r in again.reports[label].rows] == [r.ranked for r in run.reports[label].rows]


def test_graph_walk_options_reach_the_retriever(tmp_path: Path, hashing: None) -> None:
    ds = small()
    run = run_retrieval(
        ds, ["graph", "graph:alpha=1.0,title_seeds=false", "graph:hops=0,seeds=1"], ks=(1, 5), work_dir=tmp_path / "w"
    )
    # alpha 1 ranks by the seed retriever's score alone: the walk only bounds the candidates
    with KnowledgeBase.open(tmp_path / "w", read_only=True) as kb:
        walk = kb.graph.retriever(alpha=1.0, title_seeds=False)
        expected = [[n.node.ref_doc_id for n in walk.retrieve(q.text, 15)] for q in ds.queries]
    got = [r.ranked for r in run.reports["graph:alpha=1.0,title_seeds=false"].rows]
    assert got == [list(dict.fromkeys(e))[:5] for e in expected]
    # no hops and one seed: only the best seed chunk's passage can come back
    assert all(len(r.ranked) == 1 for r in run.reports["graph:hops=0,seeds=1"].rows)


# ---------------------------------------------------------------------- pages ingested as files


def write_pages(root: Path) -> Path:
    (root / "paper").mkdir(parents=True)
    pages = [
        "# Intro\n\nThe walrus colony lives on the ice shelf near the northern bay.",
        "# Methods\n\nWe counted penguins with drones over the southern cliffs.\n\n## Details\n\nThermal cameras.",
        "",
        "# Results\n\nSeal populations doubled after the fishing ban in the harbour.",
    ]
    (root / "paper" / "text.txt").write_text("\n---\n".join(pages))
    questions = {
        "name": "tiny-pages",
        "source": "paper/text.txt",
        "questions": [
            {"id": "a", "question": "Where does the walrus colony live?", "gold_pages": [1], "kind": "factual"},
            {"id": "b", "question": "How were the penguins counted?", "gold_pages": [2], "kind": "factual",
             "paraphrase": True},
            {"id": "c", "question": "How much did seal numbers grow after the ban?", "gold_pages": [4],
             "kind": "numeric"},
        ],
    }  # fmt: skip
    path = root / "questions.json"
    path.write_text(json.dumps(questions))
    return path


def test_page_questions_read_pages_and_reject_bad_gold(tmp_path: Path) -> None:
    path = write_pages(tmp_path)
    ds = read_page_questions(path, tmp_path)
    assert [p.id for p in ds.passages] == ["page-001", "page-002", "page-004"]  # the empty page 3 is no passage
    assert ds.gold() == {"a": ["page-001"], "b": ["page-002"], "c": ["page-004"]}
    assert ds.queries[1].tags == ["factual", "paraphrase"] and ds.ingest == "files"
    data = json.loads(path.read_text())
    data["questions"][0]["gold_pages"] = [3]
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match=r"questions\[0\]\.gold_pages\[0\].*no text on page 3"):
        read_page_questions(path, tmp_path)
    data["questions"][0]["gold_pages"] = [1]
    data["questions"][0]["kind"] = "trivia"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match="kind should be one of"):
        read_page_questions(path, tmp_path)
    with pytest.raises(InvalidInputError, match="page-separated text not found"):
        read_page_questions(path, tmp_path / "elsewhere")


def test_cli_ingests_pages_as_markdown_files_and_counts_chunks_by_page(tmp_path: Path, hashing: None) -> None:
    path = write_pages(tmp_path / "ds")
    out, work = tmp_path / "out", tmp_path / "work"
    result = CliRunner().invoke(
        main,
        ["eval", "retrieval", "--dataset", str(path), "--format", "pages", "--datasets", str(tmp_path / "ds"),
         "--retrievers", "bm25,kvgraph:references=both", "--set", "chunk_overlap=8", "-k", "1,2",
         "--metrics", "hit_rate,mrr", "--work-dir", str(work), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 queries over 3 passages" in result.output and "the 1 paraphrase questions" in result.output
    assert sorted(p.name for p in (work / "files").iterdir()) == ["page-001.md", "page-002.md", "page-004.md"]
    with KnowledgeBase.open(work, read_only=True) as kb:  # ingested like a user's folder: Markdown sections
        nodes = [n for n in kb.store.get(kb.store.ids()) if n is not None]
        assert {n.metadata["file_name"] for n in nodes} == {"page-001.md", "page-002.md", "page-004.md"}
        # the short "Details" section is merged into "Methods" (a section of one sentence makes a poor chunk)
        assert any(n.metadata.get("heading_path") == "Methods" and "Details" in n.text for n in nodes)
        assert {n.metadata["page"] for n in nodes} == {1, 2, 4}  # page-004.md is page 4
    reports = json.loads((out / "retrieval.json").read_text())["reports"]
    assert list(reports) == ["bm25", "kvgraph:chunk_overlap=8,references=both"]
    for rep in reports.values():
        assert all(set(row["ranked"]) <= {"page-001", "page-002", "page-004"} for row in rep["rows"])
        assert rep["tag_means"]["paraphrase"]["hit_rate@1"] in (0.0, 1.0)
    assert reports["bm25"]["means"]["hit_rate@1"] == 1.0
    ET.parse(out / "retrieval.svg")  # a well-formed chart
    bad = CliRunner().invoke(
        main, ["eval", "retrieval", "--dataset", str(path), "--format", "pages", "--retrievers", "graph:seeds=lots"]
    )
    assert bad.exit_code == 2 and "seeds='lots' should be int" in bad.output


# ---------------------------------------------------------------------- chart


def test_svg_chart_draws_one_bar_per_series_and_group_to_scale(tmp_path: Path) -> None:
    path = grouped_bar_svg(
        ["hit@1", "mrr@10"], {"bm25 <plain>": [0.5, 1.0], "dense": [0.25, float("nan")]}, tmp_path / "c.svg", "T & U"
    )
    root = ET.parse(path).getroot()
    ns = {"s": "http://www.w3.org/2000/svg"}
    bars = root.findall(".//s:rect[@class='bar']", ns)
    assert len(bars) == 3  # the NaN draws nothing
    heights = sorted(float(b.get("height", "0")) for b in bars)
    assert heights[0] * 2 == pytest.approx(heights[1]) and heights[1] * 2 == pytest.approx(heights[2])
    texts = "".join(root.itertext())
    assert "T & U" in texts and "bm25 <plain>" in texts and "mrr@10" in texts
    with pytest.raises(InvalidInputError, match="2 groups"):
        grouped_bar_svg(["a", "b"], {"x": [1.0]}, tmp_path / "bad.svg")
    big = grouped_bar_svg(["qps"], {"x": [230.0]}, tmp_path / "big.svg")
    assert "250" in big.read_text()  # the axis rounds up to a readable top


# ---------------------------------------------------------------------- the Llama 2 dev set


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_llama2_dev_set_is_well_formed_and_its_evidence_is_on_a_gold_page() -> None:
    root = require_dataset("llama2", "llama2_paper_pdftext.txt").parents[1]
    ds = read_page_questions(DEV_SET, root)
    raw = {q["id"]: q for q in json.loads(DEV_SET.read_text())["questions"]}
    assert len(ds.queries) >= 60 and len(ds.passages) == 77
    seed = raw["seed-safety-concepts"]
    assert seed["question"] == "Can you tell me about the key concepts for safety finetuning"
    pages = {p.id: " ".join(p.text.split()) for p in ds.passages}
    assert "4.2 Safety Fine-Tuning" in pages[page_id(seed["gold_pages"][0])]
    tags = ds.meta["tags"]
    assert tags["paraphrase"] * 3 >= len(ds.queries)  # at least a third paraphrased
    assert min(tags["factual"], tags["conceptual"], tags["numeric"]) >= 10
    for q in ds.queries:
        ev = raw[q.id]["evidence"]
        assert ev["page"] in raw[q.id]["gold_pages"], q.id
        assert " ".join(ev["snippet"].split()) in pages[page_id(ev["page"])], q.id

    # paraphrased questions share fewer words with their evidence than the others do
    def overlap(qid: str) -> float:
        q = _words(raw[qid]["question"])
        return len(q & _words(raw[qid]["evidence"]["snippet"])) / len(q)

    para = [overlap(q.id) for q in ds.queries if "paraphrase" in q.tags]
    plain = [overlap(q.id) for q in ds.queries if "paraphrase" not in q.tags]
    assert sum(para) / len(para) < sum(plain) / len(plain)
