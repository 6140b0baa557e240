"""The embedding cache's one SQLite connection, shared by many threads (server readers, parallel asks)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from kvgraph.embed.cache import EmbeddingCache, text_key

THREADS, ROUNDS, BATCH = 8, 40, 20


def hammer(cache: EmbeddingCache) -> list[str]:
    """Every thread writes its own batches and reads them back at once; returns what went wrong."""
    problems: list[str] = []
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        start.wait()
        for r in range(ROUNDS):
            keys = [text_key(f"thread {t} round {r} text {i}") for i in range(BATCH)]
            vecs = [np.full(4, t * 1000 + r * 10 + i, dtype=np.float32) for i in range(BATCH)]
            cache.put_many("m", list(zip(keys, vecs)))
            got = cache.get_many("m", keys, 4)
            if len(got) != BATCH or any(not np.array_equal(got[k], v) for k, v in zip(keys, vecs)):
                problems.append(f"thread {t} round {r}: {len(got)} of {BATCH} read back")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return problems


def test_threads_never_interleave_transactions_or_lose_vectors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EmbeddingCache(tmp_path / "embed-cache.sqlite")
    with caplog.at_level(logging.WARNING, logger="kvgraph.embed.cache"):
        problems = hammer(cache)
    assert not problems, problems[:3]
    assert not [r.message for r in caplog.records], "the cache was bypassed for some batches"
    assert cache.count("m") == THREADS * ROUNDS * BATCH
    cache.close()


def test_without_the_lock_the_same_load_breaks(tmp_path: Path) -> None:
    """The test above can fail: with the lock taken away the same load interleaves transactions,
    loses vectors or crashes the process (run in a child, where a crash cannot take pytest down)."""
    code = (
        "import contextlib, logging, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_cache_threads import hammer\n"
        "from kvgraph.embed.cache import EmbeddingCache\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "cache = EmbeddingCache(sys.argv[1])\n"
        "cache._lock = contextlib.nullcontext()\n"
        "print('problems', len(hammer(cache)))\n"
    )
    outcomes = []
    for attempt in range(5):  # a race: it shows within a run or two, never seen to need five
        db = tmp_path / f"cache-{attempt}.sqlite"
        run = subprocess.run(
            [sys.executable, "-c", code, str(db), str(Path(__file__).parent)], capture_output=True, text=True
        )
        broke = run.returncode != 0 or "problems 0" not in run.stdout or "not used for this batch" in run.stderr
        outcomes.append((run.returncode, run.stdout.strip()[-40:]))
        if broke:
            return
    pytest.fail(f"five unlocked runs went through without a problem: {outcomes}")
