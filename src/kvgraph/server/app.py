"""The FastAPI application of ``kvgraph serve``: routes, key check, limits, CORS, errors and the web page.

FastAPI's interactive docs pages load their scripts from a CDN, so they are switched off: the
schema is at ``/openapi.json`` and ``docs/server.md`` describes every route. Nothing the server
sends refers to another host.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from kvgraph import __version__
from kvgraph.server import api, chat, evals, graph, openai_api
from kvgraph.server.config import ServerConfig
from kvgraph.server.engine import Engine
from kvgraph.server.errors import ApiError, install
from kvgraph.server.security import (
    UPLOAD_EXTENSIONS,
    BodyLimit,
    RedactKey,
    SecurityHeaders,
    key_matches,
    presented_key,
)

log = logging.getLogger("kvgraph.server")
STATIC = Path(__file__).resolve().parent / "static"
UPLOAD_PATHS = ("/api/documents",)
LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "kvgraph", "kvgraph.server")
# Declares the key in the OpenAPI schema; the check itself is require_key's (it also takes X-API-Key).
_BEARER = Depends(HTTPBearer(auto_error=False, description="The server's API key (also accepted as X-API-Key)"))


async def require_key(request: Request, _credentials: HTTPAuthorizationCredentials | None = _BEARER) -> None:
    """Every route but health, readiness and the page's files needs the key when one is set."""
    config: ServerConfig = request.app.state.config
    if config.api_key is None:
        return
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not key_matches(presented_key(headers), config.api_key):
        raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", "unauthorized")


def create_app(config: ServerConfig, engine: Engine | None = None) -> FastAPI:
    """The application; it opens the knowledge base (``engine``) on startup unless one is given."""
    config.check()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the key never reaches a log, even inside a URL a client wrote it into
        loggers = [logging.getLogger(name) for name in LOGGERS] if config.api_key else []
        redact = RedactKey(config.api_key or "")
        for lg in loggers:
            lg.addFilter(redact)
        own = engine is None
        try:
            app.state.engine = engine or Engine(config)
            app.state.engine.warm_up()
            yield
        finally:
            if own and getattr(app.state, "engine", None) is not None:
                app.state.engine.close()
            for lg in loggers:
                lg.removeFilter(redact)

    app = FastAPI(
        title="kvgraph",
        version=__version__,
        description="A knowledge base over HTTP: documents, search, answers with citations, chat, graph, evaluation.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.config = config
    if engine is not None:
        app.state.engine = engine
    install(app)
    keyed = [Depends(require_key)]
    app.include_router(api.health_router)
    for router in (api.router, chat.router, graph.router, evals.router, openai_api.router):
        app.include_router(router, dependencies=keyed)

    # the page's file picker offers exactly the kinds the upload route takes (the loaders' list)
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace("__UPLOAD_ACCEPT__", ",".join(sorted(UPLOAD_EXTENSIONS)))

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return HTMLResponse(page)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def limit_for(path: str) -> int:
        return config.max_upload_bytes if path in UPLOAD_PATHS else config.max_body_bytes

    # Outermost last: headers on every response, then the body limit, then CORS (only when asked for).
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        )
    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(SecurityHeaders)
    return app


def serve(config: ServerConfig, log_level: str = "info") -> None:
    """Run the app with uvicorn until interrupted (``kvgraph serve``).

    The knowledge base is opened before the server starts, so a locked or damaged one is a
    one-line error (KvgraphError) rather than a failed startup with a traceback.
    """
    import uvicorn

    config.check()
    engine = Engine(config)
    try:
        uvicorn.run(
            create_app(config, engine), host=config.host, port=config.port, log_level=log_level, server_header=False
        )
    finally:
        engine.close()
