"""``kvgraph serve`` as a real process: it starts, answers, stops on Ctrl-C, and refuses what it must
with one line. ``kvgraph serve`` becomes ``python -m kvgraph.server``; their options must agree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from server_support import KEY, free_port

from kvgraph.cli import main
from kvgraph.kb import KnowledgeBase
from kvgraph.server.__main__ import parser


def kvgraph(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    if "KVGRAPH_API_KEY" not in (env or {}):
        environ.pop("KVGRAPH_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-m", "kvgraph", *args], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_serve_refuses_to_start_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    proc = kvgraph("--kb", str(tmp_path / "kb"), "serve", "--host", "0.0.0.0", "--port", "1")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1].startswith("error: --host 0.0.0.0 is reachable from other machines")
    assert "Traceback" not in err
    assert not (tmp_path / "kb").exists()  # refused before anything was created


def test_serve_refuses_a_knowledge_base_another_writer_holds(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb"):
        proc = kvgraph("--kb", str(tmp_path / "kb"), "serve", "--port", str(free_port()))
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "another process holds the writer lock" in err and "Traceback" not in err


def test_serve_answers_over_loopback_with_a_key_from_a_file_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    port = free_port()
    proc = kvgraph(
        "--kb", str(tmp_path / "kb"), "serve", "--port", str(port), "--api-key-file", str(key_file), "--readers", "1"
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/api/stats").status_code == 401
        ok = httpx.get(f"http://127.0.0.1:{port}/api/stats", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.json()["files"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "API key required" in err and KEY not in err and KEY not in out


def test_the_cli_and_the_server_module_take_the_same_options() -> None:
    own = [p for p in main.commands["serve"].params if not getattr(p, "hidden", False)]  # not the global options
    click_opts = {o for p in own for o in getattr(p, "opts", []) if o.startswith("--")}
    module_opts = {o for a in parser()._actions for o in a.option_strings if o.startswith("--")} - {"--help", "--kb"}
    assert click_opts - {"--help"} == module_opts
