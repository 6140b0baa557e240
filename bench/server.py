#!/usr/bin/env python
"""Server benchmark: ``kvgraph serve`` under N concurrent clients mixing search and ask, with and without
one client ingesting at the same time.

The server runs as its own process (``python -m kvgraph.server``) on a loopback port over a knowledge
base of the repository's sample documents; clients are threads of this process using httpx, each
sending requests one after another for a fixed time. Three phases, in this order:

  direct     KnowledgeBase.search / ask in this process, one thread, no HTTP (the floor)
  reads      N clients: 70% search (dense, sparse, hybrid in turn), 30% ask (extractive)
  + ingest   the same N clients while one more client uploads generated PDFs one by one and
             waits for each ingest job (the single writer), for the whole phase

Reported per phase and request kind: requests, errors, throughput, p50 and p99 latency, and the
ratio of each to the ``reads`` phase. Everything stays on 127.0.0.1 and stops by itself.

    .venv/bin/python bench/server.py                     # 8 clients, 20 s per phase (~1.5 min on 2 cores)
    .venv/bin/python bench/server.py --quick             # 4 clients, 5 s per phase (smoke test)
    .venv/bin/python bench/server.py --clients 16 --readers 4 --json bench/out/server.json

See bench/README.md ("Server") for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _tables import fmt, table

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SAMPLES = REPO_ROOT / "src" / "kvgraph" / "demo_data" / "docs"
QUERIES = [
    "How often should solar panels be cleaned?",
    "Which Wi-Fi channels do not overlap?",
    "How do forager bees tell the others where flowers are?",
    "Who deciphered the Rosetta Stone?",
    "How long should a sourdough starter ferment?",
    "What does inverter error E07 mean?",
    "How many eggs does a queen bee lay?",
    "Where is the Rosetta Stone kept today?",
]
MODES = ("dense", "sparse", "hybrid")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    import kvgraph  # noqa: F401
except ImportError:  # not installed in the venv: use the source tree
    sys.path.insert(0, str(REPO_ROOT / "src"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=None, help="concurrent reading clients (default 8; quick: 4)")
    ap.add_argument("--seconds", type=float, default=None, help="length of each phase (default 20; quick: 5)")
    ap.add_argument("--readers", type=int, default=4, help="the server's reader threads (default 4)")
    ap.add_argument("--ask-share", type=float, default=0.3, help="share of requests that are ask (default 0.3)")
    ap.add_argument("--pdf-pages", type=int, default=12, help="pages of each PDF the ingesting client uploads")
    ap.add_argument("--quick", action="store_true", help="few clients, short phases: a smoke test")
    ap.add_argument("--json", default=None, help="write the raw results here")
    args = ap.parse_args(argv)
    args.clients = args.clients or (4 if args.quick else 8)
    args.seconds = args.seconds or (5.0 if args.quick else 20.0)
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_kb(path: Path) -> None:
    from kvgraph.kb import KnowledgeBase

    with KnowledgeBase.open(path) as kb:
        kb.ingest([SAMPLES])


def start_server(kb: Path, port: int, readers: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "kvgraph.server", "--kb", str(kb), "--port", str(port), "--readers", str(readers)]
    proc = subprocess.Popen([*cmd, "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready in 120 s")


def summarise(samples: dict[str, list[float]], errors: dict[str, int], seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in sorted(set(samples) | set(errors)):
        lat = sorted(samples.get(kind, []))
        n = len(lat)
        out[kind] = {
            "requests": n,
            "errors": errors.get(kind, 0),
            "per_s": n / seconds if seconds else 0.0,
            "p50_ms": 1000 * statistics.median(lat) if lat else None,
            "p99_ms": 1000 * lat[min(n - 1, int(0.99 * n))] if lat else None,
        }
    return out


def direct_phase(kb_path: Path, seconds: float, ask_share: float) -> dict[str, Any]:
    """The same mix in this process, one thread, no HTTP: what the server adds is measured against this."""
    from kvgraph.kb import KnowledgeBase

    samples: dict[str, list[float]] = {"search": [], "ask": []}
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        kb.search("warm up")
        t_end = time.monotonic() + seconds
        i = 0
        t0 = time.monotonic()
        while time.monotonic() < t_end:
            q = QUERIES[i % len(QUERIES)]
            kind = "ask" if (i * ask_share) % 1 + ask_share >= 1 else "search"
            t = time.perf_counter()
            if kind == "ask":
                kb.ask(q)
            else:
                kb.search(q, k=5, mode=MODES[i % len(MODES)])
            samples[kind].append(time.perf_counter() - t)
            i += 1
        elapsed = time.monotonic() - t0
    return summarise(samples, {}, elapsed)


def client_loop(
    base: str,
    stop: threading.Event,
    seed: int,
    ask_share: float,
    samples: dict[str, list[float]],
    errors: dict[str, int],
) -> None:
    import httpx

    lock = threading.Lock()
    i = seed
    with httpx.Client(base_url=base, timeout=60) as c:
        while not stop.is_set():
            q = QUERIES[i % len(QUERIES)]
            kind = "ask" if (i * ask_share) % 1 + ask_share >= 1 else "search"
            t = time.perf_counter()
            try:
                if kind == "ask":
                    r = c.post("/api/ask", json={"question": q})
                else:
                    r = c.post("/api/search", json={"query": q, "k": 5, "mode": MODES[i % len(MODES)]})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            dt = time.perf_counter() - t
            with lock:
                if ok:
                    samples.setdefault(kind, []).append(dt)
                else:
                    errors[kind] = errors.get(kind, 0) + 1
            i += 1


def ingest_loop(base: str, stop: threading.Event, pages: int, folder: Path, out: dict[str, Any]) -> None:
    import httpx

    from kvgraph.testing.pdf import write_pdf

    jobs: list[dict[str, Any]] = []
    with httpx.Client(base_url=base, timeout=120) as c:
        n = 0
        while not stop.is_set():
            n += 1
            pdf = folder / f"manual-{n}.pdf"
            write_pdf(pdf, [f"Manual {n}, page {p}. " + " ".join(QUERIES) * 3 for p in range(pages)])
            t = time.perf_counter()
            r = c.post("/api/documents", files=[("files", (pdf.name, pdf.read_bytes(), "application/pdf"))])
            if r.status_code != 202:
                out["errors"] = out.get("errors", 0) + 1
                continue
            job_id = r.json()["id"]
            while True:
                job = c.get(f"/api/jobs/{job_id}").json()
                if job["state"] in ("done", "failed"):
                    break
                time.sleep(0.05)
            if job["state"] != "done":
                out["errors"] = out.get("errors", 0) + 1
            jobs.append({"seconds": time.perf_counter() - t, "chunks": (job.get("result") or {}).get("chunks", 0)})
    out["files"] = len(jobs)
    out["chunks"] = sum(j["chunks"] for j in jobs)
    out["job_p50_s"] = statistics.median(j["seconds"] for j in jobs) if jobs else None
    out.setdefault("errors", 0)


def http_phase(base: str, args: argparse.Namespace, ingest_folder: Path | None) -> dict[str, Any]:
    samples: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    stop = threading.Event()
    threads = [
        threading.Thread(target=client_loop, args=(base, stop, 7 * i, args.ask_share, samples, errors))
        for i in range(args.clients)
    ]
    ingest: dict[str, Any] = {}
    if ingest_folder is not None:
        threads.append(threading.Thread(target=ingest_loop, args=(base, stop, args.pdf_pages, ingest_folder, ingest)))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join(180)
    elapsed = time.monotonic() - t0
    out = summarise(samples, errors, elapsed)
    if ingest_folder is not None:
        out["ingest"] = ingest
    return out


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    base = results["reads"]
    rows = []
    for phase in ("direct", "reads", "+ ingest"):
        for kind in ("search", "ask"):
            r = results[phase].get(kind)
            if not r:
                continue
            ref = base.get(kind) or {}

            def ratio(key: str, r: dict[str, Any] = r, ref: dict[str, Any] = ref) -> str:
                return f"{r[key] / ref[key]:.2f}x" if r.get(key) and ref.get(key) else "-"

            rows.append(
                [
                    phase,
                    kind,
                    "1 (in-process)" if phase == "direct" else args.clients,
                    r["requests"],
                    r["errors"],
                    fmt(r["per_s"]),
                    fmt(r["p50_ms"]),
                    fmt(r["p99_ms"]),
                    ratio("p50_ms"),
                    ratio("p99_ms"),
                ]
            )
    head = [
        "phase",
        "kind",
        "clients",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p50 vs reads",
        "p99 vs reads",
    ]
    ing = results["+ ingest"].get("ingest", {})
    tail = (
        f"\ningesting client during `+ ingest`: {ing.get('files', 0)} PDFs of {args.pdf_pages} pages, "
        f"{ing.get('chunks', 0)} chunks, job p50 {fmt(ing.get('job_p50_s'), 2)} s, {ing.get('errors', 0)} errors"
    )
    return table(head, rows) + tail


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kvgraph-bench-server-"))
    proc = None
    try:
        kb = work / "kb"
        t = time.perf_counter()
        build_kb(kb)
        print(f"knowledge base of {SAMPLES} built in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        results: dict[str, Any] = {"direct": direct_phase(kb, args.seconds, args.ask_share)}
        port = free_port()
        proc = start_server(kb, port, args.readers)
        base = f"http://127.0.0.1:{port}"
        results["reads"] = http_phase(base, args, None)
        (work / "pdfs").mkdir()
        results["+ ingest"] = http_phase(base, args, work / "pdfs")
        results["config"] = {
            "clients": args.clients,
            "seconds": args.seconds,
            "readers": args.readers,
            "ask_share": args.ask_share,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
        print(report(results, args))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(results, indent=1))
        total_errors = sum(
            r.get("errors", 0)
            for phase in ("reads", "+ ingest")
            for r in results[phase].values()
            if isinstance(r, dict)
        )
        return 1 if total_errors else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
