"""API keys, request size limits, safe upload names and the page's security headers.

- Keys are compared with :func:`hmac.compare_digest` (constant time), accepted only in a header
  (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``), never in a URL where logs would keep them.
- Bodies are counted as they arrive: a ``Content-Length`` over the limit is refused before the
  body is read, and a chunked body is cut off as soon as it passes the limit.
- An upload's file name is a single, plain path component; anything else is refused rather than
  cleaned up, and the file lands in ``KB/uploads/`` or nowhere.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from kvgraph.errors import InvalidInputError
from kvgraph.kb import KnowledgeBase

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_DIR = "uploads"
# What kvgraph's loaders read; anything else is refused at upload rather than stored and skipped.
UPLOAD_EXTENSIONS = KnowledgeBase.supported_extensions()
MAX_NAME_CHARS = 200
_NAME_OK = re.compile(r"^[\w.\- ()+,@&]+$")
# Windows device names: harmless here, but a knowledge base directory may be copied to Windows.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}

# The page loads nothing from elsewhere, and nothing may frame it.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented key with the configured one."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a request presents: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (lower-case names)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key") or None


def safe_upload_name(name: str | None) -> str:
    """``name`` when it is a plain file name kvgraph can ingest; InvalidInputError saying why not otherwise."""
    if not name:
        raise InvalidInputError("upload has no file name")
    shown = name if len(name) <= 80 else name[:77] + "..."
    if "/" in name or "\\" in name or "\x00" in name:
        raise InvalidInputError(f"upload file name {shown!r} has a path in it: send the file name only")
    name = unicodedata.normalize("NFC", name.strip())
    if name in (".", "..") or name.startswith("."):
        raise InvalidInputError(f"upload file name {shown!r}: hidden and relative names are refused")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInputError(f"upload file name {shown!r} is longer than {MAX_NAME_CHARS} characters")
    if not _NAME_OK.match(name) or any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidInputError(
            f"upload file name {shown!r} has characters other than letters, digits, spaces and . - _ ( ) + , @ &"
        )
    if name.split(".")[0].lower() in _RESERVED:
        raise InvalidInputError(f"upload file name {shown!r} is a reserved device name")
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_EXTENSIONS:
        kinds = ", ".join(sorted(UPLOAD_EXTENSIONS))
        raise InvalidInputError(f"upload {shown!r}: kvgraph reads {kinds} files, not {suffix or 'no extension'}")
    return name


def upload_target(kb_path: Path, name: str) -> Path:
    """Where upload ``name`` is stored: ``KB/uploads/NAME``, checked to stay inside that folder."""
    folder = (kb_path / UPLOAD_DIR).resolve()
    target = folder / safe_upload_name(name)
    # Belt and braces: the name check already rules this out; a symlink planted in the folder does not.
    if target.resolve().parent != folder or target.is_symlink():
        raise InvalidInputError(f"upload {name!r} would be written outside {folder}")
    return target


class BodyTooLargeError(Exception):
    """The request body passed its limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit:,} bytes")
        self.limit = limit


class BodyLimit:
    """ASGI middleware: ``limit_for(path)`` bytes per request body; 413 with a JSON error past it."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            too_big = length.isdigit()
            await _send_json(
                send,
                413 if too_big else 400,
                f"request body is larger than the limit of {limit:,} bytes" if too_big else "bad Content-Length",
                "request_too_large" if too_big else "invalid_request",
            )
            return
        seen = 0
        exceeded = False
        answered = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise BodyTooLargeError(limit)
            return message

        async def checked_send(message: Message) -> None:
            # The framework turns an error while reading the body into its own 400; the client
            # should hear why instead: the body was too large.
            nonlocal answered
            if not exceeded:
                await send(message)
            elif not answered:
                answered = True
                await _send_json(send, 413, str(BodyTooLargeError(limit)), "request_too_large")

        await self.app(scope, counted, checked_send)


class RedactKey(logging.Filter):
    """Replaces the API key (as sent, and URL-encoded) in every log record with ``[redacted]``.

    The server never logs the key itself, but an access log line carries the URL, and a client
    may put the key in one.
    """

    def __init__(self, key: str) -> None:
        super().__init__()
        self.needles = sorted({key, quote(key, safe=""), quote_plus(key)}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(n in text for n in self.needles):
            for n in self.needles:
                text = text.replace(n, "[redacted]")
            record.msg, record.args = text, None
        return True


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _send_json(send: Send, status: int, message: str, kind: str) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
