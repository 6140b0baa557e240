"""The knowledge-base routes: health, stats, documents, jobs, search and ask."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from kvgraph.errors import InvalidInputError, KvgraphError
from kvgraph.kb import KnowledgeBase
from kvgraph.server.answers import answer_events, ask_json, parse_filters
from kvgraph.server.engine import Engine
from kvgraph.server.errors import ApiError
from kvgraph.server.jobs import Job, JobProgress
from kvgraph.server.models import AskRequest, SearchRequest
from kvgraph.server.security import UPLOAD_DIR, upload_target
from kvgraph.server.serialize import document_dict, file_id, hits_dicts
from kvgraph.server.streaming import event_response, raw_event_response, sse, start_stream

router = APIRouter(prefix="/api")
health_router = APIRouter(prefix="/api")  # open without a key: load balancers and probes call it
POLL_S = 0.1


class DocumentNotFoundError(InvalidInputError):
    """A file id that names no ingested file."""


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Depends(engine_of)


# ---------------------------------------------------------------------- health


@health_router.get("/health", tags=["health"], summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get("/ready", tags=["health"], summary="Readiness: the knowledge base is open and the model loaded")
async def ready(engine: Engine = EngineDep) -> JSONResponse:
    if engine.startup_error:
        return JSONResponse({"ready": False, "error": "startup failed (the server log says why)"}, status_code=503)
    ok = engine.ready.is_set()
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/stats", tags=["knowledge base"], summary="Counts, settings and disk use of the knowledge base")
async def stats(engine: Engine = EngineDep) -> dict[str, Any]:
    def read(kb: KnowledgeBase) -> dict[str, Any]:
        out = kb.stats()
        out["generation"] = engine.generation()
        out["readers"] = engine.config.readers
        out["llm"] = kb.llm() is not None
        out["doc_graph"] = (kb.path / "doc-graph" / "graph.npz").exists()
        return out

    return await engine.read(read)


# ---------------------------------------------------------------------- documents


@router.get("/documents", tags=["documents"], summary="The ingested files")
async def list_documents(engine: Engine = EngineDep) -> list[dict[str, Any]]:
    return await engine.read(lambda kb: [document_dict(d, kb.path) for d in kb.documents()])


@router.post(
    "/documents",
    tags=["documents"],
    status_code=202,
    summary="Upload one or many files (multipart field 'files'); they are ingested by a background job",
)
async def upload_documents(files: list[UploadFile], engine: Engine = EngineDep) -> dict[str, Any]:
    if not files:
        raise ApiError(400, "no files in the upload (multipart field 'files')")
    targets = [upload_target(engine.path, f.filename or "") for f in files]  # refuse the request before writing
    if len({t.name for t in targets}) != len(targets):
        raise ApiError(400, "the upload names one file twice")
    folder = engine.path / UPLOAD_DIR
    folder.mkdir(exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for upload, target in zip(files, targets):
            staged.append((await _stage(upload, folder), target))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    job = engine.jobs.new("ingest")
    job.progress_update(files=[t.name for t in targets])

    def ingest(kb: KnowledgeBase) -> None:
        # The files are moved into place by the writer, so a reader never sees a half-written one.
        try:
            for tmp, target in staged:
                os.replace(tmp, target)
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
        report = kb.ingest([str(t) for t in targets], progress=JobProgress(job))
        job.update(result=report.to_dict())

    _run_job(engine, job, ingest)
    return job.snapshot()


async def _stage(upload: UploadFile, folder: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(1 << 20):
                out.write(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


@router.delete("/documents/{doc_id}", tags=["documents"], summary="Delete an ingested file and all its chunks")
async def delete_document(doc_id: str, engine: Engine = EngineDep) -> dict[str, Any]:
    def delete(kb: KnowledgeBase) -> dict[str, Any]:
        record = next((d for d in kb.documents() if file_id(str(d["path"])) == doc_id), None)
        if record is None:
            raise DocumentNotFoundError(f"no ingested file with id {doc_id!r} (GET /api/documents lists them)")
        path = Path(str(record["path"]))
        chunks = kb.delete(path)
        if path.parent == (kb.path / UPLOAD_DIR).resolve():  # an uploaded copy is ours to remove
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return {"id": doc_id, "path": str(path), "chunks_deleted": chunks}

    return await engine.write(delete)


@router.post("/sync", tags=["documents"], status_code=202, summary="Re-scan ingested files and folders (a job)")
async def sync(engine: Engine = EngineDep) -> dict[str, Any]:
    job = engine.jobs.new("sync")

    def run(kb: KnowledgeBase) -> None:
        job.update(result=kb.sync(progress=JobProgress(job)).to_dict())

    _run_job(engine, job, run)
    return job.snapshot()


def _run_job(engine: Engine, job: Job, fn: Callable[[KnowledgeBase], None]) -> None:
    """Run ``fn`` as ``job`` on the writer thread: running, then done or failed (with kvgraph's message)."""

    def wrapped(kb: KnowledgeBase) -> None:
        job.update(state="running", started_at=time.time())
        try:
            fn(kb)
        except Exception as e:
            job.update(
                state="failed", error=str(e) if isinstance(e, KvgraphError) else f"internal error ({type(e).__name__})"
            )
            raise
        finally:
            if job.state != "failed":
                job.update(state="done")
            job.update(finished_at=time.time())

    engine.write_later(wrapped)


# ---------------------------------------------------------------------- jobs


@router.get("/jobs", tags=["jobs"], summary="Background jobs of this server, newest first")
async def list_jobs(engine: Engine = EngineDep) -> list[dict[str, Any]]:
    return [j.snapshot() for j in engine.jobs.all()]


@router.get("/jobs/{job_id}", tags=["jobs"], summary="One job: state, progress, result or error")
async def get_job(job_id: str, engine: Engine = EngineDep) -> dict[str, Any]:
    return engine.jobs.get(job_id).snapshot()


@router.get(
    "/jobs/{job_id}/events",
    tags=["jobs"],
    summary="The job's progress as server-sent events ('progress' on every change, then 'done')",
    response_class=StreamingResponse,
)
async def job_events(job_id: str, request: Request, engine: Engine = EngineDep) -> StreamingResponse:
    job = engine.jobs.get(job_id)

    async def events() -> Any:
        seen = -1
        waited = 0.0
        while True:
            snap = job.snapshot()
            if snap["version"] != seen:
                seen = snap["version"]
                waited = 0.0
                yield sse("progress", snap)
                if snap["state"] in ("done", "failed"):
                    yield sse("done", snap)
                    return
            elif waited >= 15:
                waited = 0.0
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)
            waited += POLL_S

    return raw_event_response(events())


# ---------------------------------------------------------------------- search and ask


@router.post("/search", tags=["search"], summary="The chunks that best match a query, with scores and sources")
async def search(body: SearchRequest, engine: Engine = EngineDep) -> dict[str, Any]:
    filters = parse_filters(body.filters)

    def read(kb: KnowledgeBase) -> dict[str, Any]:
        hits = kb.search(body.query, k=body.k, filters=filters, mode=body.mode)
        return {"query": body.query, "mode": body.mode or kb.settings.mode, "hits": hits_dicts(kb, hits, body.mode)}

    return await engine.read(read)


@router.post(
    "/ask",
    tags=["search"],
    summary="Answer a question with citations; with stream=true as server-sent events",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def ask(body: AskRequest, engine: Engine = EngineDep) -> Response:
    filters = parse_filters(body.filters)
    if not body.stream:
        result = await engine.read(lambda kb: ask_json(kb, body.question, body.k, body.mode, filters))
        return JSONResponse(result)
    events = await start_stream(engine, answer_events(body.question, body.k, body.mode, filters))
    return event_response(events)
