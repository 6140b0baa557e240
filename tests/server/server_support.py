"""Helpers of the server tests: start a real ``kvgraph serve`` (uvicorn on a loopback port, in a thread
of the test process), wait for jobs, read server-sent events."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from kvgraph.server.app import create_app
from kvgraph.server.config import ServerConfig

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kvgraph" / "demo_data" / "docs"
KEY = "test-key-0123456789abcdef"
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "kvgraph")


@dataclass
class RunningServer:
    base_url: str
    config: ServerConfig
    server: uvicorn.Server
    thread: threading.Thread
    app: Any
    logs: list[str] = field(default_factory=list)

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)

    @property
    def engine(self) -> Any:
        return self.app.state.engine

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class LogCapture(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(kb_path: Path, **config: Any) -> RunningServer:
    """Start a server for ``kb_path`` and wait until it is ready; every log line it writes is captured."""
    cfg = ServerConfig(kb_path=kb_path, port=free_port(), readers=config.pop("readers", 2), **config)
    app = create_app(cfg)
    logs: list[str] = []
    handler = LogCapture(logs)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)
    server = uvicorn.Server(
        uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info", access_log=True, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    running = RunningServer(f"http://127.0.0.1:{cfg.port}", cfg, server, thread, app, logs)
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {logs[-5:]}")
        time.sleep(0.02)
    with running.client() as c:
        while c.get("/api/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.05)
    return running


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def sse_events(response: httpx.Response) -> list[tuple[str, Any]]:
    """The (event, JSON data) pairs of a text/event-stream response, read to the end."""
    events: list[tuple[str, Any]] = []
    name, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return events
