"""Real files of every format kvgraph reads beyond text, PDF, Markdown and HTML, written by the
format libraries themselves (python-docx, python-pptx, openpyxl) or by the standard library
(CSV, e-mail, EPUB, JSON), for tests/ingest/test_formats.py and the CLI tests."""

from __future__ import annotations

import json
import zipfile
from email.message import EmailMessage
from pathlib import Path

from kvgraph.testing.pdf import write_pdf


def write_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = "Beekeeping handbook"
    document.add_paragraph("A short guide for new beekeepers.")
    document.add_heading("Hives", level=1)
    document.add_paragraph(
        "A Langstroth hive has removable frames. The colony stores honey in the upper boxes "
        "and raises brood in the lower ones."
    )
    document.add_heading("Winter care", level=2)
    document.add_paragraph("Leave at least twenty kilograms of honey for the winter cluster.")
    document.add_paragraph("Check the entrance for dead bees", style="List Bullet")
    document.add_paragraph("Keep the mouse guard on", style="List Bullet")
    table = document.add_table(rows=3, cols=2)
    for row, (a, b) in zip(table.rows, [("Month", "Task"), ("March", "first inspection"), ("May", "swarm control")]):
        row.cells[0].text, row.cells[1].text = a, b
    document.add_heading("Harvest", level=1)
    document.add_paragraph("Extract honey when ninety percent of the cells are capped with wax.")
    document.save(path)
    return path


def write_pptx(path: Path) -> Path:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    deck.core_properties.title = "Quarterly review"
    title_only = deck.slide_layouts[0]
    bullets = deck.slide_layouts[1]
    blank = deck.slide_layouts[6]
    first = deck.slides.add_slide(title_only)
    first.shapes.title.text = "Quarterly review"
    first.placeholders[1].text = "Sales and operations, third quarter"
    second = deck.slides.add_slide(bullets)
    second.shapes.title.text = "Revenue"
    body = second.placeholders[1].text_frame
    body.text = "Revenue grew by twelve percent over the quarter"
    body.add_paragraph().text = "The northern region sold the most turbines"
    second.notes_slide.notes_text_frame.text = "Mention the delayed shipment to Oslo."
    deck.slides.add_slide(blank)  # a slide without text: not a document
    fourth = deck.slides.add_slide(blank)
    rows = fourth.shapes.add_table(2, 2, Inches(1), Inches(1), Inches(6), Inches(2)).table
    rows.cell(0, 0).text, rows.cell(0, 1).text = "Region", "Turbines"
    rows.cell(1, 0).text, rows.cell(1, 1).text = "North", "42"
    deck.save(path)
    return path


def write_xlsx(path: Path, extra_rows: int = 0) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Inventory"
    sheet.append(["Product", "Price", "In stock", "Added", "page"])
    sheet.append(["Copper kettle", 34.5, True, __import__("datetime").date(2024, 3, 1), 7])
    sheet.append([])  # an empty row: skipped, numbering kept
    sheet.append(["Cast iron pan", 52, False, None, 9])
    for n in range(extra_rows):
        sheet.append([f"Spoon {n}", n, True, None, None])
    staff = workbook.create_sheet("Staff")
    staff.append(["Name", "Role"])
    staff.append(["Ines Duarte", "head of purchasing"])
    workbook.create_sheet("Empty")
    workbook.save(path)
    return path


def write_csv(path: Path, encoding: str = "utf-8", delimiter: str = ",") -> Path:
    rows = [
        ["city", "country", "population", "mayor"],
        ["Lyon", "France", "522250", "Grégory Doucet"],
        ["Zürich", "Switzerland", "421878", "Corine Mauch"],
        ["", "", "", ""],
        ["Porto", "Portugal", "231800", 'Rui "the engineer" Moreira'],
    ]

    def quote(cell: str) -> str:
        return f'"{cell.replace(chr(34), chr(34) * 2)}"' if any(c in cell for c in f'"{delimiter}\n') else cell

    text = "\r\n".join(delimiter.join(quote(c) for c in row) for row in rows) + "\r\n"
    path.write_bytes(text.encode(encoding))
    return path


def write_eml(path: Path, attachments: bool = True) -> Path:
    message = EmailMessage()
    message["Subject"] = "Budget for the greenhouse"
    message["From"] = "Ana Pereira <ana@example.org>"
    message["To"] = "Tom Berg <tom@example.org>, lab@example.org"
    message["Date"] = "Tue, 05 Mar 2024 09:30:00 +0100"
    message["Message-ID"] = "<greenhouse-1@example.org>"
    message.set_content(
        "Hi Tom,\n\nThe greenhouse heating will cost about four thousand euros this winter. "
        "I attached the quote from the supplier.\n\nAna\n"
    )
    if attachments:
        quote = path.parent / "quote-source.pdf"
        write_pdf(quote, ["Supplier quote: heat pump installation, 3,900 euros including the thermostat."])
        message.add_attachment(quote.read_bytes(), maintype="application", subtype="pdf", filename="quote.pdf")
        quote.unlink()
        message.add_attachment(b"\x89PNG\r\n\x1a\n fake", maintype="image", subtype="png", filename="plan.png")
    path.write_bytes(bytes(message))
    return path


_CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>"""

_OPF = """<?xml version="1.0" encoding="UTF-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="id">urn:uuid:12345</dc:identifier><dc:title>The Lighthouse Keeper</dc:title>
  </metadata>
  <manifest>
    <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
    <item id="cover" href="cover.xhtml" media-type="application/xhtml+xml"/>
    <item id="c1" href="text/chapter1.xhtml" media-type="application/xhtml+xml"/>
    <item id="c2" href="text/chapter2.xhtml" media-type="application/xhtml+xml"/>
    <item id="css" href="style.css" media-type="text/css"/>
  </manifest>
  <spine><itemref idref="nav"/><itemref idref="cover"/><itemref idref="c1"/><itemref idref="c2"/></spine>
</package>"""


def _xhtml(title: str, body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml">'
        f"<head><title>{title}</title></head><body>{body}</body></html>"
    )


def write_epub(path: Path, drm: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", _CONTAINER)
        archive.writestr("OEBPS/content.opf", _OPF)
        archive.writestr("OEBPS/nav.xhtml", _xhtml("Contents", "<nav><ol><li>Chapter one</li></ol></nav>"))
        archive.writestr("OEBPS/cover.xhtml", _xhtml("The Lighthouse Keeper", '<img src="cover.jpg"/>'))
        archive.writestr(
            "OEBPS/text/chapter1.xhtml",
            _xhtml(
                "The Storm",
                "<h1>The Storm</h1><p>The keeper climbed the tower at dusk and lit the great lamp.</p>"
                "<p>Waves broke over the rocks all night.</p>",
            ),
        )
        archive.writestr(
            "OEBPS/text/chapter2.xhtml",
            _xhtml("The Rescue", "<h1>The Rescue</h1><p>At dawn a fishing boat reached the harbour safely.</p>"),
        )
        archive.writestr("OEBPS/style.css", "p { margin: 0 }")
        if drm:
            archive.writestr(
                "META-INF/encryption.xml",
                '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
                'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
                '<enc:CipherReference URI="OEBPS/text/chapter1.xhtml"/></enc:CipherData></enc:EncryptedData>'
                "</encryption>",
            )
    return path


RECORDS = [
    {"id": 1, "title": "Solar panels", "body": "Solar panels on the barn roof produce most of the farm's power.",
     "tags": ["energy", "roof"], "author": {"name": "Lea", "team": "ops"}, "score": 4.5, "page": 3},
    {"id": 2, "title": "Rainwater", "body": "A cistern under the yard stores rainwater for the orchard.",
     "tags": ["water"], "author": {"name": "Omar", "team": "garden"}, "score": 3, "page": 8},
    {"id": 3, "title": "Empty", "body": "", "tags": [], "author": {}, "score": None},
]  # fmt: skip


def write_json(path: Path, wrapped: bool = True) -> Path:
    data: object = {"version": 2, "items": RECORDS} if wrapped else RECORDS
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, lines: list[str] | None = None) -> Path:
    rows = lines if lines is not None else [json.dumps(r, ensure_ascii=False) for r in RECORDS]
    path.write_text("\n".join([*rows[:1], "", *rows[1:]]) + "\n", encoding="utf-8")  # a blank line after the first
    return path
