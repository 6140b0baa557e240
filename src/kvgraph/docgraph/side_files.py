"""The files a saved graph keeps beside ``graph.npz`` and names in ``graph.json``.

The name vectors (``names_file``) and a full build's adjacency (``adjacency_file``) each live in a
file of their own, ``<prefix><id><suffix>``, that ``graph.json`` describes by name, a few counts and
a CRC-32. Both read those descriptions the same way and delete the files no saved graph names.
"""

from __future__ import annotations

from pathlib import Path


def described(info: object, what: str, prefix: str, suffix: str, counts: tuple[str, ...]) -> tuple[str, list[int]]:
    """The file name and the non-negative integer ``counts`` a ``graph.json`` description holds;
    ValueError (naming ``what``) when it is malformed or names a file elsewhere or of another kind."""
    if not isinstance(info, dict):
        raise ValueError(f"the {what} file is not described")
    name, values = info.get("file"), [info.get(key) for key in counts]
    if not (
        isinstance(name, str)
        and name.startswith(prefix)
        and name.endswith(suffix)
        and "/" not in name
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
    ):
        raise ValueError(f"bad {what} file description {info!r}")
    return name, [int(v) for v in values]  # type: ignore[arg-type]


def side_files(directory: Path, prefix: str, suffix: str) -> list[Path]:
    """Every file of that kind in ``directory``, used or not."""
    return sorted(directory.glob(f"{prefix}*{suffix}"))


def remove_unused(directory: Path, prefix: str, suffix: str, used: str | None) -> None:
    """Delete the files of that kind in ``directory`` other than ``used`` (the saved graph's)."""
    for path in side_files(directory, prefix, suffix):
        if path.name != used:
            path.unlink(missing_ok=True)
