"""Which directory entries may be read at all, how they are opened, and how their names are shown.

A folder given to ``kvgraph ingest`` may hold anything: named pipes (opening one blocks until
a writer appears), devices (``/dev/zero`` never ends), sockets, symlink loops, dangling
links, files of many gigabytes, and names that are not valid UTF-8. The rules here make
each of those a one-line skip reason instead of a hang or a traceback:

* an entry is stat-ed (following symlinks) before anything opens it, and only a regular
  file of at most ``max_file_bytes`` is accepted (:func:`check_file`);
* files are opened with ``O_NONBLOCK`` and checked again with ``fstat`` on the open
  descriptor (:func:`open_regular`), so a file swapped for a FIFO after the check still
  cannot block the reader;
* names that are not valid UTF-8 reach Python as surrogate escapes (PEP 383). They are
  loaded like any other file, but every text that leaves the loader (document ids,
  ``file_path`` metadata, registry keys, messages) uses :func:`display_path`, where each
  undecodable byte is written ``\\xNN`` and control characters are escaped too, so it can
  be stored in SQLite/JSON and printed to a terminal. :func:`path_from_display` maps such
  a name back to the file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kvgraph.errors import InvalidInputError

MIB = 1 << 20
DEFAULT_MAX_FILE_MB = 200
DEFAULT_MAX_FILE_BYTES = DEFAULT_MAX_FILE_MB * MIB

# Surrogate escapes of undecodable bytes (U+DC80..U+DCFF), any other lone surrogate, C0
# controls other than tab, DEL and C1 controls: written as \xNN (or \uNNNN) in displayed names.
_UNSAFE_CHARS = re.compile("[\ud800-\udfff\x00-\x08\x0a-\x1f\x7f-\x9f]")
_ESCAPE = re.compile(r"\\x([0-9a-f]{2})|\\u(d[89a-f][0-9a-f]{2})")


@dataclass
class SkippedFile:
    """A file that was not loaded, and why (``path`` as :func:`display_path` shows it)."""

    path: str
    reason: str


class UnreadableFileError(InvalidInputError):
    """A file could not be loaded; ``reason`` says why without repeating the path."""

    def __init__(self, path: object, reason: str) -> None:
        shown = display_path(path) if isinstance(path, (str, os.PathLike)) else str(path)
        super().__init__(f"{shown}: {reason}")
        self.path = shown
        self.reason = reason


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode escaped it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def display_path(path: str | os.PathLike[str]) -> str:
    """The path as valid, printable Unicode: undecodable bytes and control characters as ``\\xNN``.

    Names that are valid UTF-8 without control characters come back unchanged, so existing
    registry keys and document ids stay what they were.
    """
    text = os.fspath(path)
    return _UNSAFE_CHARS.sub(_escape, text) if _UNSAFE_CHARS.search(text) else text


def _unescape(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        byte = int(m.group(1), 16)
        return chr(0xDC00 + byte) if byte >= 0x80 else chr(byte)
    return chr(int(m.group(2), 16))


def path_from_display(text: str) -> Path:
    """The file a :func:`display_path` text names (the text itself when no such file exists)."""
    plain = Path(text)
    if "\\" not in text or os.path.lexists(plain):
        return plain
    candidate = Path(_ESCAPE.sub(_unescape, text))
    return candidate if os.path.lexists(candidate) else plain


def file_kind(mode: int) -> str:
    """What a non-regular stat mode is, in words."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _link_note(path: Path) -> str:
    try:
        return f"symlink to {display_path(os.readlink(path))}: " if path.is_symlink() else ""
    except OSError:
        return ""


def size_text(n: int) -> str:
    return f"{n / MIB:,.1f} MB" if n >= MIB // 10 else f"{n:,} bytes"


def check_file(path: Path, max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> os.stat_result:
    """Stat ``path`` (following symlinks) without opening it; raise UnreadableFileError unless it
    is a regular file of at most ``max_file_bytes`` (None: no limit)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFileError(path, "symlink loop (too many levels of symbolic links)") from None
        if exc.errno == errno.ENOENT and path.is_symlink():
            raise UnreadableFileError(path, f"{_link_note(path)}broken symlink (its target does not exist)") from None
        if exc.errno == errno.ENOENT:
            raise UnreadableFileError(path, "no such file") from None
        raise UnreadableFileError(path, f"cannot stat: {exc.strerror or exc}") from None
    except ValueError as exc:  # an embedded NUL byte in a name given by the caller
        raise UnreadableFileError(path, f"invalid file name ({exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFileError(path, f"{_link_note(path)}{file_kind(st.st_mode)}, not a regular file")
    if max_file_bytes is not None and st.st_size > max_file_bytes:
        raise UnreadableFileError(
            path,
            f"file is {size_text(st.st_size)}, over the per-file limit of {size_text(max_file_bytes)} "
            "(setting max_file_mb); raise max_file_mb to ingest it",
        )
    return st


def file_key(path: Path) -> str:
    """The resolved absolute path as display text: the file's key in the registry and its document id."""
    try:
        return display_path(path.resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop created after check_file
        raise UnreadableFileError(path, "symlink loop (too many levels of symbolic links)") from None


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading, never blocking on a FIFO or device that replaced it.

    ``O_NONBLOCK`` makes opening a named pipe return at once, and ``fstat`` on the open
    descriptor then refuses anything that is not a regular file.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFileError(path, "symlink loop (too many levels of symbolic links)") from None
        raise UnreadableFileError(path, f"cannot read file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFileError(path, f"{file_kind(st.st_mode)}, not a regular file")
        os.set_blocking(fd, True)  # a regular file: ordinary blocking reads from here on
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
