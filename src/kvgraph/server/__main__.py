"""``python -m kvgraph.server``: run the server (``kvgraph serve`` starts this; the options are the same).

Refuses a bad configuration, a knowledge base it cannot open (locked by a writer, damaged) or a
non-loopback address without an API key with one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kvgraph.errors import KvgraphError
from kvgraph.server.config import DEFAULT_MAX_UPLOAD_MB, DEFAULT_READERS, ServerConfig, key_from_env_or_file

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kvgraph.server", description=__doc__)
    p.add_argument("--kb", default=None, help="knowledge-base directory (default: $KVGRAPH_KB or ./.kvgraph)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key-file", default=None)
    p.add_argument("--cors-origin", action="append", default=[])
    p.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB)
    p.add_argument("--readers", type=int, default=DEFAULT_READERS)
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from kvgraph.kb import default_kb_path
        from kvgraph.server.app import serve

        config = ServerConfig(
            kb_path=Path(args.kb) if args.kb else default_kb_path(),
            host=args.host,
            port=args.port,
            api_key=key_from_env_or_file(args.api_key_file),
            cors_origins=list(args.cors_origin),
            max_upload_bytes=args.max_upload_mb * 1024 * 1024,
            readers=args.readers,
        )
        config.check()
        shown = f"[{args.host}]" if ":" in args.host else args.host
        key = "required" if config.api_key else "off: loopback only"
        print(f"kvgraph serving {config.kb_path} at http://{shown}:{args.port}/ (API key {key})", file=sys.stderr)
        serve(config, args.log_level)
    except KvgraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"error: {e.name or 'fastapi'} is not installed: pip install 'kvgraph[server]'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
