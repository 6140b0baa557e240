#!/usr/bin/env python
"""Peak memory of ingesting one big text file, against the file's size: kvgraph vs LlamaIndex.

Every run is a fresh subprocess; its peak resident set size (``ru_maxrss`` from ``wait4``)
is the figure, together with wall time, chunks and the longest chunk in characters.

Competitors (each run on the same generated file):

  kvgraph        the Ingestor of ``kvgraph ingest`` (walk, checks, streaming loader,
                 SentenceSplitter at 254 all-MiniLM-L6-v2 tokens / 32 overlap, durable
                 store + registry). Vectors come from a hash of the chunk text instead of the
                 model, so 100 MB runs in minutes on 2 cores; the tokenizer is the real one.
                 Past 50,000 chunks the store builds its HNSW index in the background, as in
                 real use (--no-ann leaves it out, to show the ingest path alone).
  kvgraph-cli    ``kvgraph --kb DIR ingest FILE`` as a user runs it: the real ONNX int8 model
                 too (~20 chunks/s here, so only up to --cli-max MB).
  kvgraph-src    the same as ``kvgraph`` with another source tree first on PYTHONPATH (--src DIR,
                 e.g. an older checkout made with ``git archive``), to show a change's effect.
  llamaindex     SimpleDirectoryReader(input_files=[FILE]).load_data() -> SentenceSplitter(254, 32,
                 tokenizer = the same MiniLM tokenizer) -> the same hashed vectors -> SimpleVectorStore
                 -> persist(). Up to --llama-max MB.

File shapes (--shapes): ``paragraphs`` (English-like sentences in paragraphs, the normal case),
``one-line`` (the same words on a single line, no line break at all), ``one-word`` (one
"word" of letters without any space: a base64 blob, a minified file).

    .venv/bin/python bench/ingest_memory.py                          # 1, 10, 100 MB paragraphs (~15 min)
    .venv/bin/python bench/ingest_memory.py --sizes 1 --quick        # smoke test
    .venv/bin/python bench/ingest_memory.py --sizes 50 --shapes one-line,one-word --competitors kvgraph
    git archive HEAD~1 src | tar -x -C /tmp/old && \\
    .venv/bin/python bench/ingest_memory.py --src /tmp/old/src --competitors kvgraph,kvgraph-src
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CHUNK, OVERLAP = 254, 32
COMPETITORS = ("kvgraph", "kvgraph-cli", "kvgraph-src", "llamaindex")
_VOCABULARY = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so no will more can about said model data "
    "retrieval graph vector index memory file chunk token embedding store query answer question system paper "
    "results training safety language large evaluation method performance human reward policy"
)
WORDS = _VOCABULARY.split()


# ----------------------------------------------------------------------------------- the data


def make_file(path: Path, mb: int, shape: str, seed: int = 7) -> None:
    """``mb`` MiB of text of the given shape, deterministic, written in blocks (never held whole)."""
    rng = random.Random(seed)
    target = mb << 20
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            if shape == "one-word":
                block = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(1 << 16))
            else:
                sentences = []
                for _ in range(rng.randint(3, 8)):
                    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 25))]
                    sentences.append(" ".join(words).capitalize() + ".")
                block = " ".join(sentences) + (" " if shape == "one-line" else "\n\n")
            block = block[: target - written]
            f.write(block)
            written += len(block)


# ----------------------------------------------------------------------------------- children


def hashed_vectors(texts: list[str], dim: int = 384) -> Any:
    import numpy as np

    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        out[i] = np.random.default_rng(zlib.crc32(text.encode("utf-8", "surrogatepass"))).standard_normal(dim)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def child_kvgraph(file: Path, work: Path) -> dict[str, Any]:
    from kvgraph.embed.onnx import OnnxEmbedder
    from kvgraph.ingest.pipeline import Ingestor
    from kvgraph.ingest.registry import Registry
    from kvgraph.ingest.splitter import SentenceSplitter
    from kvgraph.store import EmbeddedVectorStore

    counter = OnnxEmbedder().token_counter()  # the real MiniLM tokenizer; the model is never loaded

    class HashedVectors:
        model_name = "hashed-vectors"
        dim = 384

        def embed(self, texts: list[str]) -> Any:
            return hashed_vectors(list(texts))

        def token_counter(self) -> Any:
            return counter

    stats = {"chunks": 0, "max_chunk_chars": 0}

    class Measured(SentenceSplitter):
        def split_many(self, docs: Any) -> Any:
            nodes = super().split_many(docs)
            stats["chunks"] += len(nodes)
            stats["max_chunk_chars"] = max([stats["max_chunk_chars"], *(len(n.text) for n in nodes)])
            return nodes

    # --no-ann: no background HNSW index (built by default once 50,000 chunks are stored), to show
    # the ingest path alone; the index's memory grows with the store, not with the file.
    no_ann = {"ann_threshold": 10**12} if os.environ.get("KVG_BENCH_NO_ANN") else {}
    store = EmbeddedVectorStore.open(work / "store", **no_ann)
    registry = Registry(work / "documents.sqlite")
    ingestor = Ingestor(store, registry, HashedVectors(), Measured(counter, CHUNK, OVERLAP))  # type: ignore[arg-type]
    report = ingestor.ingest_paths([file])
    store.close()
    registry.close()
    return {**stats, "skipped": [s.reason for s in report.skipped]}


def child_llamaindex(file: Path, work: Path) -> dict[str, Any]:
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.vector_stores import SimpleVectorStore
    from tokenizers import Tokenizer

    from kvgraph.embed.onnx import OnnxEmbedder

    tok = Tokenizer.from_file(str(OnnxEmbedder().model_dir / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()

    def tokenize(text: str) -> list[int]:
        return list(tok.encode(text, add_special_tokens=False).ids)

    docs = SimpleDirectoryReader(input_files=[str(file)]).load_data()
    splitter = SentenceSplitter(chunk_size=CHUNK, chunk_overlap=OVERLAP, tokenizer=tokenize)
    nodes = splitter.get_nodes_from_documents(docs)
    for start in range(0, len(nodes), 64):
        part = nodes[start : start + 64]
        for node, vec in zip(part, hashed_vectors([n.get_content() for n in part])):
            node.embedding = vec.tolist()
    store = SimpleVectorStore()
    store.add(nodes)
    store.persist(str(work / "vector_store.json"))
    return {"chunks": len(nodes), "max_chunk_chars": max((len(n.get_content()) for n in nodes), default=0)}


def run_child(competitor: str, file: Path, src: str | None, timeout: float, limit_mb: int) -> dict[str, Any]:
    """Run one competitor in a fresh process; its peak RSS comes from wait4.

    The child's address space is capped at ``limit_mb`` (RLIMIT_AS) so that a runaway run fails
    with MemoryError instead of pushing a shared machine into swap.
    """
    work = Path(tempfile.mkdtemp(prefix="kvg-mem-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    if competitor == "kvgraph-cli":
        kvgraph = shutil.which("kvgraph", path=str(Path(sys.executable).parent)) or "kvgraph"
        cmd = [kvgraph, "--kb", str(work / "kb"), "ingest", str(file)]
    else:
        cmd = [sys.executable, __file__, "--child", competitor, str(file), str(work)]
        if competitor == "kvgraph-src":
            if not src:
                raise SystemExit("kvgraph-src needs --src DIR")
            env["PYTHONPATH"] = os.pathsep.join([src, str(REPO_ROOT / "src")])
    t0 = time.perf_counter()

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=cap if limit_mb else None
    )
    deadline = t0 + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {"peak_rss_mb": usage.ru_maxrss / 1024, "seconds": seconds}
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        result["error"] = f"exit {code}" + (" (timeout)" if seconds >= timeout else "") + f": {err.strip()[-300:]}"
        return result
    if competitor == "kvgraph-cli":
        result["report"] = out.strip().splitlines()[0] if out.strip() else ""
    else:
        result.update(json.loads(out.strip().splitlines()[-1]))
    return result


# ----------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,10,100", help="file sizes in MiB (default 1,10,100)")
    ap.add_argument("--shapes", default="paragraphs", help="paragraphs, one-line, one-word (comma-separated)")
    ap.add_argument("--competitors", default="kvgraph,kvgraph-cli,llamaindex", help=f"subset of {COMPETITORS}")
    ap.add_argument("--cli-max", type=int, default=1, help="largest MiB for kvgraph-cli (the real model: slow)")
    ap.add_argument("--llama-max", type=int, default=10, help="largest MiB for LlamaIndex")
    ap.add_argument("--src", help="source tree for kvgraph-src (put first on PYTHONPATH)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run before it is killed")
    ap.add_argument("--limit-mb", type=int, default=8192, help="address-space cap per run in MiB (0: none)")
    ap.add_argument("--no-ann", action="store_true", help="kvgraph: no background HNSW index (the ingest path alone)")
    ap.add_argument("--quick", action="store_true", help="1 MiB paragraphs, kvgraph and LlamaIndex only")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--child", nargs=3, metavar=("COMPETITOR", "FILE", "WORK"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        competitor, file, work = args.child
        fn = child_llamaindex if competitor == "llamaindex" else child_kvgraph
        print(json.dumps(fn(Path(file), Path(work))))
        return
    if args.no_ann:
        os.environ["KVG_BENCH_NO_ANN"] = "1"
    if args.quick:
        args.sizes, args.shapes, args.competitors = "1", "paragraphs", "kvgraph,llamaindex"
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = args.shapes.split(",")
    competitors = args.competitors.split(",")
    unknown = set(competitors) - set(COMPETITORS)
    if unknown:
        raise SystemExit(f"unknown competitors {sorted(unknown)}; choose from {COMPETITORS}")
    rows: list[dict[str, Any]] = []
    data_dir = Path(tempfile.mkdtemp(prefix="kvg-mem-data-"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; peak RSS of a fresh process per run")
    print(
        f"{'shape':<11} {'MiB':>5} {'competitor':<12} {'peak RSS MB':>11} {'RSS/file':>8} {'s':>8} "
        f"{'chunks':>8} {'max chunk chars':>15}"
    )
    try:
        for shape in shapes:
            for mb in sizes:
                file = data_dir / f"{shape}-{mb}mb.txt"
                make_file(file, mb, shape)
                for competitor in competitors:
                    if competitor == "kvgraph-cli" and mb > args.cli_max:
                        continue
                    if competitor == "llamaindex" and mb > args.llama_max:
                        continue
                    r = run_child(competitor, file, args.src, args.timeout, args.limit_mb)
                    row = {"shape": shape, "mb": mb, "competitor": competitor, **r}
                    rows.append(row)
                    ratio = r["peak_rss_mb"] / mb
                    tail = r.get("error") or f"{r.get('chunks', '-'):>8} {r.get('max_chunk_chars', '-'):>15}"
                    print(
                        f"{shape:<11} {mb:>5} {competitor:<12} {r['peak_rss_mb']:>11.0f} {ratio:>7.1f}x "
                        f"{r['seconds']:>8.1f} {tail}",
                        flush=True,
                    )
                    if args.json:
                        Path(args.json).write_text(json.dumps(rows, indent=1))
                file.unlink()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
