"""A real OpenAI-protocol HTTP server on loopback, for testing the clients end to end.

Speaks ``/v1/chat/completions`` (JSON and SSE streaming), ``/v1/embeddings`` and ``/v1/models``
the way OpenAI and vLLM do, and can be programmed to misbehave: fail the first requests,
demand a key, answer slowly, send malformed JSON, reject fields. Every request is recorded.

It also speaks the Files and Fine-tuning endpoints (``/v1/files`` with multipart uploads,
``/v1/fine_tuning/jobs``, its ``/events`` and ``/cancel``): a job moves one state each time it is
read (validating_files, queued, running for ``job_running_polls`` reads, then succeeded), checks
its training file (every line a JSON object with ``messages``) like the real service, and can be
told to fail (``job_failure``). A succeeded job's model is served by chat completions from then on.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

Reply = Callable[[list[dict[str, Any]]], str]


def echo_reply(messages: list[dict[str, Any]]) -> str:
    """The default reply: repeats the last user message."""
    last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    return f"You said: {last}"


def fake_vector(text: str, dim: int) -> list[float]:
    """A deterministic, deliberately not unit-length vector for ``text``."""
    raw = b""
    counter = 0
    while len(raw) < 4 * dim:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    ints = struct.unpack(f"<{dim}I", raw[: 4 * dim])
    return [3.0 * (i / 2**32 - 0.5) for i in ints]


def split_deltas(text: str) -> list[str]:
    """Split a reply into word-sized deltas, like a tokenizer would."""
    parts: list[str] = []
    for i, word in enumerate(text.split(" ")):
        parts.append(word if i == 0 else " " + word)
    return parts


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


@dataclass
class FakeOpenAIServer:
    """Programmable behaviour; change attributes between requests. ``base_url`` ends in /v1."""

    reply: Reply = echo_reply
    models: list[str] = field(default_factory=lambda: ["test-model", "embed-model"])
    embedding_dim: int = 8
    require_key: str | None = None
    delay: float = 0.0  # seconds to wait before answering
    malformed: bool = False  # answer 200 with broken JSON (or a broken stream event)
    reject_fields: tuple[str, ...] = ()  # 400 when a request body has one of these fields, like strict servers
    # Streaming shape: "data:" without the space (TGI), CRLF line ends, a trailing chunk with no choices
    sse_no_space: bool = False
    sse_crlf: bool = False
    empty_final_choices: bool = True
    stream_error: str | None = None  # sent as an error event after the first delta
    # Rewrites the embeddings' "data" list before sending, to simulate broken servers.
    embedding_data_hook: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
    # Tool calling: given a chat request body that offers ``tools``, return (function name, arguments)
    # to answer with that tool call instead of text, or None to answer with ``reply`` as usual.
    tool_reply: Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None] | None = None
    # Files and fine-tuning jobs, by id (see the module docstring).
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_running_polls: int = 2  # reads a job spends "running" before it ends
    job_failure: dict[str, str] | None = None  # {"code", "message"}: jobs that reach the end fail with it
    fine_tunable: tuple[str, ...] | None = None  # base models a job may start from (None: every served model)
    requests: list[RecordedRequest] = field(default_factory=list)
    _failures: list[tuple[int, str | None]] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- control --------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wake handlers sleeping in a slow response
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, count: int, status: int = 503, *, retry_after: str | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and a Retry-After header if given)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def _next_failure(self) -> tuple[int, str | None] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else header and body writes cost a 40 ms delayed-ACK round each

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # -- dispatch -------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type") or ""
        if content_type.startswith("multipart/form-data"):
            return self._handle(_multipart(content_type, raw))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._handle(body)

    def _handle(self, body: Any) -> None:
        fake = self.fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake.requests.append(RecordedRequest(self.command, self.path, headers, body))
        if fake.delay and fake._stopping.wait(fake.delay):
            return
        failure = fake._next_failure()
        if failure is not None:
            status, retry_after = failure
            extra = {"Retry-After": retry_after} if retry_after is not None else {}
            return self._error(status, f"scripted failure {status}", extra)
        if fake.require_key is not None:
            auth = headers.get("authorization", "")
            if auth != f"Bearer {fake.require_key}":
                given = auth.removeprefix("Bearer ")
                # Real servers echo the key they rejected; clients must not pass it on.
                return self._error(401, f"Incorrect API key provided: {given}", {})
        if isinstance(body, dict):
            for name in fake.reject_fields:
                if name in body:
                    return self._error(400, f"Extra inputs are not permitted: {name}", {})
        route = (self.command, self.path)
        if route == ("GET", "/v1/models"):
            return self._json({"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})
        if route == ("POST", "/v1/chat/completions"):
            return self._chat(body)
        if route == ("POST", "/v1/embeddings"):
            return self._embeddings(body)
        if self.path.startswith(("/v1/files", "/v1/fine_tuning/")):
            return self._fine_tuning(body)
        return self._error(404, f"no route {self.command} {self.path}", {})

    # -- endpoints ------------------------------------------------------------------------

    def _chat(self, body: Any) -> None:
        fake = self.fake
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._error(400, "'messages' is a required property", {})
        if body.get("model") not in fake.models:
            return self._error(404, f"The model `{body.get('model')}` does not exist.", {})
        if fake.tool_reply is not None and body.get("tools") and not body.get("stream"):
            call = fake.tool_reply(body)
            if call is not None:
                return self._tool_call(body["model"], *call)
        text = fake.reply(body["messages"])
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._chat_stream(body["model"], text, usage if include_usage else None)
        if fake.malformed:
            truncated = json.dumps({"id": "chatcmpl-1", "choices": [{"message": {"content": text}}]})[:-3]
            return self._raw(200, truncated.encode(), "application/json")
        return self._json(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            }
        )

    def _tool_call(self, model: str, name: str, arguments: dict[str, Any]) -> None:
        """A non-streamed reply with one function call, in OpenAI's shape (arguments as a JSON string)."""
        call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return self._json(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )

    def _chat_stream(self, model: str, text: str, usage: dict[str, int] | None) -> None:
        fake = self.fake
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the stream ends when the connection does
        self.end_headers()
        nl = "\r\n" if fake.sse_crlf else "\n"
        prefix = "data:" if fake.sse_no_space else "data: "

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
            obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model, "choices": choices, **extra}
            event(json.dumps(obj))

        def event(data: str) -> None:
            self.wfile.write(f"{prefix}{data}{nl}{nl}".encode())
            self.wfile.flush()

        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        self.wfile.write(f": keep-alive{nl}{nl}".encode())  # a comment line, as proxies and servers send
        chunk([{"index": 0, "delta": {"content": None}, "finish_reason": None}])  # null content, as vLLM may
        for i, delta in enumerate(split_deltas(text)):
            if i == 1 and fake.malformed:
                event('{"choices": [{"delta": ')
            if i == 1 and fake.stream_error is not None:
                event(json.dumps({"error": {"message": fake.stream_error, "code": 500}}))
            chunk([{"index": 0, "delta": {"content": delta}, "finish_reason": None}])
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if fake.empty_final_choices or usage is not None:
            chunk([], usage=usage)
        event("[DONE]")
        self.close_connection = True

    def _embeddings(self, body: Any) -> None:
        fake = self.fake
        if not isinstance(body, dict) or "input" not in body:
            return self._error(400, "'input' is a required property", {})
        if body.get("model") not in fake.models:
            return self._error(404, f"The model `{body.get('model')}` does not exist.", {})
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(text, fake.embedding_dim)}
            for i, text in enumerate(inputs)
        ]
        data.reverse()  # a legal order: clients must sort by index
        if fake.embedding_data_hook is not None:
            data = fake.embedding_data_hook(data)
        tokens = sum(len(str(t).split()) for t in inputs)
        if fake.malformed:
            return self._raw(200, json.dumps({"object": "list", "data": data})[:-3].encode(), "application/json")
        self._json(
            {
                "object": "list",
                "model": body["model"],
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    # -- files and fine-tuning -----------------------------------------------------------

    def _fine_tuning(self, body: Any) -> None:
        fake = self.fake
        path, _, query = self.path.partition("?")
        parts = path.strip("/").split("/")[1:]  # without "v1"
        with fake._lock:
            if parts == ["files"] and self.command == "POST":
                return self._upload(body)
            if parts == ["files"] and self.command == "GET":
                return self._json({"object": "list", "data": [_public(f) for f in fake.files.values()]})
            if len(parts) == 2 and parts[0] == "files" and self.command == "GET":
                found = fake.files.get(parts[1])
                if found is None:
                    return self._error(404, f"No such File object: {parts[1]}", {})
                return self._json(_public(found))
            if parts == ["fine_tuning", "jobs"] and self.command == "POST":
                return self._create_job(body)
            if len(parts) >= 3 and parts[:2] == ["fine_tuning", "jobs"]:
                job = fake.jobs.get(parts[2])
                if job is None:
                    return self._error(404, f"No fine-tuning job found with id {parts[2]}", {})
                if len(parts) == 3 and self.command == "GET":
                    self._advance(job)
                    return self._json(_public(job))
                if parts[3:] == ["events"] and self.command == "GET":
                    limit = int((parse_qs(query).get("limit") or ["20"])[0])
                    events = list(reversed(job["_events"]))[:limit]
                    return self._json({"object": "list", "data": events, "has_more": len(job["_events"]) > limit})
                if parts[3:] == ["cancel"] and self.command == "POST":
                    if job["status"] in ("succeeded", "failed", "cancelled"):
                        return self._error(400, f"Job {job['id']} has already ended ({job['status']})", {})
                    job["status"] = "cancelled"
                    _event(job, "Job cancelled")
                    return self._json(_public(job))
        return self._error(404, f"no route {self.command} {self.path}", {})

    def _upload(self, body: Any) -> None:
        fake = self.fake
        if not isinstance(body, dict) or not isinstance(body.get("file"), dict):
            return self._error(400, "'file' is a required multipart field", {})
        if body.get("purpose") != "fine-tune":
            return self._error(400, f"Invalid purpose {body.get('purpose')!r}: use 'fine-tune'", {})
        file_id = f"file-{len(fake.files) + 1}"
        content = body["file"]["content"]
        fake.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": body["file"]["filename"],
            "purpose": "fine-tune",
            "_content": content,
        }
        return self._json(_public(fake.files[file_id]))

    def _create_job(self, body: Any) -> None:
        fake = self.fake
        if not isinstance(body, dict) or not body.get("training_file") or not body.get("model"):
            return self._error(400, "'training_file' and 'model' are required", {})
        for key in ("training_file", "validation_file"):
            if body.get(key) and body[key] not in fake.files:
                return self._error(400, f"invalid {key}: {body[key]} does not exist", {})
        allowed = fake.fine_tunable if fake.fine_tunable is not None else tuple(fake.models)
        if body["model"] not in allowed:
            return self._error(400, f"Model {body['model']} is not available for fine-tuning or does not exist.", {})
        job_id = f"ftjob-{len(fake.jobs) + 1:04d}"
        job: dict[str, Any] = {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": body["model"],
            "created_at": int(time.time()),
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "suffix": body.get("suffix"),
            "status": "validating_files",
            "fine_tuned_model": None,
            "trained_tokens": None,
            "error": None,
            "_polls": 0,
            "_events": [],
        }
        _event(job, f"Validating training file: {body['training_file']}")
        fake.jobs[job_id] = job
        return self._json(_public(job))

    def _advance(self, job: dict[str, Any]) -> None:
        """One step of a job's life per read, as if time passed on the service."""
        fake = self.fake
        status = job["status"]
        if status == "validating_files":
            problem = _training_file_problem(fake.files[job["training_file"]]["_content"])
            if problem is not None:
                job["status"] = "failed"
                job["error"] = {"code": "invalid_training_file", "message": problem, "param": "training_file"}
                _event(job, f"Training file validation failed: {problem}")
            else:
                job["status"] = "queued"
                _event(job, "Files validated, moving job to queued state")
        elif status == "queued":
            job["status"] = "running"
            _event(job, "Fine-tuning job started")
        elif status == "running":
            job["_polls"] += 1
            _event(job, f"Step {job['_polls']}/{fake.job_running_polls}: training loss={1.0 / job['_polls']:.3f}")
            if job["_polls"] >= fake.job_running_polls:
                if fake.job_failure is not None:
                    job["status"] = "failed"
                    job["error"] = {**fake.job_failure, "param": None}
                    _event(job, f"Fine-tuning job failed: {fake.job_failure.get('message')}")
                else:
                    suffix = job.get("suffix") or "custom"
                    job["status"] = "succeeded"
                    job["fine_tuned_model"] = f"ft:{job['model']}:kvgraph:{suffix}:{job['id'][-4:]}"
                    content = fake.files[job["training_file"]]["_content"]
                    job["trained_tokens"] = len(content.split())
                    fake.models.append(job["fine_tuned_model"])
                    _event(job, "The job has successfully completed")

    # -- responses ------------------------------------------------------------------------

    def _json(self, obj: Any, status: int = 200, extra: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(obj).encode(), "application/json", extra)

    def _error(self, status: int, message: str, extra: dict[str, str]) -> None:
        self._json({"error": {"message": message, "type": "invalid_request_error", "code": status}}, status, extra)

    def _raw(self, status: int, payload: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body as {name: text} and, for file fields, {name: {"filename", "content"}}."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, Any] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if not isinstance(name, str):
            continue
        if filename is not None:
            fields[name] = {"filename": filename, "content": data.decode("utf-8", "replace"), "bytes": len(data)}
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as the API shows it (without the server's own "_" fields)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _event(job: dict[str, Any], message: str) -> None:
    job["_events"].append(
        {
            "object": "fine_tuning.job.event",
            "id": f"ftevent-{job['id']}-{len(job['_events']) + 1}",
            "created_at": int(time.time()),
            "level": "info",
            "message": message,
        }
    )


def _training_file_problem(content: str) -> str | None:
    """What the service would reject in a chat training file, or None."""
    lines = [line for line in content.splitlines() if line.strip()]
    if not lines:
        return "the file is empty"
    for n, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            return f"line {n} is not valid JSON"
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            return f"line {n} has no 'messages' list"
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            return f"line {n} has no assistant message"
    return None
