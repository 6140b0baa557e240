"""Markdown sections for retrieval: tiny ones merged with their neighbours, and the page each is on."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvgraph.ingest.loaders import load_file
from kvgraph.ingest.loaders.markdown import MIN_SECTION_CHARS, merge_small_sections
from kvgraph.ingest.loaders.pages import page_from_heading, page_from_name

PARAGRAPH = "Reward models score each answer so that the policy can learn which answers people prefer. " * 6


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_heading_with_one_sentence_is_merged_into_the_next_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "doc.md",
        f"# 4.2 Safety Fine-Tuning\n\nWe use three techniques.\n\n## 4.2.1 Categories\n\n{PARAGRAPH}\n",
    )
    assert len(load_file(path)) == 2  # the loader keeps every section
    docs = merge_small_sections(load_file(path))
    assert len(docs) == 1
    assert docs[0].text.startswith("# 4.2 Safety Fine-Tuning\n\nWe use three techniques.")
    assert "## 4.2.1 Categories" in docs[0].text and PARAGRAPH.strip() in docs[0].text
    assert docs[0].id.endswith("#section=1")
    assert docs[0].metadata["heading_path"] == "4.2 Safety Fine-Tuning"


def test_a_run_of_one_line_headings_becomes_one_document(tmp_path: Path) -> None:
    figure = "".join(f"# {label}\n\n" for label in ("0.8", "0.6", "Win rate", "Helpfulness", "Llama 2 70B"))
    path = write(tmp_path, "fig.md", f"# Results\n\n{PARAGRAPH}\n\n{figure}# Discussion\n\n{PARAGRAPH}\n")
    docs = merge_small_sections(load_file(path))
    assert len(docs) <= 3  # not 8: the figure's labels went with a neighbour
    assert all("# Helpfulness" not in d.text or len(d.text) >= MIN_SECTION_CHARS for d in docs)
    assert sum(d.text.count(PARAGRAPH.strip()) for d in docs) == 2  # nothing lost


def test_large_sections_stay_apart(tmp_path: Path) -> None:
    path = write(tmp_path, "doc.md", f"# A\n\n{PARAGRAPH}\n\n# B\n\n{PARAGRAPH}\n")
    assert [d.metadata["heading_path"] for d in merge_small_sections(load_file(path))] == ["A", "B"]


@pytest.mark.parametrize(
    ("name", "page"),
    [("page-023.md", 23), ("page_7.md", 7), ("report_p23.md", 23), ("paper.pg12.md", 12), ("p5.md", 5),
     ("Page 3.md", 3), ("chapter-3.md", None), ("step5.md", None), ("notes.md", None), ("page-000.md", None)],
)  # fmt: skip
def test_page_from_file_name(name: str, page: int | None) -> None:
    assert page_from_name(Path(name)) == page


def test_every_section_of_a_page_file_carries_its_page(tmp_path: Path) -> None:
    path = write(tmp_path, "page-023.md", f"# Table 11\n\n{PARAGRAPH}\n\n# 4.2 Safety Fine-Tuning\n\n{PARAGRAPH}\n")
    docs = load_file(path)
    assert len(docs) == 2 and {d.metadata["page"] for d in docs} == {23}


def test_front_matter_page_wins_over_the_name(tmp_path: Path) -> None:
    path = write(tmp_path, "page-1.md", f"---\ntitle: Paper\npage: 5\n---\n\n# Intro\n\n{PARAGRAPH}\n")
    (doc,) = load_file(path)
    assert doc.metadata["page"] == 5


def test_page_headings_split_a_file_into_pages_and_sections_never_merge_across_them(tmp_path: Path) -> None:
    path = write(tmp_path, "paper.md", f"# Page 1\n\n{PARAGRAPH}\n\n# Page 2\n\nShort.\n\n# Page 3\n\n{PARAGRAPH}\n")
    docs = merge_small_sections(load_file(path))
    assert [d.metadata.get("page") for d in docs] == [1, 2, 3]
    assert page_from_heading("p. 12") == 12 and page_from_heading("Pages of history") is None


def test_text_and_html_files_named_as_pages_carry_the_page(tmp_path: Path) -> None:
    (txt,) = load_file(write(tmp_path, "scan_p9.txt", PARAGRAPH))
    (html,) = load_file(write(tmp_path, "page-004.html", f"<html><body><p>{PARAGRAPH}</p></body></html>"))
    (other,) = load_file(write(tmp_path, "notes.txt", PARAGRAPH))
    assert txt.metadata["page"] == 9 and html.metadata["page"] == 4 and "page" not in other.metadata


def test_the_knowledge_base_splitter_merges_sections_of_one_file_only(tmp_path: Path, embedder: object) -> None:
    from kvgraph.ingest.splitter import SentenceSplitter

    counter = embedder.token_counter()  # type: ignore[attr-defined]
    a = write(tmp_path, "a.md", "# Intro\n\nOne line.\n")
    b = write(tmp_path, "b.md", f"# Body\n\n{PARAGRAPH}\n")
    docs = load_file(a) + load_file(b)
    nodes = SentenceSplitter(counter, 254, 32, min_section_chars=MIN_SECTION_CHARS).split_many(docs)
    assert {n.ref_doc_id for n in nodes} == {docs[0].id, docs[1].id}  # a tiny file is not glued to the next
    merged = SentenceSplitter(counter, 254, 32, min_section_chars=MIN_SECTION_CHARS).split_many(
        load_file(write(tmp_path, "c.md", f"# Intro\n\nOne line.\n\n# Body\n\n{PARAGRAPH}\n"))
    )
    assert merged[0].text.startswith("# Intro\n\nOne line.\n\n# Body")
