"""One exception hierarchy for everything kvgraph raises on purpose.

Every message says what was wrong, with which input, and what to do about it.
"""

from __future__ import annotations


class KvgraphError(Exception):
    """Base class of all errors raised by kvgraph."""


class InvalidInputError(KvgraphError, ValueError):
    """A value passed to kvgraph is malformed (bad id, metadata, embedding, argument)."""


class DimensionMismatchError(InvalidInputError):
    """An embedding does not have the dimension the store was created with."""

    def __init__(self, expected: int, got: int, where: str) -> None:
        super().__init__(f"{where}: embedding has dimension {got}, but the store expects {expected}")
        self.expected = expected
        self.got = got


class InvalidFilterError(InvalidInputError):
    """A metadata filter is malformed (unknown operator, wrong operand type)."""


class StoreLockedError(KvgraphError):
    """Another process holds the store's writer lock."""


class CorruptionError(KvgraphError):
    """A file of the store is damaged (checksum mismatch, truncated, unreadable)."""

    def __init__(self, path: object, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path


class DiskFullError(KvgraphError):
    """A write failed for lack of disk space (or quota); what was committed before is intact."""

    def __init__(self, path: object, detail: str = "") -> None:
        super().__init__(
            f"{path}: no space left on device{f' ({detail})' if detail else ''}; "
            "free some disk space and run the command again (everything committed before is intact)"
        )
        self.path = path


class ReadOnlyError(KvgraphError):
    """A write was attempted on a store opened read-only."""


class StoreClosedError(KvgraphError):
    """The store was used after close()."""


class MissingDependencyError(KvgraphError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed: pip install 'kvgraph[{extra}]'")


class LLMError(KvgraphError):
    """A language-model or embedding server failed or answered something unusable.

    ``status_code`` is the HTTP status when the server answered with an error, else None.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LLMUnavailableError(LLMError):
    """No LLM is configured, or the configured server cannot be reached."""
