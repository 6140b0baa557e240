"""The public API: what each package exports exists, is listed once, and the front door is typed."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

import kvgraph
from kvgraph.kb import KnowledgeBase

PACKAGES = [
    "kvgraph",
    "kvgraph.kb",
    "kvgraph.store",
    "kvgraph.embed",
    "kvgraph.llm",
    "kvgraph.retrieve",
    "kvgraph.graphdb",
    "kvgraph.ingest.loaders",
    "kvgraph.cli",
]

# The names a user of ``import kvgraph`` relies on; removing one is a breaking change.
TOP_LEVEL = {
    "Answer",
    "Citation",
    "CorruptionError",
    "DimensionMismatchError",
    "Document",
    "FilterOperator",
    "InvalidFilterError",
    "InvalidInputError",
    "KnowledgeBase",
    "KvgraphError",
    "MetadataFilter",
    "MetadataFilters",
    "Node",
    "NodeRelationship",
    "NodeWithScore",
    "ReadOnlyError",
    "StoreClosedError",
    "StoreLockedError",
    "__version__",
}


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves_and_is_listed_once(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    for attr in exported:
        assert getattr(module, attr) is not None, f"{name}.{attr}"


def test_the_top_level_api_is_what_users_import() -> None:
    assert set(kvgraph.__all__) >= TOP_LEVEL
    assert kvgraph.KnowledgeBase is KnowledgeBase


def _public_members() -> list[tuple[str, Any]]:
    out = []
    for name, member in inspect.getmembers(KnowledgeBase):
        if name.startswith("_"):
            continue
        func = member.fget if isinstance(member, property) else member
        if callable(func):
            out.append((name, func))
    return out


@pytest.mark.parametrize(("name", "func"), _public_members(), ids=[n for n, _ in _public_members()])
def test_the_knowledge_base_front_door_is_typed(name: str, func: Any) -> None:
    """Every public member of KnowledgeBase has a documented, concrete return type (never Any)."""
    assert func.__doc__, f"KnowledgeBase.{name} has no docstring"
    returns = inspect.signature(func).return_annotation  # a string: the module uses postponed annotations
    assert returns is not inspect.Signature.empty, f"KnowledgeBase.{name} has no return annotation"
    assert "Any" not in str(returns).replace("[str, Any]", ""), f"KnowledgeBase.{name} returns {returns}"
