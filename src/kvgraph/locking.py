"""One writer process per store: an exclusive, non-blocking flock on a lock file.

The kernel releases the lock when the holder dies (also on kill -9), so a stale lock
never blocks anyone. The holder writes its pid and command name into the file so that a
refused writer can say who holds it; nothing else: a full command line can carry secrets
(``--param key=...``, tokens in URLs), so it is not recorded, and the file is readable by
its owner only (mode 0600).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

from kvgraph.errors import StoreLockedError

LOCK_MODE = 0o600


def command_name() -> str:
    """The running program's name (``kvgraph``, ``pytest``, ``myscript.py``): argv[0]'s basename only."""
    argv0 = sys.argv[0] if sys.argv else ""
    name = Path(argv0).name
    if name == "__main__.py":  # python -m package: the package's name says more
        name = Path(argv0).parent.name or name
    if not name or name.startswith("-"):  # python -c, an interactive session
        name = Path(sys.executable).name or "python"
    return name[:100]


class WriterLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), LOCK_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise StoreLockedError(
                f"{self.path.parent}: another process holds the writer lock ({holder}); "
                "open the store read-only, or stop that process"
            ) from None
        # A lock file left by an older version may be world-readable (0644): tighten it. Another
        # user's file cannot be changed, and it is theirs to keep.
        with contextlib.suppress(OSError):
            os.fchmod(fd, LOCK_MODE)
        info = {"pid": os.getpid(), "cmd": command_name()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    @staticmethod
    def _read_holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            pid, cmd = info.get("pid"), info.get("cmd")
        except (OSError, ValueError, AttributeError):
            return "holder unknown"
        if pid is None:
            return "holder unknown"
        # An older lock file holds a whole command line: show its program name only.
        name = Path(str(cmd).split(" ", 1)[0]).name if cmd else "?"
        return f"pid {pid}, {name}"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
