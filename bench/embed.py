#!/usr/bin/env python
"""Embedding backends for all-MiniLM-L6-v2, compared on the same texts in the same run.

Backends (kvgraph's own embedder classes, with their default batch sizes):

  torch       SentenceTransformerEmbedder (sentence-transformers on torch; batch 32)
  onnx-fp32   OnnxEmbedder(quantization="fp32") (onnxruntime, fused graph; batch 8)
  onnx-int8   OnnxEmbedder() — kvgraph's default (int8 MatMul weights; one text per run)
  onnx-int8-b8  the same model with batch 8: checks the "one text per run is no slower" claim

Measured: throughput on ~256-token Llama 2 chunks and on short SQuAD questions, with 1
thread and with all cores; a fresh process's import + load + first embedding; cosine of
each ONNX variant to torch; retrieval on SQuAD dev (first 15 articles: question -> its
paragraph, exact dense top-k) — hit@1, hit@5, MRR@10 and top-1 agreement with torch.

Each measurement round starts one fresh process per backend (rotating the order), so that
one backend's thread pool never spins next to another's; throughput is the median over rounds.

    .venv/bin/python bench/embed.py                   # full run (~5 min on 2 cores)
    .venv/bin/python bench/embed.py --quick           # smoke test (~45 s)
    .venv/bin/python bench/embed.py --json bench/out/embed.json --png bench/out/embed.png

See bench/README.md ("Embedding").
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _tables import fmt, table

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_CACHE = BENCH_DIR / ".cache" / "kvgraph"
SQUAD_REL = Path("squad") / "dev-v1.1.from-explorer.json"
BACKENDS = ["torch", "onnx-fp32", "onnx-int8", "onnx-int8-b8"]
# Diagnostics, run only when named in --backends:
#   onnx-int8-nospin     kvgraph's int8 model with onnxruntime's intra-op thread spinning off
# (The "onnx-int8-fusedattn" variant measured in bench/README.md is kvgraph's default export since
# then, so `onnx-int8` measures it now.)
EXTRA_BACKENDS = ["onnx-int8-nospin"]
REFERENCE = "torch"
perf = time.perf_counter

try:
    import kvgraph  # noqa: F401
except ImportError:  # not installed in the venv: use the source tree
    sys.path.insert(0, str(REPO_ROOT / "src"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few texts and rounds: a smoke test")
    ap.add_argument("--datasets", default=None, help="datasets dir (default: $KVGRAPH_DATASETS or ../shared/datasets)")
    ap.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated subset of: " + ", ".join(BACKENDS + EXTRA_BACKENDS),
    )
    ap.add_argument("--rounds", type=int, default=None, help="measurement rounds (default 3; quick: 1)")
    ap.add_argument("--long", type=int, default=None, help="Llama 2 chunks of >= 224 tokens (default 96; quick: 16)")
    ap.add_argument("--short", type=int, default=None, help="SQuAD questions for throughput (default 1000; quick: 100)")
    ap.add_argument("--articles", type=int, default=None, help="SQuAD articles for retrieval (default 15; quick: 2)")
    ap.add_argument("--cold-runs", type=int, default=None, help="fresh processes per backend (default 5; quick: 2)")
    ap.add_argument("--threads", default=None, help="thread counts to measure (default: 1,<all cores>)")
    ap.add_argument(
        "--cache-dir", default=None, help=f"KVGRAPH_CACHE_DIR (default $KVGRAPH_CACHE_DIR or {DEFAULT_CACHE})"
    )
    ap.add_argument("--json", default=None, metavar="OUT", help="write raw results to this JSON file")
    ap.add_argument("--png", default=None, metavar="OUT", help="bar chart (matplotlib; default: out/embed.png)")
    ap.add_argument("--report-from", default=None, metavar="JSON", help="reprint the tables (and PNG) of a --json run")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--vectors", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    q = args.quick
    args.rounds = args.rounds or (1 if q else 3)
    args.long = args.long or (16 if q else 96)
    args.short = args.short or (100 if q else 1000)
    args.articles = args.articles or (2 if q else 15)
    args.cold_runs = args.cold_runs or (2 if q else 5)
    args.threads = [int(t) for t in (args.threads or f"1,{os.cpu_count() or 1}").split(",")]
    args.threads = list(dict.fromkeys(args.threads))
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in args.backends:
        if b not in BACKENDS + EXTRA_BACKENDS:
            ap.error(f"unknown backend {b!r}")
    return args


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def datasets_root(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get("KVGRAPH_DATASETS") or REPO_ROOT / ".." / "shared" / "datasets")


# ---------------------------------------------------------------- texts


def llama2_chunks(datasets: str | None, n: int, min_tokens: int = 224) -> list[str]:
    """Llama 2 chunks as kvgraph makes them (254 tokens max), keeping the nearly full ones."""
    from kvgraph.embed.onnx import OnnxEmbedder
    from kvgraph.eval.sources import llama2_pages
    from kvgraph.ingest.splitter import SentenceSplitter

    splitter = SentenceSplitter(OnnxEmbedder().token_counter(), 254, 32)
    nodes = splitter.split_many(llama2_pages(datasets_root(datasets)))
    return [nd.text for nd in nodes if nd.metadata["n_tokens"] >= min_tokens][:n]


def squad_subset(datasets: str | None, n_articles: int) -> dict[str, Any]:
    """Paragraphs of the first ``n_articles`` SQuAD dev articles, their questions and gold paragraph."""
    path = datasets_root(datasets) / SQUAD_REL
    data = json.loads(path.read_text(encoding="utf-8"))["data"][:n_articles]
    paras: list[str] = []
    questions: list[str] = []
    gold: list[int] = []
    for art in data:
        for para in art["paragraphs"]:
            for qa in para["qas"]:
                questions.append(qa["question"].strip())
                gold.append(len(paras))
            paras.append(para["context"])
    return {"articles": [a["title"] for a in data], "paragraphs": paras, "questions": questions, "gold": gold}


def count_tokens(texts: list[str]) -> list[int]:
    from kvgraph.embed.onnx import OnnxEmbedder

    return OnnxEmbedder().token_counter().count(texts)


# ---------------------------------------------------------------- worker side


def make_embedder(backend: str, threads: int) -> Any:
    if backend == "torch":
        import torch

        from kvgraph.embed.local import SentenceTransformerEmbedder

        torch.set_num_threads(threads)
        return SentenceTransformerEmbedder()
    from kvgraph.embed.onnx import OnnxEmbedder

    if backend == "onnx-fp32":
        return OnnxEmbedder(quantization="fp32", threads=threads)
    if backend == "onnx-int8":
        return OnnxEmbedder(quantization="int8", threads=threads)
    if backend == "onnx-int8-b8":
        return OnnxEmbedder(quantization="int8", threads=threads, batch_size=8)
    if backend == "onnx-int8-nospin":
        emb = OnnxEmbedder(quantization="int8", threads=threads)
        return _with_session(emb, emb.onnx_path(), spin=False)
    raise ValueError(backend)


def _with_session(emb: Any, model: Path, spin: bool = True) -> Any:
    """OnnxEmbedder._load's session settings, for another model file or with thread spinning off."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = emb.threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    emb._input_names = {i.name for i in session.get_inputs()}
    emb._session = session
    return emb


def batch_size(emb: Any) -> int:
    return int(getattr(emb, "batch_size", 0))


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker(args: argparse.Namespace) -> None:
    """One round for one backend: throughput per (threads, text set); optionally all vectors."""
    work = Path(args.work)
    texts = json.loads((work / "texts.json").read_text())
    backend = args.worker
    out: dict[str, Any] = {"backend": backend, "throughput": {}}
    emb = None
    for threads in args.threads:
        emb = make_embedder(backend, threads)
        emb.embed(["warm up"])  # load the model
        out["batch_size"] = batch_size(emb)
        for name in ("long", "short"):
            items = texts[name]
            emb.embed(items[:8])  # warm-up on this kind of text
            c0, t0 = cpu_s(), perf()
            emb.embed(items)
            wall, cpu = perf() - t0, cpu_s() - c0
            out["throughput"][f"{name}@{threads}"] = {"n": len(items), "seconds": wall, "cpu_s": cpu}
    if args.vectors:
        emb = make_embedder(backend, max(args.threads))
        for name in ("long", "short", "paragraphs", "questions"):
            np.save(work / f"{backend}-{name}.npy", emb.embed(texts[name]))
    (work / f"{backend}.json").write_text(json.dumps(out))


# ---------------------------------------------------------------- parent side


def child_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["KVGRAPH_CACHE_DIR"] = str(cache_dir)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    if str(REPO_ROOT / "src") in sys.path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def run_worker(backend: str, args: argparse.Namespace, work: Path, cache_dir: Path, vectors: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", backend, "--work", str(work)]
    cmd += ["--threads", ",".join(map(str, args.threads))]
    if vectors:
        cmd.append("--vectors")
    proc = subprocess.run(cmd, env=child_env(cache_dir), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} worker failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    res: dict[str, Any] = json.loads((work / f"{backend}.json").read_text())
    return res


COLD_CODE = """
import time, sys
t0 = time.perf_counter()
backend = sys.argv[1]
if backend == "torch":
    from kvgraph.embed.local import SentenceTransformerEmbedder as E
    kw = {}
else:
    from kvgraph.embed.onnx import OnnxEmbedder as E
    kw = {"quantization": "fp32" if backend == "onnx-fp32" else "int8"}
t1 = time.perf_counter()
e = E(**kw)
e.embed(["What is the capital of France?"])
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def cold_runs(args: argparse.Namespace, cache_dir: Path, backends: list[str]) -> dict[str, Any]:
    """A fresh process per run: import the backend, load the model, embed one question."""
    out: dict[str, Any] = {b: {"process_s": [], "import_s": [], "load_embed_s": []} for b in backends}
    for _ in range(args.cold_runs):
        for b in backends:
            t0 = perf()
            proc = subprocess.run(
                [sys.executable, "-c", COLD_CODE, b], env=child_env(cache_dir), capture_output=True, text=True
            )
            wall = perf() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"cold {b} failed:\n{proc.stderr[-2000:]}")
            imp, load = (float(x) for x in proc.stdout.split()[-2:])
            out[b]["process_s"].append(wall)
            out[b]["import_s"].append(imp)
            out[b]["load_embed_s"].append(load)
    return out


def warm_cache(cache_dir: Path, backends: list[str]) -> None:
    """Export the ONNX models once (int8 and fp32, and variants) so that no timed run pays for it."""
    code = (
        "from kvgraph.embed.onnx import OnnxEmbedder\n"
        "for q in ('int8', 'fp32'):\n"
        "    OnnxEmbedder(quantization=q).onnx_path()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=child_env(cache_dir), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ONNX export failed:\n{proc.stderr[-3000:]}")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def retrieval(paras: np.ndarray, questions: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    scores = questions @ paras.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    hits = top == gold[:, None]
    rank = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    rr = np.where(rank > 0, 1.0 / np.maximum(rank, 1), 0.0)
    return {
        "hit@1": float(hits[:, :1].any(axis=1).mean()),
        "hit@5": float(hits[:, :5].any(axis=1).mean()),
        "hit@10": float(hits.any(axis=1).mean()),
        "mrr@10": float(rr.mean()),
        "top1": top[:, 0].tolist(),
    }


def report(raw: dict[str, Any]) -> str:
    backends: list[str] = raw["backends"]
    thr = raw["throughput"]
    ref = REFERENCE if REFERENCE in backends else backends[0]
    parts = []
    info = raw["texts"]
    for name, label in (
        ("long", f"Llama 2 chunks (n={info['long_n']}, mean {info['long_tokens']:.0f} MiniLM tokens)"),
        ("short", f"SQuAD questions (n={info['short_n']}, mean {info['short_tokens']:.1f} tokens)"),
    ):
        parts.append(f"\n### Throughput, {label}: texts/s (median of {raw['rounds']} round(s))\n")
        headers = ["backend", "batch"]
        for t in raw["threads"]:
            headers += [f"{t} thread{'s' if t > 1 else ''}", f"vs {ref}"]
        headers.append(f"per CPU-s @{max(raw['threads'])}")
        rows = []
        for b in backends:
            row: list[Any] = [b, thr[b]["batch_size"]]
            for t in raw["threads"]:
                v, r = thr[b][f"{name}@{t}"]["per_s"], thr[ref][f"{name}@{t}"]["per_s"]
                row += [fmt(v, 1), f"{v / r:.2f}x"]
            row.append(fmt(thr[b][f"{name}@{max(raw['threads'])}"]["per_cpu_s"], 1))
            rows.append(row)
        parts.append(table(headers, rows))
    cold = raw["cold"]
    cref = ref if ref in cold else next(iter(cold))
    parts.append(f"\n### Fresh process: import + load + embed one question (median of {raw['cold_runs']} runs)\n")
    rows = []
    for b in cold:
        c = cold[b]
        rows.append(
            [
                b,
                f"{statistics.median(c['process_s']):.2f}",
                f"{statistics.median(c['import_s']):.2f}",
                f"{statistics.median(c['load_embed_s']):.2f}",
                f"{statistics.median(c['process_s']) / statistics.median(cold[cref]['process_s']):.2f}x",
            ]
        )
    parts.append(table(["backend", "process s", "import s", "load + 1st embed s", f"vs {cref}"], rows))
    q = raw["quality"]
    parts.append(
        f"\n### Agreement with {ref} and retrieval on SQuAD dev (first {len(raw['squad_articles'])} articles: "
        f"{raw['texts']['paragraphs_n']} paragraphs, {raw['texts']['questions_n']} questions)\n"
    )
    rows = []
    for b in backends:
        m = q[b]
        rows.append(
            [
                b,
                *(
                    f"{m[f'cos_{n}_mean']:.4f} / {m[f'cos_{n}_min']:.4f}" if b != ref else "-"
                    for n in ("long", "short")
                ),
                f"{m['hit@1']:.4f}",
                f"{m['hit@5']:.4f}",
                f"{m['mrr@10']:.4f}",
                f"{m['top1_agree']:.4f}" if b != ref else "-",
            ]
        )
    headers = [
        "backend",
        f"cos vs {ref}: chunks mean / min",
        "questions mean / min",
        "hit@1",
        "hit@5",
        "MRR@10",
        f"top-1 = {ref}'s",
    ]
    parts.append(table(headers, rows))
    if "int8_batch_consistency" in raw:
        c = raw["int8_batch_consistency"]
        parts.append(
            f"\nonnx-int8 batch 8 vs batch 1 (same model): cosine chunks mean {c['long_mean']:.4f} min "
            f"{c['long_min']:.4f}; questions mean {c['short_mean']:.4f} min {c['short_min']:.4f}"
        )
    return "\n".join(parts)


def maybe_png(raw: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    backends = raw["backends"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    for ax, name, title in (
        (axes[0][0], "long", f"Llama 2 chunks (~{raw['texts']['long_tokens']:.0f} tokens)"),
        (axes[0][1], "short", "SQuAD questions"),
    ):
        x = np.arange(len(backends))
        width = 0.8 / len(raw["threads"])
        for i, t in enumerate(raw["threads"]):
            vals = [raw["throughput"][b][f"{name}@{t}"]["per_s"] for b in backends]
            ax.bar(x + i * width, vals, width, label=f"{t} thread{'s' if t > 1 else ''}")
        ax.set_xticks(x + width * (len(raw["threads"]) - 1) / 2, backends, rotation=20, ha="right")
        ax.set_ylabel("texts/s")
        ax.set_title(title)
        ax.legend()
    fig.suptitle(f"all-MiniLM-L6-v2 on CPU ({os.cpu_count()} cores), {raw['date']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return str(path)


def src_digest() -> str:
    h = hashlib.sha256()
    for f in sorted((REPO_ROOT / "src" / "kvgraph").rglob("*.py")):
        h.update(str(f.relative_to(REPO_ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("onnxruntime", "torch", "sentence-transformers", "transformers", "tokenizers", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    if args.report_from:
        raw = json.loads(Path(args.report_from).read_text())
        print("\n".join(raw["header"]))
        print(report(raw))
        png = maybe_png(raw, Path(args.png) if args.png else BENCH_DIR / "out" / "embed.png")
        if png:
            log(f"wrote {png}")
        return
    cache_dir = Path(args.cache_dir or os.environ.get("KVGRAPH_CACHE_DIR") or DEFAULT_CACHE).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.environ["KVGRAPH_CACHE_DIR"] = str(cache_dir)
    t_all = perf()
    header = [
        f"kvgraph embedding benchmark, {_dt.date.today().isoformat()}",
        f"machine: {platform.machine()}, os.cpu_count()={os.cpu_count()}; threads measured: {args.threads} "
        "(torch.set_num_threads / onnxruntime intra_op_num_threads); load average at start: "
        + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + f"; kvgraph source {src_digest()}",
    ]
    print("\n".join(header), flush=True)
    log("exporting the ONNX models if needed (not timed)")
    warm_cache(cache_dir, args.backends)
    work = Path(tempfile.mkdtemp(prefix="kvgraph-embed-"))
    try:
        squad = squad_subset(args.datasets, args.articles)
        texts = {
            "long": llama2_chunks(args.datasets, args.long),
            "short": squad["questions"][: args.short],
            "paragraphs": squad["paragraphs"],
            "questions": squad["questions"],
        }
        (work / "texts.json").write_text(json.dumps(texts))
        raw: dict[str, Any] = {
            "header": header,
            "date": _dt.date.today().isoformat(),
            "args": vars(args),
            "backends": args.backends,
            "threads": args.threads,
            "rounds": args.rounds,
            "cold_runs": args.cold_runs,
            "squad_articles": squad["articles"],
            "texts": {
                "long_n": len(texts["long"]),
                "long_tokens": float(np.mean(count_tokens(texts["long"]))),
                "short_n": len(texts["short"]),
                "short_tokens": float(np.mean(count_tokens(texts["short"]))),
                "paragraphs_n": len(texts["paragraphs"]),
                "questions_n": len(texts["questions"]),
            },
        }
        rounds: dict[str, list[dict[str, Any]]] = {b: [] for b in args.backends}
        for r in range(args.rounds):
            order = args.backends[r % len(args.backends) :] + args.backends[: r % len(args.backends)]
            for b in order:
                log(f"round {r + 1}/{args.rounds}: {b}" + (" (+ vectors)" if r == 0 else ""))
                rounds[b].append(run_worker(b, args, work, cache_dir, vectors=r == 0))
        thr: dict[str, Any] = {}
        for b, rs in rounds.items():
            thr[b] = {"batch_size": rs[0]["batch_size"]}
            for key in rs[0]["throughput"]:
                ms = [x["throughput"][key] for x in rs]
                thr[b][key] = {
                    "per_s": statistics.median(m["n"] / m["seconds"] for m in ms),
                    "per_cpu_s": statistics.median(m["n"] / m["cpu_s"] for m in ms),
                    "seconds": [m["seconds"] for m in ms],
                }
        raw["throughput"] = thr
        log("cold processes")
        raw["cold"] = cold_runs(args, cache_dir, [b for b in args.backends if b in ("torch", "onnx-fp32", "onnx-int8")])
        vec = {b: {n: np.load(work / f"{b}-{n}.npy") for n in texts} for b in args.backends}
        gold = np.asarray(squad["gold"])
        ref = REFERENCE if REFERENCE in args.backends else args.backends[0]
        quality: dict[str, Any] = {}
        for b in args.backends:
            m = retrieval(vec[b]["paragraphs"], vec[b]["questions"], gold)
            for n in ("long", "short", "paragraphs"):
                c = cosines(vec[b][n], vec[ref][n])
                m[f"cos_{n}_mean"], m[f"cos_{n}_min"] = float(c.mean()), float(c.min())
            quality[b] = m
        ref_top1 = np.asarray(quality[ref]["top1"])
        for b in args.backends:
            quality[b]["top1_agree"] = float((np.asarray(quality[b]["top1"]) == ref_top1).mean())
            del quality[b]["top1"]
        raw["quality"] = quality
        if "onnx-int8" in vec and "onnx-int8-b8" in vec:
            c_long = cosines(vec["onnx-int8-b8"]["long"], vec["onnx-int8"]["long"])
            c_short = cosines(vec["onnx-int8-b8"]["short"], vec["onnx-int8"]["short"])
            raw["int8_batch_consistency"] = {
                "long_mean": float(c_long.mean()),
                "long_min": float(c_long.min()),
                "short_mean": float(c_short.mean()),
                "short_min": float(c_short.min()),
            }
        raw["total_s"] = perf() - t_all
        print(report(raw))
        print(
            f"\ntotal bench time {raw['total_s']:.0f}s; load average at end: "
            + " ".join(f"{x:.1f}" for x in os.getloadavg())
        )
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(raw, indent=1))
            log(f"wrote {args.json}")
        if args.png or not args.quick:  # a smoke test does not overwrite the chart of a full run
            png = maybe_png(raw, Path(args.png) if args.png else BENCH_DIR / "out" / "embed.png")
            if png:
                log(f"wrote {png}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
