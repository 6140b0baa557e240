"""The HTTP API against a real uvicorn on loopback: documents, jobs, search, ask (JSON and SSE)."""

from __future__ import annotations

import threading
from pathlib import Path

from server_support import SAMPLES, sse_events, wait_job

from kvgraph.kb import KnowledgeBase
from kvgraph.testing.pdf import write_pdf


def test_health_readiness_and_stats(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    with s.client() as c:
        assert c.get("/api/health").json() == {"status": "ok"}
        assert c.get("/api/ready").json() == {"ready": True}
        stats = c.get("/api/stats").json()
    assert stats["files"] == 5
    assert stats["chunks"] > 20
    assert stats["doc_graph"] is True
    assert stats["llm"] is False


def test_openapi_schema_is_served_and_docs_pages_that_need_a_cdn_are_not(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    with s.client() as c:
        schema = c.get("/openapi.json").json()
        assert "/api/search" in schema["paths"] and "/v1/chat/completions" in schema["paths"]
        assert c.get("/docs").status_code == 404
        assert c.get("/redoc").status_code == 404
        page = c.get("/")
    assert page.status_code == 200
    assert "http" not in page.text.replace('lang="en"', "")  # no absolute URL: nothing from another host
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # the file picker offers every kind the upload route takes, and only those
    accept = page.text.split('id="upload-input"', 1)[1].split('accept="', 1)[1].split('"', 1)[0]
    assert set(accept.split(",")) == set(KnowledgeBase.supported_extensions())


def test_search_returns_scored_hits_with_sources_pages_and_filters(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    with s.client() as c:
        out = c.post("/api/search", json={"query": "Which Wi-Fi channels do not overlap?", "k": 3}).json()
        hits = out["hits"]
        assert len(hits) == 3
        assert hits[0]["file_name"] == "home-network-handbook.pdf"
        assert isinstance(hits[0]["page"], int)
        assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
        assert "p." in hits[0]["source"]
        sparse = c.post("/api/search", json={"query": "sourdough starter", "mode": "sparse", "k": 2}).json()
        assert sparse["mode"] == "sparse" and sparse["hits"][0]["file_name"] == "sourdough.md"
        only_pdf = c.post("/api/search", json={"query": "bees", "filters": "file_type=pdf", "k": 3}).json()
        assert only_pdf["hits"] and {h["file_name"] for h in only_pdf["hits"]} == {"home-network-handbook.pdf"}
        as_json = c.post("/api/search", json={"query": "bees", "filters": {"file_type": "markdown"}, "k": 3}).json()
        assert {h["metadata"]["file_type"] for h in as_json["hits"]} == {"markdown"}
        bad = c.post("/api/search", json={"query": "bees", "filters": {"page": {"$near": 3}}})
    assert bad.status_code == 400
    assert "$near" in bad.json()["error"]["message"]
    assert "Traceback" not in bad.text


def test_graph_mode_hits_say_how_the_walk_reached_them(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    with s.client() as c:
        out = c.post("/api/search", json={"query": "Who deciphered the Rosetta Stone?", "mode": "graph", "k": 8}).json()
    walked = [h for h in out["hits"] if "path_text" in h]
    assert walked, "no hit came through the graph walk"
    graph = walked[0]["path_graph"]
    assert [n["id"] for n in graph["nodes"]] == list(dict.fromkeys(walked[0]["path"]))
    assert len(graph["edges"]) == len(walked[0]["path"]) - 1
    assert all(e["type"] for e in graph["edges"])  # every hop names its edge type or relation


def test_ask_as_json_cites_chunks_with_text_file_and_page(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    with s.client() as c:
        out = c.post("/api/ask", json={"question": "Which Wi-Fi channels on the 2.4 GHz band do not overlap?"}).json()
    assert out["mode"] == "extractive"
    assert "[1]" in out["answer"]
    first = out["citations"][0]
    assert first["file_name"] == "home-network-handbook.pdf"
    assert isinstance(first["page"], int)
    assert first["text"] and first["text"] in {src["text"] for src in out["sources"]}


def test_ask_streams_deltas_then_the_answer_with_citations(serve, sample_kb: Path, start_openai_server) -> None:
    llm = start_openai_server(reply=lambda messages: "Clean them twice a year [1], early in the morning [1].")
    s = serve(sample_kb, kb_overrides={"llm_base_url": llm.base_url, "llm_model": "test-model"})
    body = {"question": "How often should solar panels be cleaned?", "stream": True}
    with s.client() as c, c.stream("POST", "/api/ask", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    names = [n for n, _ in events]
    assert names[0] == "start" and names[-1] == "answer"
    deltas = [d["text"] for n, d in events if n == "delta"]
    assert len(deltas) > 3  # the LLM's words arrived one by one
    answer = events[-1][1]
    assert "".join(deltas) == answer["answer"] == "Clean them twice a year [1], early in the morning [1]."
    assert answer["mode"] == "llm"
    assert [c["number"] for c in answer["citations"]] == [1]
    assert answer["citations"][0]["file_name"] == "solar-maintenance.md"
    prompt = llm.requests_to("/v1/chat/completions")[-1].body["messages"][-1]["content"]
    assert answer["citations"][0]["text"].strip()[:60] in prompt


def test_stream_that_fails_before_it_starts_is_a_json_error(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    with s.client() as c:
        r = c.post("/api/ask", json={"question": "bees", "stream": True, "filters": "page>>3"})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["message"]


def test_upload_ingests_in_a_job_with_progress_events_then_delete_removes_it(serve, kb_copy: Path) -> None:
    s = serve(kb_copy)
    with s.client() as c:
        files = [
            (
                "files",
                ("kiln.md", b"# Kilns\n\nA kiln fires clay at 1200 degrees to make stoneware.\n", "text/markdown"),
            ),
            ("files", ("glaze.txt", b"Glazes melt into glass on the surface of fired clay pots.\n", "text/plain")),
        ]
        job = c.post("/api/documents", files=files)
        assert job.status_code == 202 and job.json()["kind"] == "ingest"
        with c.stream("GET", f"/api/jobs/{job.json()['id']}/events") as r:
            events = sse_events(r)
        assert events[-1][0] == "done"
        final = events[-1][1]
        assert final["state"] == "done", final
        assert final["result"]["files_ingested"] == 2
        assert final["progress"]["files_done"] == 2
        docs = {d["name"]: d for d in c.get("/api/documents").json()}
        assert docs["kiln.md"]["uploaded"] and docs["kiln.md"]["chunks"] >= 1
        assert (kb_copy / "uploads" / "kiln.md").read_bytes().startswith(b"# Kilns")
        hits = c.post("/api/search", json={"query": "stoneware kiln temperature", "k": 1}).json()["hits"]
        assert hits[0]["file_name"] == "kiln.md"

        gone = c.delete(f"/api/documents/{docs['kiln.md']['id']}")
        assert gone.status_code == 200 and gone.json()["chunks_deleted"] >= 1
        assert not (kb_copy / "uploads" / "kiln.md").exists()
        assert "kiln.md" not in {d["name"] for d in c.get("/api/documents").json()}
        hits = c.post("/api/search", json={"query": "stoneware kiln temperature", "k": 3}).json()["hits"]
        assert "kiln.md" not in {h["file_name"] for h in hits}
        assert c.delete(f"/api/documents/{docs['kiln.md']['id']}").status_code == 404


def test_sync_job_picks_up_a_changed_file(serve, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# Tea\n\nGreen tea is steeped at 80 degrees.\n")
    from kvgraph.kb import KnowledgeBase

    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([folder])
    s = serve(tmp_path / "kb")
    (folder / "b.md").write_text("# Coffee\n\nEspresso is brewed at nine bars of pressure.\n")
    with s.client() as c:
        job = wait_job(c, c.post("/api/sync").json()["id"])
        assert job["state"] == "done" and job["result"]["files_ingested"] == 1
        hits = c.post("/api/search", json={"query": "espresso pressure", "k": 1}).json()["hits"]
    assert hits[0]["file_name"] == "b.md"


def test_reads_go_on_while_a_write_is_in_progress(serve, tmp_path: Path) -> None:
    """Searches answer during an ingest (the writer thread is busy, readers are not) and see its result after."""
    big = tmp_path / "big.pdf"
    write_pdf(big, [f"Page {i} of the manual describes valve number {i} of the boiler." * 30 for i in range(60)])
    s = serve(tmp_path / "kb")
    done_while_running = 0
    with s.client() as c:
        job_id = c.post("/api/documents", files=[("files", ("big.pdf", big.read_bytes(), "application/pdf"))]).json()[
            "id"
        ]
        errors: list[str] = []
        while True:
            state = c.get(f"/api/jobs/{job_id}").json()["state"]
            r = c.post("/api/search", json={"query": "boiler valve", "k": 3})
            if r.status_code != 200:
                errors.append(r.text)
            if state == "running" and c.get(f"/api/jobs/{job_id}").json()["state"] == "running":
                done_while_running += 1
            if state in ("done", "failed"):
                break
        assert not errors
        assert state == "done"
        hits = c.post("/api/search", json={"query": "boiler valve", "k": 3}).json()["hits"]
    assert done_while_running >= 1, "no search completed while the ingest ran"
    assert hits and hits[0]["file_name"] == "big.pdf"


def test_concurrent_reads_from_many_clients(serve, sample_kb: Path) -> None:
    s = serve(sample_kb, readers=3)
    failures: list[str] = []

    def client_loop(i: int) -> None:
        with s.client() as c:
            for j in range(5):
                r = c.post(
                    "/api/ask" if j % 2 else "/api/search",
                    json={"query": "honeybee dance"} if j % 2 == 0 else {"question": "How do bees dance?"},
                )
                if r.status_code != 200:
                    failures.append(r.text)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_unknown_ids_are_404_and_bad_bodies_422_with_a_message(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    with s.client() as c:
        assert c.get("/api/jobs/nope").status_code == 404
        assert c.get("/api/conversations/nope").status_code == 404
        assert c.get("/api/eval/runs/nope").status_code == 404
        bad = c.post("/api/search", json={"query": "", "k": 0})
        assert bad.status_code == 422
        assert "query" in bad.json()["error"]["message"] and "k" in bad.json()["error"]["message"]
        extra = c.post("/api/search", json={"query": "x", "unknown": 1})
        assert extra.status_code == 422
        assert c.get("/api/nothing-here").json()["error"]["type"] == "not_found"
    assert SAMPLES.exists()
