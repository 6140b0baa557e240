"""Shell completion as docs/cli.md documents it: the ``_KVGRAPH_COMPLETE`` scripts for bash, zsh and fish,
click's ``COMP_WORDS``/``COMP_CWORD`` protocol, and the bash script completing in a real bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KVGRAPH = [sys.executable, "-m", "kvgraph.cli"]


def complete_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVGRAPH_")}
    env.update(HF_HUB_OFFLINE="1", **extra)
    return env


def source(shell: str) -> str:
    proc = subprocess.run(
        KVGRAPH, env=complete_env(_KVGRAPH_COMPLETE=f"{shell}_source"), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def candidates(words: str, cword: int) -> list[tuple[str, str]]:
    """(type, value) pairs kvgraph answers to bash's completion request for ``words``."""
    env = complete_env(_KVGRAPH_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword))
    proc = subprocess.run(KVGRAPH, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [tuple(line.split(",", 1)) for line in proc.stdout.splitlines()]  # type: ignore[misc]


def test_the_scripts_of_the_three_shells_name_kvgraph() -> None:
    bash = source("bash")
    assert "complete -o nosort -F _kvgraph_completion kvgraph" in bash
    assert "_KVGRAPH_COMPLETE=bash_complete" in bash
    assert "compdef _kvgraph_completion kvgraph" in source("zsh")
    assert "complete --no-files --command kvgraph" in source("fish")


def test_the_protocol_completes_commands_subcommands_options_and_choices() -> None:
    assert ("plain", "graph") in candidates("kvgraph gr", 1)
    assert [v for _, v in candidates("kvgraph gr", 1)] == ["graph"]
    assert ("plain", "import") in candidates("kvgraph graph im", 2)
    assert ("plain", "--mode") in candidates("kvgraph search --mo", 2)
    modes = {v for _, v in candidates("kvgraph search --mode ", 3)}
    assert {"dense", "sparse", "hybrid", "mmr", "graph"} <= modes
    assert ("plain", "--kb") in candidates("kvgraph --k", 1)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_the_bash_script_completes_a_subcommand_in_bash(tmp_path: Path) -> None:
    """The documented line, in bash, with kvgraph on PATH: the completion function fills COMPREPLY."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kvgraph").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kvgraph.cli "$@"\n')
    (bin_dir / "kvgraph").chmod(0o755)
    script = (
        'eval "$(_KVGRAPH_COMPLETE=bash_source kvgraph)"\n'
        "complete -p kvgraph\n"
        "COMP_WORDS=(kvgraph graph bu); COMP_CWORD=2\n"
        "_kvgraph_completion kvgraph\n"
        'printf "reply:%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = complete_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(["bash", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "complete -o nosort -F _kvgraph_completion kvgraph" in proc.stdout
    assert [line for line in proc.stdout.splitlines() if line.startswith("reply:")] == ["reply:build"]
