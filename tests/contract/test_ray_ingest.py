"""Distributed ingestion on a real local Ray cluster (2 CPUs): a worker that dies mid-run, a driver
killed mid-run, and re-runs that converge to the same knowledge base as a plain ingest.

Ray takes seconds to start and its workers load the embedding model, so these tests are few and
``slow`` (CI runs them: KVGRAPH_TEST_ALL=1).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kvgraph.ingest.registry import cross_check
from kvgraph.kb import KnowledgeBase
from kvgraph.kb.layout import REGISTRY_FILE

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'kvgraph[ray]'")
pytestmark = pytest.mark.slow
SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kvgraph" / "demo_data" / "docs"


def corpus(root: Path, n: int = 40) -> Path:
    """``n`` small text files cut from the sample documents, plus the samples themselves."""
    root.mkdir(parents=True)
    for p in SAMPLES.iterdir():
        shutil.copy(p, root / p.name)
    paragraphs = [
        para.strip()
        for name in ("rosetta-stone.txt", "sourdough.md", "solar-maintenance.md")
        for para in re.split(r"\n\s*\n", (SAMPLES / name).read_text(encoding="utf-8"))
        if len(para.strip()) > 80
    ]
    for i in range(n):
        (root / f"note-{i:02d}.txt").write_text(f"Note {i}.\n\n{paragraphs[i % len(paragraphs)]}\n", encoding="utf-8")
    return root


def snapshot(kb_path: Path) -> tuple[dict[str, tuple[str, Any]], dict[str, tuple[str, int, list[str]]]]:
    """The knowledge base's content: node id -> (text, metadata) and file -> (sha, nodes, documents)."""
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        ids = kb.store.ids()
        got = [n for n in kb.store.get(ids) if n is not None]
        nodes = {n.id: (n.text, n.metadata) for n in got}
        files = {r.path: (r.sha256, r.n_nodes, sorted(r.doc_ids)) for r in kb.registry.all()}
        VECTORS[kb_path] = {n.text: np.asarray(n.embedding, dtype=np.float32) for n in got}
    for v in VECTORS[kb_path].values():
        assert np.isfinite(v).all()
    return nodes, files


VECTORS: dict[Path, dict[str, np.ndarray]] = {}  # chunk text -> vector, per snapshot's knowledge base


def same_vectors(got_kb: Path, want_kb: Path) -> None:
    """Each chunk embedded as the local engine embeds it (its context header included)."""
    got, want = VECTORS[got_kb], VECTORS[want_kb]
    assert got.keys() == want.keys()
    for text, v in got.items():
        assert float(v @ want[text]) > 0.999, f"the Ray engine embedded {text[:60]!r} differently"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The corpus ingested the ordinary way: what every distributed run must converge to."""
    root = tmp_path_factory.mktemp("plain")
    docs = corpus(root / "docs")
    with KnowledgeBase.open(root / "kb") as kb:
        kb.ingest([docs])
    return docs, snapshot(root / "kb")


def same_content(got: Any, want: Any, docs: Path, plain_docs: Path) -> None:
    """Same chunks (by text, with the same metadata keys) and the same files (hash and chunk count)."""
    g_nodes, g_files = got
    w_nodes, w_files = want
    assert sorted(t for t, _ in g_nodes.values()) == sorted(t for t, _ in w_nodes.values())
    assert sorted(sorted(m) for _, m in g_nodes.values()) == sorted(sorted(m) for _, m in w_nodes.values())
    moved = {k.replace(str(plain_docs.resolve()), str(docs.resolve())): v[:2] for k, v in w_files.items()}
    assert {k: v[:2] for k, v in g_files.items()} == moved


@pytest.fixture
def local_ray() -> Iterator[None]:
    import contract.ray_helpers as helpers

    ray.cloudpickle.register_pickle_by_value(helpers)  # the workers do not have tests/ on their path
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        yield
    finally:
        ray.shutdown()


def test_a_worker_dies_mid_run_and_the_result_equals_a_plain_ingest(
    tmp_path: Path, plain: tuple[Path, Any], local_ray: None
) -> None:
    from contract.ray_helpers import DyingPipeline
    from kvgraph.ingest.distributed import RayOptions, ingest_with_ray
    from kvgraph.kb.backends import ray_pipeline

    plain_docs, want = plain
    docs = corpus(tmp_path / "docs")
    marker = tmp_path / "died"
    commits: list[int] = []
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.ingest([docs / "note-00.txt"])  # settings, model and chunking recorded as a local ingest does
        pipeline = DyingPipeline(ray_pipeline(kb.settings), poison="note-07.txt", marker=str(marker))
        report = ingest_with_ray(
            kb.store, kb.registry, [docs], pipeline, options=RayOptions(commit_files=4), on_commit=commits.append
        )
    assert marker.exists()  # a worker really died on note-07.txt ...
    assert not report.skipped, report.skipped  # ... and Ray ran its task again on another worker
    assert report.files_ingested == len(list(docs.iterdir())) - 1 and report.files_unchanged == 1
    assert len(commits) > 2 and commits[-1] == report.files_ingested  # several batches
    same_content(snapshot(tmp_path / "kb"), want, docs, plain_docs)
    same_vectors(tmp_path / "kb", plain_docs.parent / "kb")
    # a second run finds nothing to do
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        again = kb.ingest([docs], engine="ray")
    assert again.files_ingested == 0 and again.files_unchanged == report.files_seen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[str]:
    """A head node started with ``ray start --block`` (stopped with it); yields its address."""
    port = _free_port()
    temp = Path("/tmp") / f"kvg-ray-{os.getpid()}"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the Ray head did not start")
            time.sleep(0.5)
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # ray start --block stops the cluster's processes with it
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def registered(kb_path: Path) -> int:
    db = kb_path / REGISTRY_FILE
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_killed_driver_leaves_the_last_batch_and_a_rerun_finishes(
    tmp_path: Path, plain: tuple[Path, Any], ray_cluster: str
) -> None:
    plain_docs, want = plain
    docs = corpus(tmp_path / "docs")
    kb_path = tmp_path / "kb"
    total = len(list(docs.iterdir()))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "kvgraph", "--kb", str(kb_path), "ingest", str(docs), "--engine", "ray"]
    driver = subprocess.Popen(
        [*cmd, "--address", ray_cluster], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while registered(kb_path) == 0:  # the first batch is committed
        if driver.poll() is not None or time.monotonic() > deadline:
            err = driver.stderr.read().decode(errors="replace") if driver.stderr else ""
            pytest.fail(f"the driver ended before its first commit ({driver.returncode}): {err[-2000:]}")
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    if driver.stderr:
        driver.stderr.close()
    done = registered(kb_path)
    assert 0 < done < total  # killed between batches' commits, not after the last one
    # readable, and every file the registry lists is whole in the store (the store commits first: a batch
    # killed between the two commits has chunks the registry does not list yet, ingested again next run)
    with KnowledgeBase.open(kb_path, read_only=True) as kb:
        assert cross_check(kb.store, kb.registry, full=True).complete
        assert kb.store.count() >= sum(r.n_nodes for r in kb.registry.all())
        assert kb.search("Who deciphered the hieroglyphs?", k=1) is not None
    with KnowledgeBase.open(kb_path) as kb:
        report = kb.ingest([docs], engine="ray", address=ray_cluster)
    # every file committed before the kill is unchanged, the rest are ingested. At least `done`: once
    # in CI the registry read 3 files right after the kill and the rerun found 4 committed (the
    # record in flight at the kill); which one it was does not matter to the guarantee.
    assert report.files_unchanged >= done and not report.skipped
    assert report.files_ingested + report.files_unchanged == total
    nodes, files = snapshot(kb_path)
    assert len(files) == total
    same_content((nodes, files), want, docs, plain_docs)
    same_vectors(kb_path, plain_docs.parent / "kb")
