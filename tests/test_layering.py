"""The house rules of ``src/kvgraph``, checked on the source so the package map cannot drift.

1. Every import goes down (or sideways inside one package): a module may import a module of a
   lower layer or of its own package, never one above it. Lazy imports inside functions and
   ``TYPE_CHECKING`` imports count too: a dependency deferred is still a dependency.
2. No import cycles between modules.
3. No module imports another module's private names.
4. The interfaces (``cli``, ``server``) reach the engine only through the knowledge base
   (``kvgraph.kb``) and the applications above it (``eval``, ``finetune``), plus the bottom layer.

``docs/architecture.md`` explains the layers; change both together.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lower number = lower layer. A top-level module or package of kvgraph must be listed here.
LAYERS: dict[str, int] = {
    "errors": 0,
    "schema": 1,
    "filters": 1,
    "fileio": 1,
    "locking": 1,
    "text": 1,
    "progress": 1,
    "transport": 1,
    "config": 2,
    "store": 3,
    "embed": 3,
    "llm": 3,
    "graphdb": 4,
    "ingest": 5,
    "docgraph": 5,
    "answer": 5,
    "retrieve": 6,
    "graphqa": 7,
    "kb": 8,
    "eval": 9,
    "finetune": 9,
    "integrations": 9,
    "testing": 9,
    "cli": 10,
    "server": 10,
    "__main__": 11,  # python -m kvgraph: starts the command line
}
INTERFACES = {"cli", "server", "__main__"}
# What an interface may import besides itself: the front door, the applications, the bottom layer.
INTERFACE_MAY_USE = {"kb", "eval", "finetune", "errors", "schema", "filters", "config", "progress", "text"}


def module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect(src: Path) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted((src / "kvgraph").rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path], name: str) -> list[tuple[str, list[str], int]]:
    """(imported kvgraph module, names taken from it, line) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, list[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "kvgraph"]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([mod] if mod else []))
            if mod.split(".")[0] != "kvgraph":
                continue
            submodules = [a.name for a in node.names if f"{mod}.{a.name}" in modules]
            names = [a.name for a in node.names if f"{mod}.{a.name}" not in modules]
            out += [(f"{mod}.{s}", [], node.lineno) for s in submodules]
            if names or not submodules:
                out.append((mod, names, node.lineno))
    return out


def top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def check(src: Path) -> list[str]:
    """Every violation of the rules as one line (empty when the tree is clean)."""
    modules = collect(src)
    problems: list[str] = []
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        here = top_package(name)
        if here and here not in LAYERS:
            problems.append(f"{name}: package or module {here!r} has no layer in tests/test_layering.py")
            continue
        for target, names, line in imports_of(path, modules, name):
            if target not in modules:
                problems.append(f"{name}:{line}: imports {target}, which does not exist")
                continue
            graph[name].add(target)
            there = top_package(target)
            where = f"{name}:{line} imports {target}"
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != name:
                problems.append(f"{where}: private names {private}")
            if not here:  # kvgraph/__init__: the public re-exports
                continue
            if there == here:
                continue
            if not there:
                continue  # kvgraph itself (__version__)
            if LAYERS.get(there, 99) > LAYERS[here]:
                problems.append(f"{where}: upward, layer {LAYERS[here]} ({here}) -> {LAYERS[there]} ({there})")
            elif LAYERS[there] == LAYERS[here]:
                problems.append(f"{where}: sideways between packages of one layer ({here} -> {there})")
            if here in INTERFACES and there not in INTERFACE_MAY_USE | INTERFACES:
                problems.append(f"{where}: an interface goes past the knowledge base to {there}")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_follows_the_layering_rules() -> None:
    problems = check(SRC)
    assert not problems, "\n".join(problems)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / "kvgraph" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"errors.py": "from kvgraph.kb import layout\n", "kb/__init__.py": "", "kb/layout.py": ""}, "upward"),
        (
            {
                "store/__init__.py": "",
                "store/a.py": "from kvgraph.llm import b\n",
                "llm/__init__.py": "",
                "llm/b.py": "",
            },
            "sideways",
        ),
        (
            {
                "store/__init__.py": "",
                "store/a.py": "def f():\n    from kvgraph.store import b\n",
                "store/b.py": "from kvgraph.store.a import f\n",
            },
            "import cycle",
        ),
        (
            {"store/__init__.py": "", "store/a.py": "from kvgraph.errors import _hidden\n", "errors.py": ""},
            "private names",
        ),
        (
            {
                "cli/__init__.py": "",
                "cli/x.py": "from kvgraph.store import a\n",
                "store/__init__.py": "",
                "store/a.py": "",
            },
            "past the knowledge base",
        ),
        (
            {
                "store/__init__.py": "",
                "store/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kvgraph.kb import k\n",
                "kb/__init__.py": "",
                "kb/k.py": "",
            },
            "upward",
        ),
        ({"newthing/__init__.py": ""}, "has no layer"),
    ],
)
def test_the_check_catches_each_kind_of_violation(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    files = {"__init__.py": "", **files}
    problems = check(_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "store/__init__.py": "from kvgraph.store.a import A\n",
            "store/a.py": "from kvgraph.errors import KvgraphError\nA = 1\n",
            "kb/__init__.py": "from kvgraph.store import A\n",
        },
    )
    assert check(src) == []
