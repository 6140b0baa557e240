"""Kill -9 during ingest and sync, at random instants: the next sync leaves nothing missing and no orphan.

Each round changes the folder (files edited, added and deleted), starts ``kvgraph ingest`` or
``kvgraph sync`` in a real process and SIGKILLs it at a random moment. Then an uninterrupted
``kvgraph sync`` must bring the knowledge base exactly in line with the folder, and
``kvgraph check`` must find nothing: no damaged file, no missing chunk, no orphan. A kill that
lands between the store's commit and the registry's leaves orphans or stale records behind;
the registry/store cross-check is what cleans them up.

``KVGRAPH_CRASH_ROUNDS`` (default 40) sets the number of kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kvgraph.kb import KnowledgeBase

ROUNDS = int(os.environ.get("KVGRAPH_CRASH_ROUNDS", "40"))
ENV = {**os.environ, "KVGRAPH_EMBEDDER": "hashing", "HF_HUB_OFFLINE": "1"}


def kvgraph(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvgraph.cli", *args], capture_output=True, text=True, timeout=300, env=ENV
    )


def write(path: Path, rng: random.Random) -> None:
    words = [f"w{rng.randrange(3000)}" for _ in range(rng.randrange(50, 900))]
    path.write_text(f"{path.stem} says " + " ".join(words) + ".\n")


def ingested(tmp_path: Path, n: int, rng: random.Random) -> tuple[Path, str]:
    """A folder of ``n`` text files and a knowledge base that ingested it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(n):
        write(docs / f"f{i:03d}.txt", rng)
    kb = str(tmp_path / "kb")
    assert kvgraph("--kb", kb, "ingest", str(docs)).returncode == 0
    return docs, kb


@pytest.mark.slow
def test_kills_during_ingest_and_sync_never_lose_or_orphan_chunks(tmp_path: Path) -> None:
    rng = random.Random(11)
    t0 = time.perf_counter()
    docs, kb = ingested(tmp_path, 25, rng)
    # kill at a random instant within what one run takes on this machine (start-up included), so
    # most rounds are killed mid-work however fast or loaded the machine is
    run_s = time.perf_counter() - t0
    next_name = 25
    stats = {"killed": 0, "finished": 0, "restored": 0, "orphans": 0}
    for _ in range(ROUNDS):
        files = sorted(docs.iterdir())
        for f in rng.sample(files, 6):
            write(f, rng)  # edited
        for f in rng.sample(files, 2):
            f.unlink()  # deleted
        for _ in range(3):
            write(docs / f"f{next_name:03d}.txt", rng)  # added
            next_name += 1
        args = ["--kb", kb, *(["sync"] if rng.random() < 0.5 else ["ingest", str(docs)])]
        proc = subprocess.Popen(
            [sys.executable, "-m", "kvgraph.cli", *args],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 0.9) * run_s)
        proc.send_signal(signal.SIGKILL)
        stats["killed" if proc.wait(60) < 0 else "finished"] += 1
        if rng.random() < 0.3:  # a file ingested by the killed run may vanish before the next sync
            victim = rng.choice(sorted(docs.iterdir()))
            victim.unlink()
        run = kvgraph("--kb", kb, "sync", "--json")
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        stats["restored"] += report["files_restored"]
        stats["orphans"] += report["orphans_removed"]
        check = kvgraph("--kb", kb, "check", "--json")
        assert check.returncode == 0, check.stdout
        with KnowledgeBase.open(kb, read_only=True) as k:
            on_disk = {str(p.resolve()) for p in docs.iterdir()}
            assert {r.path for r in k.registry.all()} == on_disk
            stored = k.store.doc_counts()
            assert set(stored) == on_disk  # every file's chunks, and nothing else
            for p in sorted(docs.iterdir())[:5]:  # and the chunks hold the file's current text
                first_words = p.read_text().split()[:6]
                text = " ".join(n.text for n in k.store.get_ref_doc(str(p.resolve())))
                assert " ".join(first_words) in text
    print(f"rounds {ROUNDS}: {stats}")
    assert stats["killed"] >= ROUNDS // 3


KILL_AT_REGISTRY = """
import os, signal, sys
from kvgraph.ingest.registry import Registry
def die(self, rec):  # the exact instant: the store has committed the file's chunks, the registry not yet
    os.kill(os.getpid(), signal.SIGKILL)
Registry.put = die
from kvgraph.cli.main import main
sys.argv[0] = "kvgraph"
main()
"""


def test_a_kill_between_the_store_and_registry_commits_leaves_nothing_behind(tmp_path: Path) -> None:
    rng = random.Random(3)
    docs, kb = ingested(tmp_path, 3, rng)
    new = docs / "a-new.txt"  # sorted first: the kill comes right after its chunks are stored
    write(new, rng)
    write(docs / "f001.txt", rng)  # changed too; the killed run never got to it
    run = subprocess.run(
        [sys.executable, "-c", KILL_AT_REGISTRY, "--kb", kb, "sync"], env=ENV, capture_output=True, timeout=120
    )
    assert run.returncode == -signal.SIGKILL
    new.unlink()  # the new file's chunks are in the store, unknown to the registry: orphans
    report = json.loads(kvgraph("--kb", kb, "sync", "--json").stdout)
    assert report["orphans_removed"] >= 1 and any("orphan" in w for w in report["warnings"])
    assert report["files_ingested"] == 1  # f1.txt: its registry record was the old one
    assert kvgraph("--kb", kb, "check").returncode == 0
    with KnowledgeBase.open(kb, read_only=True) as k:
        assert set(k.store.doc_counts()) == {str(p.resolve()) for p in docs.iterdir()}
