"""The writer lock file names its holder (pid and program name) and nothing else, readable by its owner only.

A real second process holds the lock with a command line full of secrets; what it leaves in
the file, and what a refused writer is told, must carry none of them.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvgraph.errors import StoreLockedError
from kvgraph.locking import WriterLock, command_name

SECRET = "sk-live-4f9a8b7c6d5e"

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kvgraph.locking import WriterLock
    path = Path(sys.argv[1])
    # what a real invocation looks like: a key in a --param and in a URL
    sys.argv = ["/usr/local/bin/kvgraph", "ingest", "--param", "api_key={secret}",
                "--llm-base-url", "http://user:{secret}@host/v1"]
    lock = WriterLock(path)
    lock.acquire()
    print("ready", flush=True)
    sys.stdin.readline()
    lock.release()
    """
).format(secret=SECRET)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    path = tmp_path / "LOCK"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    try:
        yield path, proc
    finally:
        proc.communicate("\n", timeout=60)


def test_lock_file_holds_pid_and_program_name_only(held: tuple[Path, subprocess.Popen[str]]) -> None:
    path, proc = held
    content = path.read_text()
    assert json.loads(content) == {"pid": proc.pid, "cmd": "kvgraph"}
    assert SECRET not in content
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_refused_writer_is_told_who_holds_the_lock(held: tuple[Path, subprocess.Popen[str]]) -> None:
    path, proc = held
    with pytest.raises(StoreLockedError) as info:
        WriterLock(path).acquire()
    message = str(info.value)
    assert f"pid {proc.pid}, kvgraph" in message
    assert SECRET not in message and "api_key" not in message


def test_old_world_readable_lock_file_is_tightened_and_its_command_line_not_repeated(tmp_path: Path) -> None:
    path = tmp_path / "LOCK"
    old = {"pid": 1, "host": "h", "cmd": f"/usr/bin/kvgraph ingest --param key={SECRET}", "since": "2024"}
    path.write_text(json.dumps(old))
    path.chmod(0o644)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert WriterLock._read_holder(fd) == "pid 1, kvgraph"
    finally:
        os.close(fd)
    lock = WriterLock(path)
    lock.acquire()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert SECRET not in path.read_text()
    finally:
        lock.release()


def test_command_name_is_a_basename(monkeypatch: pytest.MonkeyPatch) -> None:
    for argv0, name in [
        ("/usr/local/bin/kvgraph", "kvgraph"),
        ("/x/site-packages/kvgraph/__main__.py", "kvgraph"),
        ("scripts/job.py", "job.py"),
        ("-c", Path(sys.executable).name),
    ]:
        monkeypatch.setattr(sys, "argv", [argv0, "--token", SECRET])
        assert command_name() == name
