"""Word, PowerPoint, Excel, CSV, e-mail, EPUB and JSON files: real files written by the format
libraries or the standard library (format_files.py), loaded, refused when damaged, and ingested
into a knowledge base and searched."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import format_files as F
import pytest

from kvgraph.ingest.loaders import (
    SUPPORTED_EXTENSIONS,
    UnreadableFileError,
    load_file,
    load_file_batches,
    load_paths,
    supported_extensions,
    walk,
)
from kvgraph.ingest.loaders.archive import MIN_EXPANSION_LIMIT
from kvgraph.ingest.loaders.jsonrecords import choose_text_field, load_json
from kvgraph.kb import KnowledgeBase
from kvgraph.schema import validate_metadata

pytest.importorskip("docx")
pytest.importorskip("pptx")
pytest.importorskip("openpyxl")

WRITERS = {
    ".docx": F.write_docx,
    ".pptx": F.write_pptx,
    ".xlsx": F.write_xlsx,
    ".csv": F.write_csv,
    ".eml": F.write_eml,
    ".epub": F.write_epub,
    ".json": F.write_json,
    ".jsonl": F.write_jsonl,
}
# Extensions read by the same loader as one in WRITERS, and the text-based ones tests/ingest/test_loaders.py covers.
SAME_AS = {".xlsm": ".xlsx", ".tsv": ".csv", ".ndjson": ".jsonl"}
TEXT_BASED = {".txt", ".text", ".rst", ".log", ".md", ".markdown", ".html", ".htm", ".pdf"}


def reason_of(path: Path) -> str:
    with pytest.raises(UnreadableFileError) as info:
        load_file(path)
    assert str(path) in str(info.value)
    return info.value.reason


def test_every_supported_extension_is_covered_and_public() -> None:
    assert supported_extensions() == SUPPORTED_EXTENSIONS == KnowledgeBase.supported_extensions()
    assert set(WRITERS) | set(SAME_AS) | TEXT_BASED == SUPPORTED_EXTENSIONS


@pytest.mark.parametrize("ext", sorted(set(WRITERS) | set(SAME_AS)))
def test_each_format_loads_with_valid_metadata_and_deterministic_ids(tmp_path: Path, ext: str) -> None:
    source = WRITERS[SAME_AS.get(ext, ext)]
    path = tmp_path / f"sample{ext}"
    source(path)
    if ext == ".tsv":
        F.write_csv(path, delimiter="\t")
    docs = load_file(path)
    assert docs and all(d.text.strip() for d in docs)
    assert len({d.id for d in docs}) == len(docs)
    for doc in docs:
        assert doc.id.startswith(str(path.resolve()))
        assert doc.metadata["file_path"] == str(path.resolve()) and doc.metadata["file_name"] == path.name
        validate_metadata(doc.metadata, doc.id)
    assert [d.id for d in load_file(path)] == [d.id for d in docs]  # the same ids on every load


# --- Word ----------------------------------------------------------------------------------------


def test_docx_sections_headings_lists_and_tables(tmp_path: Path) -> None:
    docs = load_file(F.write_docx(tmp_path / "guide.docx"))
    assert [d.metadata["heading_path"] for d in docs] == ["", "Hives", "Hives > Winter care", "Harvest"]
    assert [d.id.rsplit("#", 1)[1] for d in docs] == ["section=0", "section=1", "section=2", "section=3"]
    assert all(d.metadata["title"] == "Beekeeping handbook" and d.metadata["file_type"] == "docx" for d in docs)
    winter = docs[2].text
    assert winter.startswith("Winter care\n\nLeave at least twenty kilograms")
    assert "- Check the entrance for dead bees\n- Keep the mouse guard on" in winter
    assert "March | first inspection" in winter and "May | swarm control" in winter


def test_docx_without_text_and_a_renamed_file_are_refused(tmp_path: Path) -> None:
    import docx

    empty = tmp_path / "empty.docx"
    docx.Document().save(empty)
    assert "no text" in reason_of(empty)
    fake = tmp_path / "fake.docx"
    fake.write_bytes(b"this is not a zip archive at all")
    assert "not a readable ZIP" in reason_of(fake)
    locked = tmp_path / "locked.docx"
    locked.write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 512)  # what Word writes for a password
    assert "password" in reason_of(locked)


def test_a_zip_without_word_parts_is_a_corrupt_file_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "parts.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    assert reason_of(path).startswith("corrupt Word file")


def test_zip_bombs_are_refused_before_unpacking(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (MIN_EXPANSION_LIMIT + (1 << 20)))
    assert path.stat().st_size < 1 << 20
    assert "ZIP bomb" in reason_of(path)


# --- PowerPoint ----------------------------------------------------------------------------------


def test_pptx_slides_with_titles_bullets_notes_and_tables(tmp_path: Path) -> None:
    docs = load_file(F.write_pptx(tmp_path / "deck.pptx"))
    assert [d.metadata["slide"] for d in docs] == [1, 2, 4]  # slide 3 has no text
    assert all(d.metadata["page"] == d.metadata["slide"] and d.metadata["total_slides"] == 4 for d in docs)
    assert [d.id.rsplit("#", 1)[1] for d in docs] == ["slide=1", "slide=2", "slide=4"]
    revenue = docs[1]
    assert revenue.metadata["heading_path"] == "Revenue" and revenue.metadata["title"] == "Quarterly review"
    assert revenue.text == (
        "Revenue\n\n- Revenue grew by twelve percent over the quarter\n- The northern region sold the most turbines"
        "\n\nNotes:\nMention the delayed shipment to Oslo."
    )
    assert docs[2].text == "Region | Turbines\nNorth | 42"


# --- Excel and CSV -------------------------------------------------------------------------------


def test_xlsx_rows_are_documents_with_typed_columns(tmp_path: Path) -> None:
    docs = load_file(F.write_xlsx(tmp_path / "stock.xlsx"))
    kettle, pan, ines = docs
    assert kettle.id.endswith("stock.xlsx#sheet=1&row=2") and pan.id.endswith("#sheet=1&row=4")  # row 3 is empty
    assert ines.id.endswith("#sheet=2&row=2") and ines.metadata["sheet"] == "Staff"
    assert kettle.metadata["heading_path"] == "Inventory"  # several sheets: search results name the sheet
    assert kettle.text == "Product: Copper kettle\nPrice: 34.5\nIn stock: true\nAdded: 2024-03-01\npage: 7"
    meta = kettle.metadata
    assert (meta["Price"], meta["In stock"], meta["Added"], meta["row"]) == (34.5, True, "2024-03-01", 2)
    assert meta["column.page"] == 7 and "page" not in meta  # kvgraph's own key is not overwritten
    assert pan.metadata["Price"] == 52 and pan.metadata["In stock"] is False and "Added" not in pan.metadata


def test_big_sheets_stream_in_batches(tmp_path: Path) -> None:
    path = F.write_xlsx(tmp_path / "big.xlsx", extra_rows=3000)
    batches = list(load_file_batches(path, part_chars=20_000))
    assert len(batches) > 5
    rows = [d.metadata["row"] for batch in batches for d in batch if d.metadata["sheet"] == "Inventory"]
    assert rows == [2, 4, *range(5, 3005)]
    assert all(sum(len(d.text) for d in batch[:-1]) < 20_000 for batch in batches)


@pytest.mark.parametrize(("encoding", "delimiter"), [("utf-8", ","), ("cp1252", ";"), ("utf-16", "\t"), ("utf-8", "|")])
def test_csv_encodings_delimiters_and_quotes(tmp_path: Path, encoding: str, delimiter: str) -> None:
    docs = load_file(F.write_csv(tmp_path / "cities.csv", encoding, delimiter))
    assert [d.metadata["row"] for d in docs] == [2, 3, 5]  # the empty row 4 is skipped, not renumbered
    assert [d.metadata["city"] for d in docs] == ["Lyon", "Zürich", "Porto"]
    assert docs[0].metadata["population"] == 522250 and docs[0].metadata["mayor"] == "Grégory Doucet"
    assert docs[2].metadata["mayor"] == 'Rui "the engineer" Moreira'
    assert docs[1].text == "city: Zürich\ncountry: Switzerland\npopulation: 421878\nmayor: Corine Mauch"


def test_csv_cells_keep_what_they_are(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text('zip,amount,flag,ratio,note,,note\n02134,-7,TRUE,1e3,"a\nb",,x\n', encoding="utf-8")
    [doc] = load_file(path)
    meta = doc.metadata
    assert (meta["zip"], meta["amount"], meta["flag"], meta["ratio"]) == ("02134", -7, True, 1000.0)
    assert meta["note"] == "a\nb" and meta["note_2"] == "x"  # a quoted line break; a repeated header
    assert doc.text.splitlines()[-1] == "note: x"


def test_malformed_csv_is_refused_before_any_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    rows = "".join(f"{n},ok\n" for n in range(5000))
    path.write_text("id,value\n" + rows + 'x,"' + "y" * 200_000 + '"\n', encoding="utf-8")
    with pytest.raises(UnreadableFileError) as info:
        load_file_batches(path, part_chars=1000)  # raised by the call: no batch was handed out
    assert "malformed CSV at line 5002" in info.value.reason and "longer than" in info.value.reason
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b,c\n", encoding="utf-8")
    assert "only a header row" in reason_of(header_only)


# --- e-mail --------------------------------------------------------------------------------------


def test_eml_headers_body_and_a_readable_attachment(tmp_path: Path) -> None:
    path = F.write_eml(tmp_path / "greenhouse.eml")
    message, quote = load_file(path)
    assert message.id == str(path.resolve())
    meta = message.metadata
    assert meta["subject"] == meta["title"] == "Budget for the greenhouse"
    assert meta["from"] == "Ana Pereira <ana@example.org>" and "lab@example.org" in str(meta["to"])
    assert meta["date"] == "2024-03-05T09:30:00+01:00" and meta["attachments"] == ["quote.pdf", "plan.png"]
    assert message.text.startswith("Subject: Budget for the greenhouse\nFrom: Ana Pereira")
    assert "four thousand euros" in message.text and message.text.endswith("Attachments: quote.pdf, plan.png")
    assert quote.id == f"{path.resolve()}#attachment=1&page=1"
    assert quote.metadata["attachment"] == "quote.pdf" and quote.metadata["page"] == 1
    assert quote.metadata["file_path"] == str(path.resolve()) and "heat pump" in quote.text


def test_a_file_that_is_no_email_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.eml"
    path.write_text("just some words\nwithout headers\n", encoding="utf-8")
    assert "not an e-mail message" in reason_of(path)


# --- EPUB ----------------------------------------------------------------------------------------


def test_epub_chapters_in_reading_order(tmp_path: Path) -> None:
    docs = load_file(F.write_epub(tmp_path / "keeper.epub"))
    # spine: 1 the table of contents (left out), 2 the cover (no text), 3 and 4 the chapters
    assert [d.metadata["chapter"] for d in docs] == [3, 4]
    assert [d.metadata["heading_path"] for d in docs] == ["The Storm", "The Rescue"]
    assert all(d.metadata["title"] == "The Lighthouse Keeper" for d in docs)
    assert docs[0].text.startswith("The Storm\n\nThe keeper climbed the tower at dusk")


def test_drm_and_broken_epubs_are_refused(tmp_path: Path) -> None:
    assert "DRM" in reason_of(F.write_epub(tmp_path / "locked.epub", drm=True))
    broken = tmp_path / "broken.epub"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
    assert "container.xml is missing" in reason_of(broken)


# --- JSON ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrapped", [True, False])
def test_json_records_with_a_detected_text_field(tmp_path: Path, wrapped: bool) -> None:
    solar, _, empty = load_file(F.write_json(tmp_path / "notes.json", wrapped))
    assert solar.text == "Solar panels on the barn roof produce most of the farm's power."
    assert solar.id.endswith("notes.json#record=1") and solar.metadata["record"] == 1
    meta = solar.metadata
    assert (meta["title"], meta["tags"], meta["author.name"], meta["score"]) == (
        "Solar panels",
        ["energy", "roof"],
        "Lea",
        4.5,
    )
    assert meta["field.page"] == 3 and "page" not in meta and "body" not in meta
    assert empty.text == "id: 3\ntitle: Empty"  # no text in its text field: its fields as lines


def test_json_text_field_choice() -> None:
    assert choose_text_field([{"Content": "x", "summary": "y" * 50}]) == "Content"  # a known name first
    assert choose_text_field([{"q": "short", "answer_long": "a long enough answer to be the text"}]) == "answer_long"
    assert choose_text_field([{"a": "tiny", "b": 3}]) is None  # nothing long: fields as lines


def test_json_text_field_given_and_invalid_json(tmp_path: Path) -> None:
    path = F.write_json(tmp_path / "notes.json")
    [first, *_] = load_json(path, text_field="title")
    assert first.text == "Solar panels" and "body" in first.metadata
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }', encoding="utf-8")
    assert reason_of(bad) == "invalid JSON at line 2 column 7: Expecting value"
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert "nested too deeply" in reason_of(deep)


def test_jsonl_lines_and_a_malformed_line(tmp_path: Path) -> None:
    docs = load_file(F.write_jsonl(tmp_path / "feed.jsonl"))
    assert [d.metadata["line"] for d in docs] == [1, 3, 4]  # line 2 is blank
    assert docs[1].text == "A cistern under the yard stores rainwater for the orchard."
    rows = [json.dumps({"text": f"entry number {n}"}) for n in range(3000)]
    bad = F.write_jsonl(tmp_path / "bad.jsonl", [*rows, '{"text": "unterminated'])
    with pytest.raises(UnreadableFileError, match="invalid JSON at line 3002"):
        load_file_batches(bad, part_chars=1000)
    strings = tmp_path / "strings.jsonl"
    strings.write_text('"first plain string"\n"second"\n', encoding="utf-8")
    assert [d.text for d in load_file(strings)] == ["first plain string", "second"]


# --- missing libraries, folders, the knowledge base ------------------------------------------------


def test_a_missing_format_library_is_a_skip_reason_naming_the_extra(tmp_path: Path) -> None:
    path = F.write_docx(tmp_path / "guide.docx")
    code = (
        "import sys; sys.modules['docx'] = None  # python-docx not installed\n"
        "from kvgraph.ingest.loaders import load_paths\n"
        f"result = load_paths([{str(path)!r}])\n"
        "print(result.skipped[0].reason)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "needs python-docx" in out.stdout and "pip install 'kvgraph[formats]'" in out.stdout
    assert "Traceback" not in out.stderr


def test_folders_pick_up_every_format_and_legacy_office_files_get_a_hint(tmp_path: Path) -> None:
    for ext, writer in WRITERS.items():
        writer(tmp_path / f"f{ext}")
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    assert sorted(p.suffix for p in walk(tmp_path)) == sorted(WRITERS)
    result = load_paths([tmp_path, tmp_path / "old.doc"])
    assert [s.reason for s in result.skipped] == [
        "unsupported file type '.doc' (the old binary Word format; save it as .docx); supported: "
        + ", ".join(sorted(SUPPORTED_EXTENSIONS))
    ]


def test_knowledge_base_ingests_and_searches_every_format(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for ext, writer in WRITERS.items():
        writer(folder / f"sample{ext}")
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        report = kb.ingest(folder)
        assert report.files_ingested == len(WRITERS) and not report.skipped

        def top(query: str, **kw: object) -> dict:
            return dict(kb.search(query, k=1, **kw)[0].node.metadata)

        assert top("Who is the mayor of Zürich?")["row"] == 3
        slide = top("which region sold the most turbines")
        assert slide["file_type"] == "pptx" and slide["slide"] == 2
        honey = kb.search("how much honey to leave for winter", k=1)[0].node
        assert honey.metadata["file_type"] == "docx" and "twenty kilograms" in honey.text
        assert top("the keeper lit the lamp in the tower")["chapter"] == 3
        assert top("heat pump installation price")["attachment"] == "quote.pdf"
        assert top("rainwater cistern for the orchard")["file_type"] in ("json", "jsonl")
        pricey = kb.search("kitchen cookware", k=5, filters={"Price": {"$gt": 40}})
        assert [h.node.metadata["Product"] for h in pricey] == ["Cast iron pan"]
