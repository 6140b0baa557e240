"""docs/cli.md's synopsis against the real click commands: every documented option exists, and
every command and option the CLI has is documented, so the reference cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from kvgraph.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def synopsis() -> list[str]:
    """The ``kvgraph ...`` lines of the first code block of docs/cli.md."""
    block = DOC.read_text(encoding="utf-8").split("```", 2)[1]
    return [line.split("  #")[0] for line in block.splitlines() if line.startswith("kvgraph ")]


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The command a synopsis line names (following groups) and the path of names to it."""
    cmd: click.Command = main
    path: list[str] = []
    for word in words:
        if not isinstance(cmd, click.Group):
            break
        for name in word.split("|"):  # "stats|check|vacuum" names several subcommands
            if name in cmd.commands:
                path.append(word)
                break
        else:
            break
        cmd = cmd.commands[word.split("|")[0]]
    return cmd, path


def options(cmd: click.Command) -> set[str]:
    return {opt for p in cmd.params if isinstance(p, click.Option) for opt in p.opts}


def documented() -> dict[tuple[str, ...], set[str]]:
    """Command path -> the options docs/cli.md shows for it."""
    out: dict[tuple[str, ...], set[str]] = {}
    for line in synopsis():
        words = [w for w in re.sub(r"\[--kb PATH\]", "", line).split()[1:] if not w.startswith(("[", '"', "-"))]
        _, path = resolve(words)
        assert path, f"docs/cli.md names no command: {line!r}"
        opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", line)) - {"--kb"}
        for name in path[-1].split("|"):  # "stats|check" documents the same options for both
            key = (*path[:-1], name)
            out[key] = out.get(key, set()) | opts  # a command may take several lines
    return out


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += all_commands(cmd, (*prefix, name))
        else:
            out.append(((*prefix, name), cmd))
    return out


def test_every_documented_option_exists() -> None:
    docs = documented()
    assert len(docs) > 20
    for path, opts in docs.items():
        group = main
        for name in path[:-1]:
            group = group.commands[name]  # type: ignore[attr-defined]
        real = group.commands[path[-1]]  # type: ignore[attr-defined]
        unknown = opts - options(real)
        assert not unknown, f"docs/cli.md documents {sorted(unknown)} for `kvgraph {' '.join(path)}`, which has none"


# The eval subcommands have their own reference, docs/eval.md; the synopsis names them in one line.
DOCUMENTED_HERE = [pc for pc in all_commands(main) if pc[0][0] != "eval"]


@pytest.mark.parametrize("path_cmd", DOCUMENTED_HERE, ids=lambda pc: " ".join(pc[0]))
def test_every_command_and_option_is_documented(path_cmd: tuple[tuple[str, ...], click.Command]) -> None:
    path, cmd = path_cmd
    docs = documented()
    assert path in docs, f"`kvgraph {' '.join(path)}` is missing from docs/cli.md's synopsis"
    documented_opts = docs[path]
    missing = {
        p.opts[0]
        for p in cmd.params
        if isinstance(p, click.Option) and not set(p.opts) & documented_opts and p.opts[0] != "--help"
    }
    assert not missing, f"`kvgraph {' '.join(path)}` options {sorted(missing)} are not in docs/cli.md"
