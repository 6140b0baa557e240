"""Errors as JSON in OpenAI's shape, ``{"error": {"message", "type", "code"}}``: a message, never a traceback.

kvgraph's own errors keep their one-line message (it names the input and the way out); anything
else is logged here with its traceback and answered with a generic 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kvgraph.errors import (
    CorruptionError,
    InvalidInputError,
    KvgraphError,
    LLMError,
    LLMUnavailableError,
    MissingDependencyError,
    ReadOnlyError,
    StoreLockedError,
)
from kvgraph.server.security import BodyTooLargeError

log = logging.getLogger("kvgraph.server")

NOT_FOUND_ERRORS = ("ConversationNotFoundError", "EvalRunNotFoundError", "JobNotFoundError", "DocumentNotFoundError")


class ApiError(Exception):
    """An error the API answers with ``status``; ``kind`` goes in the body's ``type``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": status}}


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, kind), status_code=status, headers=headers)


def status_of(e: KvgraphError) -> tuple[int, str]:
    """The HTTP status and error type for one of kvgraph's errors."""
    if type(e).__name__ in NOT_FOUND_ERRORS:
        return 404, "not_found"
    if isinstance(e, LLMUnavailableError):
        return 503, "llm_unavailable"
    if isinstance(e, LLMError):
        return 502, "llm_error"
    if isinstance(e, (StoreLockedError, ReadOnlyError)):
        return 409, "conflict"
    if isinstance(e, MissingDependencyError):
        return 501, "missing_dependency"
    if isinstance(e, CorruptionError):
        return 500, "corruption"
    if type(e).__name__ == "QueryTimeoutError":
        return 504, "timeout"
    if isinstance(e, InvalidInputError):
        return 400, "invalid_request"
    return 400, "kvgraph_error"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into a JSON error body."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return error_response(e.status, e.message, e.kind, headers)

    @app.exception_handler(KvgraphError)
    async def kvgraph_error(_request: Request, e: KvgraphError) -> JSONResponse:
        status, kind = status_of(e)
        return error_response(status, str(e), kind)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return error_response(422, "; ".join(parts) or "invalid request", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return error_response(e.status_code, str(e.detail), kind, dict(e.headers) if e.headers else None)

    @app.exception_handler(BodyTooLargeError)
    async def too_large(_request: Request, e: BodyTooLargeError) -> JSONResponse:
        return error_response(413, str(e), "request_too_large")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return error_response(500, "internal server error (the server log has the details)", "internal_error")
