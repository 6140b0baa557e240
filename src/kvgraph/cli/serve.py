"""``kvgraph serve``: the knowledge base over HTTP with a web page (needs the ``server`` extra).

The server is its own interface beside the CLI (``kvgraph.server``, run as ``python -m
kvgraph.server``); this command checks that it is installed and becomes that program with the
same options, so the CLI never imports the server and the server never imports the CLI.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import click

from kvgraph.cli.common import kb_path as _kb_path
from kvgraph.errors import MissingDependencyError


def server_argv(kb: str, **options: object) -> list[str]:
    """The ``python -m kvgraph.server`` command line for these options (the key file's path, never a key)."""
    argv = [sys.executable, "-m", "kvgraph.server", "--kb", kb]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, tuple):
            for item in value:
                argv += [flag, str(item)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def register(main: click.Group) -> None:
    @main.command("serve")
    @click.option(
        "--host", default="127.0.0.1", show_default=True, help="Address to bind; beyond loopback needs a key."
    )
    @click.option("--port", type=int, default=8000, show_default=True, help="TCP port.")
    @click.option(
        "--api-key-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="File whose first line is the API key (else $KVGRAPH_API_KEY; required beyond loopback).",
    )
    @click.option(
        "--cors-origin",
        "cors_origin",
        multiple=True,
        metavar="ORIGIN",
        help="Allow this web origin (repeatable; CORS is off by default).",
    )
    @click.option("--max-upload-mb", type=int, default=50, show_default=True, help="Largest upload request.")
    @click.option("--readers", type=int, default=4, show_default=True, help="Threads that serve reads concurrently.")
    @click.option(
        "--log-level",
        type=click.Choice(["critical", "error", "warning", "info", "debug"]),
        default="info",
        show_default=True,
        help="Server log level.",
    )
    @click.pass_context
    def serve(ctx: click.Context, /, **options: object) -> None:
        """Serve the knowledge base: HTTP API, OpenAI-compatible /v1, and the web page at /."""
        for module, extra in (("fastapi", "server"), ("uvicorn", "server"), ("multipart", "server")):
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(module, extra)
        argv = server_argv(str(_kb_path(ctx)), **options)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(argv[0], argv)  # the server replaces this process: signals and exit status are its own
