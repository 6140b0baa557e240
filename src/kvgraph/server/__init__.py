"""``kvgraph serve``: the knowledge base over HTTP (FastAPI + uvicorn) and a web page.

:func:`create_app` builds the application for a :class:`ServerConfig`; :func:`serve` runs it.
The routes reach the engine only through :class:`kvgraph.kb.KnowledgeBase` (see
:mod:`kvgraph.server.engine` for how one process serves readers while it writes) and the
evaluation package. ``docs/server.md`` describes the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvgraph.server.config import ServerConfig

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI application for ``config`` (imports FastAPI only when called)."""
    from kvgraph.server.app import create_app as make

    return make(config)


def serve(config: ServerConfig, log_level: str = "info") -> None:
    """Run the server with uvicorn until interrupted."""
    from kvgraph.server.app import serve as run

    run(config, log_level)


__all__ = ["ServerConfig", "create_app", "serve"]
