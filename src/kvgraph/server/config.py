"""What ``kvgraph serve`` is started with, and the rule that binding beyond loopback needs an API key."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvgraph.errors import InvalidInputError

MIN_KEY_CHARS = 16  # a key anyone can guess protects nothing
DEFAULT_MAX_UPLOAD_MB = 50
DEFAULT_MAX_BODY_KB = 1024  # JSON bodies: questions, Cypher, eval question lists
DEFAULT_READERS = 4


@dataclass
class ServerConfig:
    """Everything the app needs; ``kb_overrides`` are settings overrides for the knowledge base."""

    kb_path: Path
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    max_body_bytes: int = DEFAULT_MAX_BODY_KB * 1024
    readers: int = DEFAULT_READERS
    kb_overrides: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # the key must not reach logs through a repr
        key = "set" if self.api_key else "none"
        return f"ServerConfig(kb_path={self.kb_path!s}, host={self.host!r}, port={self.port}, api_key={key})"

    def check(self) -> None:
        """Refuse a configuration that would expose the knowledge base, with one line saying why."""
        if self.api_key is not None and len(self.api_key) < MIN_KEY_CHARS:
            raise InvalidInputError(
                f"the API key must have at least {MIN_KEY_CHARS} characters "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if not is_loopback(self.host) and not self.api_key:
            raise InvalidInputError(
                f"--host {self.host} is reachable from other machines: set an API key "
                "(--api-key-file FILE or KVGRAPH_API_KEY) or bind to 127.0.0.1"
            )
        if self.readers < 1:
            raise InvalidInputError(f"--readers must be at least 1, got {self.readers}")
        if self.max_upload_bytes < 1 or self.max_body_bytes < 1:
            raise InvalidInputError("size limits must be positive")
        for origin in self.cors_origins:
            if origin == "*" and self.api_key is None:
                raise InvalidInputError("--cors-origin '*' lets any web page use this server: set an API key first")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1 and ``localhost``."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def key_from_env_or_file(key_file: str | None) -> str | None:
    """The API key from ``key_file`` (first line) or ``KVGRAPH_API_KEY``; None when neither is set."""
    if key_file:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise InvalidInputError(f"--api-key-file {key_file}: cannot read it ({e.strerror or e})") from None
        key = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not key:
            raise InvalidInputError(f"--api-key-file {key_file} is empty")
        return key
    return os.environ.get("KVGRAPH_API_KEY") or None
