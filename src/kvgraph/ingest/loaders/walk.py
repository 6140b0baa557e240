"""Expanding files and directories into the list of files to load.

Glob patterns follow .gitignore conventions, matched against the path relative to the
root that was given (with ``/`` separators):

* ``*`` and ``?`` stay within one path segment, ``**`` crosses segments (``docs/**/*.md``);
* a pattern without ``/`` matches at any depth (``*.md`` is ``**/*.md``);
* a pattern ending in ``/`` matches a directory and everything under it (``build/``).

Hidden files and directories (``.git``, ``.kvgraph``, ``.venv``...) are skipped, and
excluded directories are not descended into.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from kvgraph.errors import InvalidInputError
from kvgraph.ingest.loaders.common import SUPPORTED_EXTENSIONS

PathLike = str | os.PathLike[str]


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
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def _walk_dir(root: Path, include: list[str] | None, exclude: list[str], include_hidden: bool) -> list[Path]:
    found: list[tuple[str, Path]] = []
    # followlinks=False: symlinked directories are not entered, which rules out cycles.
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        # Pruning in place stops os.walk from descending into hidden or excluded directories.
        dirnames[:] = sorted(
            d for d in dirnames if (include_hidden or not d.startswith(".")) and not _matches(prefix + d, exclude)
        )
        for name in filenames:
            rel = prefix + name
            if not include_hidden and name.startswith("."):
                continue
            if include is not None:
                if not _matches(rel, include):
                    continue
            elif Path(name).suffix.lower() not in SUPPORTED_EXTENSIONS:
                continue
            if _matches(rel, exclude):
                continue
            found.append((rel, here / name))
    found.sort(key=lambda item: item[0])
    return [p for _, p in found]


def walk(
    paths: PathLike | Iterable[PathLike],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    *,
    include_hidden: bool = False,
) -> list[Path]:
    """The files to load under ``paths``, as absolute paths, in a deterministic order.

    Directories are expanded recursively, sorted by relative path. Inside directories,
    only supported file types are returned unless ``include`` is given, in which case
    the files matching ``include`` are returned whatever their type (the loader then
    reports unsupported ones). A file named directly is always returned unless it
    matches ``exclude`` (checked against its name). Raises InvalidInputError for a path
    that does not exist. Each file is returned once even if reached from two roots.
    """
    exclude = list(exclude or [])
    include = list(include) if include is not None else None
    for pattern in [*exclude, *(include or [])]:
        glob_regex(pattern)  # reject bad patterns before walking anything
    result: list[Path] = []
    seen: set[Path] = set()
    for given in _as_list(paths):
        root = given.expanduser().absolute()
        if root.is_dir():
            files = _walk_dir(root, include, exclude, include_hidden)
        elif root.exists():
            files = [] if _matches(root.name, exclude) else [root]
        else:
            raise InvalidInputError(f"{given}: no such file or directory")
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                result.append(f)
    return result
