"""`kvgraph reembed`: every node re-embedded beside the old store and switched in atomically.

The crash test kills a real re-embedding process (SIGKILL) while it embeds and between the
renames of the switch, then opens the knowledge base: it must be wholly the old one or wholly
the new one (settings, stored model, vectors, document graph), and searchable.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import kvgraph.kb.reembed as reembed_module
from kvgraph.docgraph.adjacency_file import adjacency_files
from kvgraph.embed.onnx import OnnxEmbedder
from kvgraph.errors import StoreLockedError
from kvgraph.ingest.context import embedding_text
from kvgraph.kb import KnowledgeBase
from kvgraph.kb.reembed import COMMIT_FILE, STAGING_DIR, normalize_spec, recover
from kvgraph.schema import Document
from kvgraph.store import EmbeddedVectorStore

WORKER = Path(__file__).with_name("_reembed_worker.py")
INT8, FP32 = "all-MiniLM-L6-v2@onnx-int8-v2", "all-MiniLM-L6-v2@onnx-fp32-v2"
TOPICS = ["compost", "bees", "routers", "bridges", "volcanoes", "tea", "glaciers", "violins"]


def documents(n: int = 24) -> list[Document]:
    return [
        Document(
            f"doc{i}",
            f"Notes on {TOPICS[i % len(TOPICS)]}, part {i}. "
            f"The {TOPICS[i % len(TOPICS)]} section {i} explains how it works and why it matters to people. "
            f"Item {i} closes with a summary of {TOPICS[(i + 3) % len(TOPICS)]}.",
            {"title": f"Part {i}"},
        )
        for i in range(n)
    ]


def make_kb(path: Path, graph: bool = False) -> int:
    with KnowledgeBase.open(path) as kb:
        kb.add_documents(documents())
        if graph:
            kb.graph.build()
        return kb.store.count()


def check_whole(path: Path, n: int) -> str:
    """The knowledge base at ``path`` is entirely on one model; returns that model's name."""
    with KnowledgeBase.open(path) as kb:  # writable: finishes or discards an interrupted switch
        assert not (path / STAGING_DIR).exists()
        model = kb.store.get_meta("embedding_model")
        assert model in (INT8, FP32)
        expected = {INT8: "onnx-int8", FP32: "onnx-fp32"}[model]
        assert kb.settings.embedder == expected  # settings and vectors switched together
        assert kb.store.count() == n
        ids = kb.store.ids()
        nodes = [x for x in kb.store.get(ids[:: max(1, len(ids) // 4)]) if x is not None]
        fresh = OnnxEmbedder(quantization=expected.split("-")[1]).embed([embedding_text(x) for x in nodes])
        stored = np.stack([np.asarray(x.embedding) / np.linalg.norm(x.embedding) for x in nodes])
        assert np.all((fresh * stored).sum(axis=1) > 0.9999)  # the stored vectors are this model's
        hits = kb.search("how do bees work", k=3)
        assert hits and "bees" in hits[0].node.text
        if (path / "doc-graph" / "graph.json").exists():
            params = json.loads((path / "doc-graph" / "graph.json").read_text())["meta"]["params"]
            assert params["entity_embedder"] == model
    return str(model)


def test_reembed_switches_store_settings_and_document_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kvgraph.docgraph.adjacency_file.MIN_EDGES", 0)  # a file even for this small graph
    path = tmp_path / "kb"
    n = make_kb(path, graph=True)
    assert adjacency_files(path / "doc-graph")  # the full build's (docgraph/adjacency_file.py)
    seen: list[tuple[int, int]] = []
    with KnowledgeBase.open(path) as kb:
        report = kb.reembed("onnx-fp32", progress=lambda d, t: seen.append((d, t)))
        # the re-embedded graph names no saved adjacency: the old one (other edges) is gone
        assert adjacency_files(path / "doc-graph") == []
        assert report["old_model"] == INT8 and report["new_model"] == FP32 and report["nodes"] == n
        assert report["doc_graph_rebuilt"] and seen[-1] == (n, n)
        assert kb.store.get_meta("embedding_model") == FP32 and kb.settings.embedder == "onnx-fp32"
        assert kb.search("glaciers", k=1)  # the open handle works on the new store
        assert kb.search("glaciers", k=1, mode="graph")
        again = kb.reembed("onnx-fp32")
        assert not again["changed"]  # already on that model: nothing rebuilt
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("reembed")) == ["reembed.lock"]
    assert not list(path.glob("embed-cache.sqlite*"))  # the re-embed's own cache: its vectors are in the store
    assert check_whole(path, n) == FP32
    with EmbeddedVectorStore.open(path / "store", read_only=True) as store:
        assert json.loads(store.get_meta("chunking") or "{}")["references"] == "none"  # node layout kept


def test_reembed_refuses_while_another_writer_holds_the_knowledge_base(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    n = make_kb(path)
    with KnowledgeBase.open(path), pytest.raises(StoreLockedError, match="writer lock"):  # as an ingest would
        reembed_module.reembed(path, "onnx-fp32")
    assert check_whole(path, n) == INT8


def test_an_uncommitted_staging_folder_is_discarded_and_a_committed_one_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kb"
    n = make_kb(path)
    # uncommitted: a half-built new store
    (path / STAGING_DIR / "store").mkdir(parents=True)
    assert recover(path, read_only=True) is None and (path / STAGING_DIR).exists()  # readers leave it
    with KnowledgeBase.open(path, read_only=True) as kb:
        assert kb.search("tea", k=1)
    assert recover(path) == "discarded" and not (path / STAGING_DIR).exists()
    # committed, then the process died after moving the old store away and before moving the new one in
    monkeypatch.setattr(reembed_module, "_roll_forward", lambda kb, staging: None)
    with KnowledgeBase.open(path) as kb:
        kb.reembed("onnx-fp32")
    monkeypatch.undo()
    assert (path / STAGING_DIR / COMMIT_FILE).exists()
    (path / "store").rename(path / STAGING_DIR / "old-store")
    with KnowledgeBase.open(path, read_only=True) as kb:  # a reader finishes the switch first
        assert kb.store.get_meta("embedding_model") == FP32 and kb.settings.embedder == "onnx-fp32"
    assert check_whole(path, n) == FP32


def test_an_error_in_the_middle_of_the_switch_is_finished_by_the_same_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kb"
    n = make_kb(path)
    real_rename = reembed_module.os.rename
    calls: list[str] = []

    def fail_once(src: str, dst: str) -> None:
        calls.append(Path(dst).name)
        if len(calls) == 2:
            raise OSError("disk went away")
        real_rename(src, dst)

    monkeypatch.setattr(reembed_module.os, "rename", fail_once)
    with KnowledgeBase.open(path) as kb:
        with pytest.raises(OSError, match="disk went away"):
            kb.reembed("onnx-fp32")
        assert calls == ["old-store", "store", "store"]  # the cleanup finished what the error stopped
        assert kb.store.get_meta("embedding_model") == FP32
    assert check_whole(path, n) == FP32


def test_specs_with_directories_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert normalize_spec("model") == f"onnx-int8:{tmp_path / 'model'}"
    assert normalize_spec("onnx-fp32:model") == f"onnx-fp32:{tmp_path / 'model'}"
    assert normalize_spec("onnx-fp32") == "onnx-fp32"


class Child:
    def __init__(self, args: list[str], err: Path) -> None:
        self._err = open(err, "wb")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=self._err, text=True
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.strip())
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<eof>")
            self._cond.notify_all()

    def wait_for(self, prefix: str, nth: int = 1, timeout: float = 180) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if sum(1 for ln in self.lines if ln.startswith(prefix)) >= nth:
                    return True
                if "<eof>" in self.lines:
                    return False
                assert time.monotonic() < deadline, f"worker silent: {self.lines[-5:]}"
                self._cond.wait(1)

    def finish(self, kill: bool) -> int:
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(120)
        self._err.close()
        return rc


@pytest.mark.slow  # a dozen real processes, each loading the model
def test_a_killed_reembed_leaves_the_old_or_the_new_knowledge_base(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    n = make_kb(path, graph=True)
    rnd = random.Random(7)
    # where the kill lands: while embedding, at each rename of the switch, or not at all
    plan = ["embedding", "step", "step", "step", "step", "step", "embedding", "finish"]
    outcomes: list[tuple[str, str, str]] = []
    for i, where in enumerate(plan):
        before = check_whole(path, n)
        target = "onnx-fp32" if before == INT8 else "onnx-int8"
        child = Child([str(path), target, "0.3"], tmp_path / f"err-{i}.txt")
        assert child.wait_for("ready")
        if where == "embedding":
            child.wait_for("embedded", nth=rnd.randint(1, 2))
        elif where == "step":
            child.wait_for("step", nth=rnd.randint(1, 4))
            time.sleep(rnd.uniform(0.0, 0.25))
        rc = child.finish(kill=where != "finish")
        assert rc in (0, -signal.SIGKILL), (tmp_path / f"err-{i}.txt").read_text()[-2000:]
        after = check_whole(path, n)
        outcomes.append((where, before, after))
        if where == "finish":
            assert after != before
    # the kills landed on both sides of the commit point: some rounds kept the old model, some the new
    killed = [(b, a) for where, b, a in outcomes if where != "finish"]
    assert any(a == b for b, a in killed) and any(a != b for b, a in killed), outcomes
