#!/usr/bin/env python
"""Re-run of the issue-12 audit (items 3 and 6): every failure kind, tried many times, classified.

Outcomes per trial:
  refused    the command stopped with exit 1 and exactly one ``error:`` line naming the file
  recovered  the command succeeded and said what it fixed (a warning), nothing lost
  crashed    a traceback or a signal
  silent     exit 0 with something lost or wrong and nothing said
Afterwards every trial checks that nothing committed was lost (``kvgraph check`` passes after the
way out the message names, and the knowledge base holds every file).

Needs root for the tmpfs (disk full). Run: .venv/bin/python bench/audit/integrity.py
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

PY = "/work/main/.venv/bin/python"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "KVGRAPH_EMBEDDER": "hashing"}
RESULTS: dict[str, Counter[str]] = defaultdict(Counter)
NOTES: dict[str, list[str]] = defaultdict(list)


def kv(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "kvgraph.cli", *args], capture_output=True, text=True, timeout=600, env=env or ENV)


def classify(run: subprocess.CompletedProcess[str], named: str) -> str:
    if run.returncode < 0 or "Traceback" in run.stderr:
        return "crashed"
    if run.returncode == 1:
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        return "refused" if len(errors) == 1 and named in errors[0] else "crashed"
    return "ok"


def docs(root: Path, n: int, rng: random.Random, words: int = 300) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = " ".join(f"w{rng.randrange(4000)}" for _ in range(words))
        (root / f"d{i:02d}.txt").write_text(f"Doc {i} unique{i}x. {body}.\n")
    return root


def intact(kb: Path, n_files: int) -> bool:
    check = kv("--kb", str(kb), "check")
    out = json.loads(kv("--kb", str(kb), "documents", "--json").stdout or "[]")
    files = out.get("results", []) if isinstance(out, dict) else out  # the JSON envelope (docs/cli.md)
    return check.returncode == 0 and len(files) == n_files


def fresh(tmp: Path, n: int = 6, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    d = docs(tmp / "docs", n, rng)
    kb = tmp / "kb"
    run = kv("--kb", str(kb), "ingest", str(d))
    if run.returncode:
        raise RuntimeError(f"setup ingest failed: {run.stderr[-800:]}")
    return kb, d


# ----------------------------------------------------------------------------- disk full


def disk_full(trials: int = 12) -> None:
    kind = "disk full (tmpfs, ingest)"
    for t in range(trials):
        mnt = Path(tempfile.mkdtemp(prefix="kvg-full-"))
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
        try:
            rng = random.Random(t)
            base = docs(Path(tempfile.mkdtemp()) / "base", 3, rng)
            more = docs(Path(tempfile.mkdtemp()) / "more", 10, rng, words=4000)
            kb = mnt / "kb"
            assert kv("--kb", str(kb), "ingest", str(base)).returncode == 0
            free = shutil.disk_usage(mnt).free
            leave = int(free * rng.uniform(0.0, 0.25))  # from a full disk to one with a quarter of its room left
            with open(mnt / "filler", "wb") as f:
                f.write(b"\0" * max(0, free - leave))
            run = kv("--kb", str(kb), "ingest", str(more))
            outcome = classify(run, "no space left")
            if outcome == "crashed":
                NOTES[kind].append(f"trial {t} CRASH: {run.stderr[-1500:]}")
            if outcome == "ok":
                outcome = "completed"
            (mnt / "filler").unlink()
            if not intact(kb, 3 + (10 if outcome == "completed" else 0)) and outcome != "refused":
                outcome = "silent"
            if outcome == "refused":  # the way out: free space, run it again
                again = kv("--kb", str(kb), "ingest", str(more))
                if again.returncode or not intact(kb, 13):
                    outcome = "silent"
                    NOTES[kind].append(f"trial {t}: lost data after the refusal: {again.stderr[-300:]}")
                else:
                    NOTES[kind].append(run.stderr.strip().splitlines()[-1][:160])
            RESULTS[kind][outcome] += 1
        finally:
            subprocess.run(["umount", str(mnt)], check=False)


# ----------------------------------------------------------------------------- the store


def store_lost(trials: int = 4) -> None:
    for how in ("records.sqlite emptied", "store/ deleted"):
        kind = f"{how}"
        for t in range(trials):
            tmp = Path(tempfile.mkdtemp())
            kb, d = fresh(tmp, seed=t)
            if how.startswith("records"):
                (kb / "store" / "records.sqlite").write_bytes(b"")
            else:
                shutil.rmtree(kb / "store")
            for cmd in (["search", "unique1x"], ["store", "check", str(kb / "store")], ["check"], ["ingest", str(d)]):
                run = kv("--kb", str(kb), *cmd) if cmd[0] != "store" else kv(*cmd)
                outcome = classify(run, "store" if cmd[0] != "check" else "")
                if cmd[0] == "check":
                    outcome = "refused" if run.returncode == 1 and "DAMAGED" in run.stdout else "silent"
                elif outcome == "ok":
                    said = "missing" in run.stderr
                    outcome = "recovered" if said and cmd[0] == "ingest" and intact(kb, 6) else "silent"
                RESULTS[kind][f"{cmd[0]}: {outcome}"] += 1
                if outcome == "crashed":
                    NOTES[kind].append(run.stderr[-400:])
            repaired = kv("--kb", str(kb), "repair")
            RESULTS[kind]["repair ok" if repaired.returncode == 0 and intact(kb, 6) else "repair FAILED"] += 1


def flipped_letter(trials: int = 20) -> None:
    kind = "flipped letter in records.sqlite"
    for t in range(trials):
        tmp = Path(tempfile.mkdtemp())
        kb, _ = fresh(tmp, seed=100 + t)
        rng = random.Random(t)
        db = sqlite3.connect(kb / "store" / "records.sqlite")
        rows = db.execute("SELECT id, text, metadata FROM nodes").fetchall()
        db.close()
        node_id, text, metadata = rng.choice(rows)
        field = text if rng.random() < 0.7 else metadata
        raw = (kb / "store" / "records.sqlite").read_bytes()
        for _ in range(50):  # a stretch of the field that occurs once in the file
            at = rng.randrange(0, max(1, len(field) - 12))
            needle = field[at : at + 12].encode()
            if raw.count(needle) == 1:
                break
        else:
            continue
        data = bytearray(raw)
        data[data.find(needle) + 3] ^= 0x01
        (kb / "store" / "records.sqlite").write_bytes(bytes(data))
        words = " ".join(text.split()[:6])
        search = kv("--kb", str(kb), "search", words, "--mode", "sparse", "-k", "3", "--json")
        s = classify(search, "checksum")
        if s == "crashed":
            NOTES[kind].append(search.stderr[-400:])
        if s == "ok":
            hits = json.loads(search.stdout)
            s = "silent" if any(h.get("id") == node_id for h in hits) else "not returned"
        RESULTS[kind][f"search: {s}"] += 1
        check = kv("store", "check", str(kb / "store"))
        RESULTS[kind][f"store check: {classify(check, node_id)}"] += 1
        full = kv("--kb", str(kb), "check")
        RESULTS[kind][
            "kvgraph check: " + ("refused" if full.returncode == 1 and node_id in full.stdout else "silent")
        ] += 1
        repaired = kv("--kb", str(kb), "repair")
        RESULTS[kind]["repair ok" if repaired.returncode == 0 and intact(kb, 6) else "repair FAILED"] += 1


def orphans(trials: int = 10) -> None:
    kind = "kill between store and registry commits (orphans)"
    killer = (
        "import os, signal, sys\n"
        "from kvgraph.ingest.registry import Registry\n"
        "Registry.put = lambda self, rec: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from kvgraph.cli.main import main\n"
        "sys.argv[0] = 'kvgraph'\n"
        "main()\n"
    )
    for t in range(trials):
        tmp = Path(tempfile.mkdtemp())
        kb, d = fresh(tmp, seed=200 + t)
        new = d / "a-new.txt"
        new.write_text(f"A new file {t} about driftwood and orphans.\n")
        run = subprocess.run([PY, "-c", killer, "--kb", str(kb), "sync"], env=ENV, capture_output=True, text=True)
        assert run.returncode < 0
        new.unlink()
        sync = kv("--kb", str(kb), "sync", "--json")
        report = json.loads(sync.stdout)
        ok = report["orphans_removed"] > 0 and report["warnings"] and intact(kb, 6)
        RESULTS[kind]["recovered" if ok else "silent"] += 1


# ----------------------------------------------------------------------------- registry, caches, graph


def damage_file(path: Path, how: str, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    if how == "garbage":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(len(data))))
    elif how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "header":
        data[:100] = b"\x00" * 100
        path.write_bytes(bytes(data))
    else:  # a flipped byte somewhere
        at = rng.randrange(len(data))
        data[at] ^= 0xFF
        path.write_bytes(bytes(data))


def leave_embedding_cache(path: Path) -> None:
    """An embedding cache with a few rows, as `kvgraph reembed` cut short or node references leave one."""
    from kvgraph.embed.cache import CachedEmbedder, EmbeddingCache
    from kvgraph.embed.hashing import HashingEmbedder

    cache = EmbeddingCache(path)
    CachedEmbedder(HashingEmbedder(64), cache).embed([f"cached text {i}" for i in range(50)])
    cache.close()


def damaged_parts(trials_per_way: int = 3) -> None:
    ways = ("garbage", "truncated", "empty", "header", "flip")
    for part, file, cmds in (
        ("documents.sqlite", "documents.sqlite", (["sync"], ["search", "unique1x"])),
        ("embed-cache.sqlite", "embed-cache.sqlite", (["ingest", "DOCS"], ["check"])),
        ("doc-graph/graph.npz", "doc-graph/graph.npz", (["search", "unique1x", "--mode", "graph"],)),
        ("doc-graph/graph.json", "doc-graph/graph.json", (["search", "unique1x", "--mode", "graph"],)),
    ):
        kind = f"damaged {part}"
        for way in ways:
            for t in range(trials_per_way):
                tmp = Path(tempfile.mkdtemp())
                kb, d = fresh(tmp, seed=300 + t)
                if part.startswith("doc-graph"):
                    assert kv("--kb", str(kb), "graph", "build").returncode == 0
                target = kb / file
                if part == "embed-cache.sqlite":  # only a re-embed cut short (or an older version) leaves one
                    leave_embedding_cache(target)
                for side in ("-wal", "-shm"):  # a checkpointed file: the damage is what is read
                    Path(str(target) + side).unlink(missing_ok=True)
                damage_file(target, way, random.Random(t))
                (d / "d00.txt").write_text("Doc 0 unique0x changed to make ingest embed again.\n")
                for cmd in cmds:
                    run = kv("--kb", str(kb), *[str(d) if c == "DOCS" else c for c in cmd])
                    outcome = classify(run, part.split("/")[0])
                    if cmd == ["check"] and run.returncode == 1 and part in run.stdout and "DAMAGED" in run.stdout:
                        outcome = "refused (check names it)"
                    if outcome == "ok":
                        if part == "embed-cache.sqlite" and cmd[0] == "ingest":
                            outcome = "ok (a plain ingest does not read it)"
                        elif part == "embed-cache.sqlite":  # check passed: nothing damaged it can see
                            outcome = "ok (undamaged part of the file)"
                        elif part == "documents.sqlite" and way == "empty":
                            outcome = (
                                "recovered" if "rebuilt from the store" in run.stderr or intact(kb, 6) else "silent"
                            )
                        else:
                            outcome = "ok (undamaged part of the file)"
                    RESULTS[kind][f"{way}: {outcome}"] += 1
                    if outcome in ("crashed", "silent"):
                        NOTES[kind].append(f"{way} {cmd}: {run.stderr[-400:]}")
                repaired = kv("--kb", str(kb), "repair")
                fine = repaired.returncode == 0 and kv("--kb", str(kb), "check").returncode == 0
                RESULTS[kind]["repair ok" if fine else "repair FAILED"] += 1
                if not fine:
                    NOTES[kind].append(f"{way}: {repaired.stdout[-300:]} {repaired.stderr[-300:]}")


def main() -> None:
    which = sys.argv[1:] or ["disk_full", "store_lost", "flipped_letter", "orphans", "damaged_parts"]
    tempfile.tempdir = tempfile.mkdtemp(prefix="kvg-audit-")  # every trial's folders, removed at the end
    for name in which:
        try:
            globals()[name]()
        except Exception as e:  # report what was measured, and why a phase stopped
            NOTES[name].append(f"phase stopped: {type(e).__name__}: {e}")
        print(name, "done", file=sys.stderr, flush=True)
    shutil.rmtree(tempfile.tempdir, ignore_errors=True)
    print(json.dumps({k: dict(v) for k, v in RESULTS.items()}, indent=1))
    print(json.dumps({k: v[:6] for k, v in NOTES.items()}, indent=1))


if __name__ == "__main__":
    main()
