"""Expanding files and directories into the list of files to load.

Glob patterns follow .gitignore conventions, matched against the path relative to the
root that was given (with ``/`` separators):

* ``*`` and ``?`` stay within one path segment, ``**`` crosses segments (``docs/**/*.md``);
* a pattern without ``/`` matches at any depth (``*.md`` is ``**/*.md``);
* a pattern ending in ``/`` matches a directory and everything under it (``build/``).

Hidden files and directories (``.git``, ``.kvgraph``, ``.venv``...) are skipped, and
excluded directories are not descended into. Entries that are not regular files are
never opened: they are reported (see :func:`walk`) and left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from kvgraph.errors import InvalidInputError
from kvgraph.ingest.loaders.common import SUPPORTED_EXTENSIONS
from kvgraph.ingest.loaders.files import (
    DEFAULT_MAX_FILE_BYTES,
    SkippedFile,
    UnreadableFileError,
    check_file,
    display_path,
    file_key,
)

PathLike = str | bytes | os.PathLike[str]


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a .gitignore-style glob (see module docstring) to a full-match regex."""
    pat = pattern.replace("\\", "/").strip()
    if not pat or pat in ("/", "./"):
        raise InvalidInputError(f"empty glob pattern {pattern!r}")
    pat = pat.removeprefix("./")
    core = pat.rstrip("/")
    if "/" not in core:
        core = "**/" + core  # no slash (other than a trailing one): match at any depth
    if pat.endswith("/"):
        core += "/**"  # a directory: everything under it
    pat = core.lstrip("/")  # a leading slash only anchors the pattern to the root
    out: list[str] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("/**", i) and i + 3 == n:
            out.append("(?:/.*)?")  # "dir/**" also matches "dir" itself, so the directory can be pruned
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := pat.find("]", i + 2)) != -1:
            body = pat[i + 1 : end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body  # a literal caret in a glob class
            out.append(f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _matches(rel: str, patterns: list[str]) -> bool:
    return any(glob_regex(p).fullmatch(rel) for p in patterns)


def _as_list(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        return [Path(os.fsdecode(paths))]
    return [Path(os.fsdecode(p)) for p in paths]


def _skip(skipped: list[SkippedFile] | None, path: Path, reason: str) -> None:
    if skipped is not None:
        skipped.append(SkippedFile(display_path(path), reason))


def _walk_dir(
    root: Path,
    include: list[str] | None,
    exclude: list[str],
    include_hidden: bool,
    skipped: list[SkippedFile] | None,
    max_file_bytes: int | None,
) -> list[Path]:
    found: list[tuple[str, Path]] = []
    # An explicit stack instead of recursion: a tree thousands of levels deep is walked too.
    # Symlinked directories are not entered (that rules out cycles); symlinked files are.
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        here, prefix = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            _skip(skipped, here, f"cannot read directory: {exc.strerror or exc}")
            continue
        subdirs: list[tuple[Path, str]] = []
        for entry in entries:
            name = entry.name
            rel = prefix + name
            hidden = not include_hidden and name.startswith(".")
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                # Pruning here keeps hidden and excluded directories from being read at all.
                if not hidden and not _matches(rel, exclude):
                    subdirs.append((here / name, rel + "/"))
                continue
            if hidden:
                continue
            if include is not None:
                if not _matches(rel, include):
                    continue
            elif Path(name).suffix.lower() not in SUPPORTED_EXTENSIONS:
                continue
            if _matches(rel, exclude):
                continue
            if entry.is_symlink() and os.path.isdir(entry.path):
                continue  # a symlinked directory: not entered, as before
            try:
                check_file(here / name, max_file_bytes)
            except UnreadableFileError as exc:
                _skip(skipped, here / name, exc.reason)
                continue
            found.append((rel, here / name))
        stack.extend(sorted(subdirs, reverse=True))
    found.sort(key=lambda item: item[0])
    return [p for _, p in found]


def walk(
    paths: PathLike | Iterable[PathLike],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    *,
    include_hidden: bool = False,
    skipped: list[SkippedFile] | None = None,
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
) -> list[Path]:
    """The files to load under ``paths``, as absolute paths, in a deterministic order.

    Directories are expanded recursively, sorted by relative path. Inside directories,
    only supported file types are returned unless ``include`` is given, in which case
    the files matching ``include`` are returned whatever their type (the loader then
    reports unsupported ones). A file named directly is always returned unless it
    matches ``exclude`` (checked against its name). Raises InvalidInputError for a path
    that does not exist. Each file is returned once even if reached from two roots.

    Only regular files (or symlinks to them) of at most ``max_file_bytes`` are returned;
    nothing is opened to find out. Named pipes, devices, sockets, symlink loops, broken
    symlinks, unreadable directories and files over the limit are left out and, when a
    ``skipped`` list is given, appended to it with the reason.
    """
    exclude = list(exclude or [])
    include = list(include) if include is not None else None
    for pattern in [*exclude, *(include or [])]:
        glob_regex(pattern)  # reject bad patterns before walking anything
    result: list[Path] = []
    seen: set[str] = set()
    for given in _as_list(paths):
        root = given.expanduser().absolute()
        if root.is_dir():
            files = _walk_dir(root, include, exclude, include_hidden, skipped, max_file_bytes)
        elif os.path.lexists(root):
            files = []
            if not _matches(root.name, exclude):
                try:
                    check_file(root, max_file_bytes)
                    files = [root]
                except UnreadableFileError as exc:
                    _skip(skipped, root, exc.reason)
        else:
            raise InvalidInputError(f"{display_path(given)}: no such file or directory")
        for f in files:
            try:
                key = file_key(f)
            except UnreadableFileError as exc:  # replaced by a symlink loop since it was checked
                _skip(skipped, f, exc.reason)
                continue
            if key not in seen:
                seen.add(key)
                result.append(f)
    return result
