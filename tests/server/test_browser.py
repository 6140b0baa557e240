"""The web page in a real browser: Playwright driving Debian's Chromium against a real ``kvgraph serve``.

Upload a document, ask (the answer streams in from a loopback LLM), open a citation, delete a
document, run a graph query. Screenshots go to ``$KVGRAPH_TEST_ARTIFACTS`` (default
``$TMPDIR/kvgraph-test-artifacts``). Skipped, saying why, when Chromium is not installed
(``apt-get install -y chromium``) or the playwright package is missing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvgraph.testing.pdf import write_pdf

CHROMIUM = Path(os.environ.get("KVGRAPH_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium) or set KVGRAPH_CHROMIUM",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is a dev dependency")

# Flags that keep Chromium off the network: no component updates, sync, QUIC probes or first-run pings.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("KVGRAPH_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "kvgraph-test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    profile = tmp_path / "chromium-profile"  # a new, empty profile every time
    profile.mkdir()
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 800},
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: d.accept())
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:")) else outside.append(r.url))
        try:
            yield page
        finally:
            context.close()
        assert errors == [], errors
        assert outside == [], f"the page fetched from other hosts: {outside}"


def open_page(page: Any, server: Any, tab: str = "chat") -> None:
    page.goto(f"{server.base_url}/#{tab}")
    page.wait_for_selector("body[data-ready=true]")


def test_upload_ask_streamed_answer_and_open_its_citation(
    serve, kb_copy: Path, start_openai_server, browser_page: Any, artifacts: Path, tmp_path: Path
) -> None:
    reply = "The walk-in kiln reaches 1280 degrees in about nine hours [1]. Cool it for two days before opening [1]."
    llm = start_openai_server(reply=lambda messages: reply)
    s = serve(kb_copy, kb_overrides={"llm_base_url": llm.base_url, "llm_model": "test-model"})
    page = browser_page
    pdf = tmp_path / "kiln-manual.pdf"
    write_pdf(
        pdf,
        [
            "Kiln manual. Read the safety notes before the first firing.",
            "Firing schedule. The walk-in kiln reaches 1280 degrees in about nine hours. "
            "Let it cool for two full days before opening the door.",
        ],
    )

    open_page(page, s, "documents")
    page.set_input_files("[data-testid=upload-input]", str(pdf))
    page.click("[data-testid=upload-button]")
    page.locator("[data-testid=upload-status]", has_text="ingested: 1 files").wait_for()
    page.locator("[data-testid=document-row][data-name='kiln-manual.pdf']").wait_for()
    page.screenshot(path=str(artifacts / "01-documents-after-upload.png"))

    page.click("nav [data-tab=chat]")
    page.evaluate(
        """() => {
            window.__updates = 0;
            new MutationObserver((records) => { window.__updates += records.length; })
                .observe(document.getElementById("messages"), {subtree: true, childList: true, characterData: true});
        }"""
    )
    page.fill("[data-testid=chat-input]", "How hot does the kiln get and how long must it cool?")
    page.click("[data-testid=chat-send]")
    answer = page.locator("[data-testid=answer]").last
    answer.locator("[data-testid=citation-link]").first.wait_for()
    assert answer.locator("[data-testid=answer-text]").inner_text().startswith("The walk-in kiln reaches 1280 degrees")
    assert page.evaluate("() => window.__updates") > 10  # the words arrived one by one, not all at once
    answer.locator("[data-testid=citation-link]").first.click()
    panel = page.locator("[data-testid=citation-panel]")
    assert panel.is_visible()
    assert "kiln-manual.pdf" in page.locator("[data-testid=citation-where]").inner_text()
    assert "page 2" in page.locator("[data-testid=citation-where]").inner_text()
    assert "walk-in kiln reaches 1280 degrees" in page.locator("[data-testid=citation-text]").inner_text()
    page.screenshot(path=str(artifacts / "02-chat-citation.png"))

    # a follow-up in the same conversation, then the conversation is listed
    page.fill("[data-testid=chat-input]", "and how long is the firing?")
    page.click("[data-testid=chat-send]")
    page.locator("[data-testid=answer]").nth(1).locator("[data-testid=source]").first.wait_for()
    assert page.locator("[data-testid=conversation]").count() == 1


def test_delete_a_document_from_the_page(serve, kb_copy: Path, browser_page: Any, artifacts: Path) -> None:
    s = serve(kb_copy)
    page = browser_page
    open_page(page, s, "documents")
    row = page.locator("[data-testid=document-row][data-name='sourdough.md']")
    row.wait_for()
    before = page.locator("[data-testid=document-row]").count()
    row.locator("[data-testid=delete-document]").click()  # the confirm() dialog is accepted
    page.locator("[data-testid=upload-status]", has_text="deleted sourdough.md").wait_for()
    assert page.locator("[data-testid=document-row][data-name='sourdough.md']").count() == 0
    assert page.locator("[data-testid=document-row]").count() == before - 1
    page.screenshot(path=str(artifacts / "03-documents-after-delete.png"))
    with s.client() as c:
        assert "sourdough.md" not in {d["name"] for d in c.get("/api/documents").json()}


def test_graph_query_draws_the_result_and_expands_a_node(
    serve, kb_copy: Path, browser_page: Any, artifacts: Path
) -> None:
    s = serve(kb_copy)
    page = browser_page
    open_page(page, s, "graph")
    cypher = "MATCH (c:Chunk)-[r:PARENT]->(d:Document) WHERE d.title = $title RETURN c, r, d"
    params = {"title": "Sourdough Bread: Starter to Loaf"}
    page.fill("[data-testid=cypher-input]", cypher)
    page.fill("[data-testid=cypher-params]", json.dumps(params))
    page.click("[data-testid=cypher-run]")
    page.locator("[data-testid=graph-row]").first.wait_for()
    with s.client() as c:
        expected = c.post("/api/graph/query", json={"cypher": cypher, "params": params}).json()
    assert page.locator("[data-testid=graph-row]").count() == len(expected["rows"]) >= 1
    drawn = page.locator("[data-testid=graph-node]")
    assert sorted(drawn.nth(i).get_attribute("data-id") for i in range(drawn.count())) == sorted(
        n["id"] for n in expected["graph"]["nodes"]
    )
    page.locator("[data-testid=graph-node][data-id^='Document:']").first.click()
    assert page.locator("[data-testid=node-title]").inner_text() == "Sourdough Bread: Starter to Loaf"
    page.click("[data-testid=expand-node]")
    page.locator("[data-testid=graph-note]", has_text="relationships").wait_for()
    page.screenshot(path=str(artifacts / "04-graph.png"))


def test_search_in_graph_mode_opens_the_walk_path(serve, kb_copy: Path, browser_page: Any, artifacts: Path) -> None:
    s = serve(kb_copy)
    page = browser_page
    open_page(page, s, "search")
    page.fill("[data-testid=search-input]", "Who deciphered the Rosetta Stone?")
    page.select_option("[data-testid=search-mode]", "graph")
    page.fill("#search-k", "8")
    page.click("[data-testid=search-button]")
    page.locator("[data-testid=search-hit]").first.wait_for()
    page.screenshot(path=str(artifacts / "05-search-graph-mode.png"))
    page.locator("[data-testid=show-path]").first.click()
    page.locator("[data-testid=graph-node]").first.wait_for()
    assert page.locator("[data-testid=graph-node]").count() >= 2
    assert "→" in page.locator("[data-testid=graph-note]").inner_text()


def test_the_page_asks_for_the_key_when_the_server_needs_one(serve, sample_kb: Path, browser_page: Any) -> None:
    from server_support import KEY

    s = serve(sample_kb, api_key=KEY)
    page = browser_page
    page.goto(s.base_url + "/")
    dialog = page.locator("[data-testid=key-dialog]")
    dialog.wait_for(state="visible")
    page.fill("[data-testid=key-input]", KEY)
    page.keyboard.press("Enter")
    page.locator("[data-testid=kb-status]", has_text="chunks").wait_for()
    assert "5 files" in page.locator("[data-testid=kb-status]").inner_text()
