"""docs/cli.md's synopsis against the real click commands: every documented option exists, and
every command and option the CLI has is documented, so the reference cannot drift from the code.
Every command's help has examples, and the options they use exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kvgraph.cli import main
from kvgraph.cli.common import EXIT_STATUSES, walk

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
    """The command's options, the global ones too (hidden: they are documented once, under Conventions)."""
    return {opt for p in cmd.params if isinstance(p, click.Option) for opt in p.opts} | {"-h", "--help"}


def own_options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]


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
    missing = {p.opts[0] for p in own_options(cmd) if not set(p.opts) & documented_opts}
    assert not missing, f"`kvgraph {' '.join(path)}` options {sorted(missing)} are not in docs/cli.md"


# ------------------------------------------------------------------ examples in every command's help

EVERY_COMMAND = [((), main), *((path, cmd) for path, cmd in walk(main))]


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(main, [*path, "-h"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def example_lines(text: str) -> list[str]:
    """The ``kvgraph ...`` command lines of the help's Examples section (after a pipe, the part after it)."""
    assert "Examples:" in text, "no Examples section"
    section = text.split("Examples:", 1)[1]
    out = []
    for line in section.splitlines():
        line = line.split("  #")[0].strip()
        if "| kvgraph " in line:
            line = line.split("| ", 1)[1]
        if line.startswith("kvgraph "):
            out.append(line)
    return out


@pytest.mark.parametrize("path_cmd", EVERY_COMMAND, ids=lambda pc: " ".join(pc[0]) or "kvgraph")
def test_every_command_has_examples_that_use_real_options(path_cmd: tuple[tuple[str, ...], click.Command]) -> None:
    path = path_cmd[0]
    text = help_text(path)
    assert "-h, --help" in text  # -h works everywhere
    lines = example_lines(text)
    assert lines, f"`kvgraph {' '.join(path)} -h` shows no example"
    for line in lines:
        check_example(line)


def check_example(line: str) -> None:
    """Walk an example's words as click would: options (with their values) of the command reached so far,
    then subcommand names; every option must belong to the command it follows."""
    cmd: click.Command = main
    words = shlex.split(line.rstrip("\\"))[1:]
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-") and word != "-":
            name = word.split("=")[0]
            opt = next((p for p in cmd.params if isinstance(p, click.Option) and name in p.opts), None)
            assert opt is not None or name in ("-h", "--help"), f"example {line!r}: {name} is not an option here"
            if opt is not None and not opt.is_flag and "=" not in word:
                i += 1  # its value
        elif isinstance(cmd, click.Group) and word in cmd.commands:
            cmd = cmd.commands[word]
        i += 1
    assert not isinstance(cmd, click.Group) or "-h" in words, f"example {line!r} names no command"


def test_global_options_and_exit_statuses_are_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for option in ("--kb", "-q/--quiet", "--json", "-h", "_KVGRAPH_COMPLETE=bash_source"):
        assert option in text, option
    table = text.split("### Exit statuses", 1)[1].split("###", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.M)}
    assert documented == set(EXIT_STATUSES)
    root_help = help_text(())
    for status in EXIT_STATUSES:
        if status < 140:  # the broken-pipe status is for scripts, not the one-screen help
            assert f"{status} " in root_help.split("Exit status:", 1)[1]
