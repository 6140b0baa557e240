"""API keys, binding rules, upload names, size limits, CORS and error bodies."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from server_support import KEY

from kvgraph.errors import InvalidInputError
from kvgraph.server.config import ServerConfig, is_loopback
from kvgraph.server.security import key_matches, safe_upload_name


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_binding_beyond_loopback_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="API key"):
        ServerConfig(tmp_path, host="0.0.0.0").check()
    with pytest.raises(InvalidInputError, match="at least 16"):
        ServerConfig(tmp_path, host="0.0.0.0", api_key="short").check()
    ServerConfig(tmp_path, host="0.0.0.0", api_key=KEY).check()
    ServerConfig(tmp_path, host="127.0.0.1").check()


def test_keys_compare_whole(tmp_path: Path) -> None:
    assert key_matches(KEY, KEY)
    assert not key_matches(KEY[:-1], KEY)
    assert not key_matches(KEY + "x", KEY)
    assert not key_matches("", KEY) and not key_matches(None, KEY)
    assert "set" in repr(ServerConfig(tmp_path, api_key=KEY)) and KEY not in repr(ServerConfig(tmp_path, api_key=KEY))


def test_with_a_key_every_route_but_health_needs_it_and_the_key_never_reaches_the_log(serve, sample_kb: Path) -> None:
    s = serve(sample_kb, api_key=KEY)
    with s.client() as anonymous:
        assert anonymous.get("/api/health").status_code == 200
        assert anonymous.get("/api/ready").status_code == 200
        assert anonymous.get("/").status_code == 200  # the page asks for the key itself
        routes = [("GET", "/api/stats"), ("GET", "/api/documents"), ("POST", "/api/search"), ("GET", "/v1/models"),
                  ("GET", "/api/conversations"), ("GET", "/api/graph/schema")]  # fmt: skip
        for method, path in routes:
            r = anonymous.request(method, path, json={"query": "x"} if method == "POST" else None)
            assert r.status_code == 401, path
            assert r.json()["error"]["type"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.get("/api/stats", headers={"Authorization": f"Bearer {KEY[:-1]}x"})
        assert wrong.status_code == 401
        in_query = anonymous.get(f"/api/stats?api_key={KEY}")
        assert in_query.status_code == 401  # keys in URLs end up in logs: not accepted there
        assert anonymous.get("/api/stats", headers={"X-API-Key": KEY}).status_code == 200
    with s.client(KEY) as c:
        assert c.get("/api/stats").status_code == 200
        assert c.post("/api/search", json={"query": "bees"}).status_code == 200
    log = "\n".join(s.logs)
    assert "GET /api/stats" in log  # the access log was captured...
    assert KEY not in log and KEY[:-1] not in log  # ...and the key is in none of it (the URL one neither)


@pytest.mark.parametrize(
    "name",
    ["../evil.md", "..\\evil.md", "/etc/passwd.txt", "a/../../b.txt", "sub/x.md", ".hidden.md", "..", "",
     "evil\x00.md", "con.txt", "notes.exe", "noext", "tab\there.md"],
)  # fmt: skip
def test_upload_names_that_could_escape_or_hide_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError):
        safe_upload_name(name)


def test_plain_upload_names_are_kept() -> None:
    assert safe_upload_name("Llama 2 (paper) v1.pdf") == "Llama 2 (paper) v1.pdf"
    assert safe_upload_name("Übersicht.md") == "Übersicht.md"


def test_upload_path_traversal_is_refused_and_nothing_is_written(serve, kb_copy: Path) -> None:
    s = serve(kb_copy)
    outside = kb_copy.parent / "evil.md"
    with s.client() as c:
        for name in ["../evil.md", "../../evil.md", "..%2Fevil.md", "uploads/../../evil.md", "/tmp/evil.md"]:
            r = c.post("/api/documents", files=[("files", (name, b"# pwned\n", "text/markdown"))])
            assert r.status_code == 400, name
            assert "file name" in r.json()["error"]["message"] or "upload" in r.json()["error"]["message"]
        # one bad name refuses the whole request: the good file is not stored either
        mixed = [("files", ("fine.md", b"# ok\n", "text/markdown")), ("files", ("../evil.md", b"x", "text/markdown"))]
        assert c.post("/api/documents", files=mixed).status_code == 400
    assert not outside.exists()
    assert not (kb_copy / "uploads" / "fine.md").exists()
    assert not list(kb_copy.parent.glob("**/evil.md"))


def test_a_symlink_planted_in_the_upload_folder_is_not_followed(serve, kb_copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "outside.md"
    target.write_text("# keep me\n")
    (kb_copy / "uploads").mkdir(exist_ok=True)
    (kb_copy / "uploads" / "notes.md").symlink_to(target)
    s = serve(kb_copy)
    with s.client() as c:
        r = c.post("/api/documents", files=[("files", ("notes.md", b"# overwritten\n", "text/markdown"))])
    assert r.status_code == 400
    assert target.read_text() == "# keep me\n"


def test_bodies_over_the_limits_are_refused(serve, kb_copy: Path) -> None:
    s = serve(kb_copy, max_body_bytes=2_000, max_upload_bytes=50_000)
    with s.client() as c:
        big_json = c.post("/api/search", json={"query": "x" * 3_000})
        assert big_json.status_code == 413
        assert "limit" in big_json.json()["error"]["message"]

        def chunked() -> object:  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b'{"query": "' + b"y" * 500

        streamed = c.post("/api/search", content=chunked(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        big_upload = c.post("/api/documents", files=[("files", ("big.txt", b"word " * 20_000, "text/plain"))])
        assert big_upload.status_code == 413
        small = c.post("/api/documents", files=[("files", ("small.txt", b"word " * 2_000, "text/plain"))])
        assert small.status_code == 202
    assert not (kb_copy / "uploads" / "big.txt").exists()


def test_cors_is_off_by_default_and_on_for_named_origins(serve, sample_kb: Path) -> None:
    origin = {"Origin": "http://intranet.example", "Access-Control-Request-Method": "POST"}
    closed = serve(sample_kb)
    with closed.client() as c:
        assert "access-control-allow-origin" not in c.get("/api/stats", headers=origin).headers
        assert "access-control-allow-origin" not in c.options("/api/search", headers=origin).headers
    closed.stop()  # one server per knowledge base: it holds the writer lock
    opened = serve(sample_kb, cors_origins=["http://intranet.example"])
    with opened.client() as c:
        allowed = c.options("/api/search", headers=origin)
        assert allowed.headers["access-control-allow-origin"] == "http://intranet.example"
        other = c.get("/api/stats", headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


def test_error_bodies_carry_a_message_and_no_traceback(serve, kb_copy: Path) -> None:
    s = serve(kb_copy)
    with s.client() as c:
        r = c.post("/api/graph/query", json={"cypher": "MATCH (n RETURN n"})
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"]
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_an_unexpected_error_is_a_500_with_a_generic_message_and_the_detail_only_in_the_log() -> None:
    import threading
    import time

    import uvicorn
    from fastapi import FastAPI
    from server_support import free_port

    from kvgraph.server.errors import install

    app = FastAPI()
    install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail /srv/kb/store")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/boom")
    finally:
        server.should_exit = True
        thread.join(10)
    assert r.status_code == 500
    assert r.json() == {
        "error": {
            "message": "internal server error (the server log has the details)",
            "type": "internal_error",
            "code": 500,
        }
    }
    assert "secret" not in r.text and "Traceback" not in r.text


def test_server_header_and_security_headers(serve, sample_kb: Path) -> None:
    s = serve(sample_kb)
    r = httpx.get(s.base_url + "/api/health")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
