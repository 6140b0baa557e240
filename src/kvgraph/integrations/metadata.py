"""Framework metadata to kvgraph's flat metadata, shared by the adapters (no framework imported)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kvgraph.errors import InvalidInputError
from kvgraph.schema import Metadata, validate_metadata

__all__ = ["flat_metadata", "plain_value"]


def plain_value(value: Any) -> Any:
    """numpy scalars to Python scalars, tuples to lists; anything else unchanged (validated later)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    return value


def flat_metadata(metadata: Mapping[str, Any], node_id: str, reserved: frozenset[str] = frozenset()) -> Metadata:
    """A framework's metadata as kvgraph metadata; InvalidInputError names the node and key when it is not flat.

    Keys in ``reserved`` (the adapter's own bookkeeping) are refused as well.
    """
    for key in metadata:
        if key in reserved:
            raise InvalidInputError(
                f"node {node_id!r}: metadata key {key!r} is reserved by kvgraph's adapter; rename it"
            )
    flat = {k: plain_value(v) for k, v in metadata.items()}
    try:
        return validate_metadata(flat, node_id)
    except InvalidInputError as e:
        raise InvalidInputError(
            f"{e}. kvgraph stores flat metadata: flatten nested values (e.g. 'a.b' keys) "
            "or convert them to strings (json.dumps) before adding"
        ) from None
