"""Retriever specs: ``NAME`` or ``NAME:key=value,key=value`` in a comma-separated list, and ``--set key=value``.

``kvgraph eval retrieval --retrievers "bm25,kvgraph:mode=hybrid,references=both,graph:damping=0.5"``
names three retrievers: a token with ``=`` and no ``:`` is one more option of the retriever
before it. A list value is written with ``+`` (``child_sizes=128+256``), since commas separate
the specs. ``--set key=value`` (repeatable) gives options to every retriever that takes
knowledge-base settings (``kvgraph`` and ``graph``); a spec's own options win.

This module only parses; :mod:`kvgraph.eval.retrievers` says which options each retriever takes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kvgraph.errors import InvalidInputError

__all__ = ["RetrieverSpec", "parse_assignments", "parse_retrievers"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class RetrieverSpec:
    """A retriever name and its options, in the order written."""

    name: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """``name`` alone, or ``name:key=value,...``: the retriever's row in a report."""
        if not self.options:
            return self.name
        return f"{self.name}:" + ",".join(f"{k}={v}" for k, v in self.options)

    def merged(self, defaults: Mapping[str, str]) -> RetrieverSpec:
        """The spec with ``defaults`` (``--set``) before its own options; its own win on a clash."""
        own = dict(self.options)
        merged = {**{k: v for k, v in defaults.items() if k not in own}, **own}
        return RetrieverSpec(self.name, tuple(merged.items()))


def _option(token: str, spec: str) -> tuple[str, str]:
    key, sep, value = token.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not _KEY.match(key) or not value:
        raise InvalidInputError(f"retriever spec {spec!r}: option {token!r} should be key=value (e.g. mode=hybrid)")
    return key, value


def parse_retrievers(text: str | Iterable[str]) -> list[RetrieverSpec]:
    """Specs from ``"bm25,kvgraph:mode=hybrid,references=both"`` (or from several such strings)."""
    texts = [text] if isinstance(text, str) else list(text)
    specs: list[tuple[str, list[tuple[str, str]]]] = []
    for chunk in texts:
        for raw in chunk.split(","):
            token = raw.strip()
            if not token:
                continue
            if ":" in token:
                name, _, first = token.partition(":")
                name = name.strip()
                if not _NAME.match(name):
                    raise InvalidInputError(f"retriever spec {token!r}: {name!r} is not a retriever name")
                specs.append((name, [_option(first, token)] if first.strip() else []))
            elif "=" in token:
                if not specs:
                    raise InvalidInputError(f"retriever option {token!r} comes before any retriever name")
                specs[-1][1].append(_option(token, f"{specs[-1][0]}:...,{token}"))
            elif _NAME.match(token):
                specs.append((token, []))
            else:
                raise InvalidInputError(f"{token!r} is not a retriever name")
    out = []
    for name, options in specs:
        keys = [k for k, _ in options]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise InvalidInputError(f"retriever {name!r} sets {', '.join(dup)} more than once")
        out.append(RetrieverSpec(name, tuple(options)))
    if not out:
        raise InvalidInputError("no retriever named")
    return out


def parse_assignments(pairs: Sequence[str], what: str = "--set") -> dict[str, str]:
    """``["mode=hybrid", "references=both"]`` -> ``{"mode": "hybrid", "references": "both"}``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.match(key) or not value:
            raise InvalidInputError(f"{what} {pair!r}: write key=value, e.g. {what} mode=hybrid")
        if key in out and out[key] != value:
            raise InvalidInputError(f"{what} gives {key} twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out
