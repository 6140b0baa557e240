"""``kvgraph demo`` as a new user runs it: from a built wheel, installed in a fresh virtual environment, in
an empty directory away from the repository; and the packaged sample PDF is what samples/make_pdf.py writes."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_DATA = REPO / "src" / "kvgraph" / "demo_data"


def test_make_pdf_writes_the_packaged_pdf(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_pdf", REPO / "samples" / "make_pdf.py")
    assert spec is not None and spec.loader is not None
    make_pdf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_pdf)
    assert make_pdf.OUT == DEMO_DATA / "docs" / "home-network-handbook.pdf"
    make_pdf.OUT = tmp_path / "handbook.pdf"
    make_pdf.main()
    assert make_pdf.OUT.read_bytes() == (DEMO_DATA / "docs" / "home-network-handbook.pdf").read_bytes()


def build_wheel(out: Path) -> Path:
    """The project's wheel, built offline from a copy of its sources (never the checkout's build/ folder)."""
    src = out / "src-copy"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("kvgraph-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> Path:
    """A fresh venv with only the wheel installed; its dependencies come from this environment's site-packages
    through a .pth file (fast and offline). Returns the venv's kvgraph program."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # a path line adds the folder only: the checkout's editable install (a .pth in that folder) is not run
    (Path(purelib) / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin" / "kvgraph"


def test_demo_runs_from_the_installed_wheel_in_an_empty_directory(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = sorted(n.removeprefix("kvgraph/demo_data/") for n in names if n.startswith("kvgraph/demo_data/"))
    expected = sorted(["questions.json", *(f"docs/{p.name}" for p in (DEMO_DATA / "docs").iterdir())])
    assert packaged == expected
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB, {len(names)} files")

    kvgraph = install(wheel, tmp_path / "venv")
    empty = tmp_path / "anywhere"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVGRAPH_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", KVGRAPH_DATASETS=str(empty / "no-datasets"), PATH=os.environ.get("PATH", ""))
    where = subprocess.run(
        [str(kvgraph.parent / "python"), "-c", "import kvgraph; print(kvgraph.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(tmp_path / "venv") in where  # the wheel's kvgraph, not the checkout's
    proc = subprocess.run(
        [str(kvgraph), "demo", "--questions", "2"], cwd=empty, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("Sources") == 2 and "[1] solar-maintenance.md" in proc.stdout
    assert "2/2 answers cite the expected document first" in proc.stdout
    assert (empty / ".kvgraph-demo" / "kvgraph.toml").is_file()
