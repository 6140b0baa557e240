"""Evaluation runs over the served knowledge base: retrieval metrics per mode, optionally answer scores.

A run takes questions with their gold chunks (``relevant_ids``, as ``kvgraph eval generate``
writes them) or gold files (``relevant_files``: a hit counts when it comes from one of them),
searches each question in every mode asked for, and scores the rankings with
:func:`kvgraph.eval.metrics.evaluate_retrieval` (hit rate, MRR, recall, precision, nDCG at each
k). With ``score_answers`` the questions that have reference answers are also asked and scored
with :func:`kvgraph.eval.answers.evaluate_answers`. Runs and results are kept in
``KB/eval-runs.sqlite``; the page charts them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from kvgraph.kb import KnowledgeBase
from kvgraph.server.api import EngineDep
from kvgraph.server.engine import Engine
from kvgraph.server.models import EvalRunRequest

router = APIRouter(prefix="/api/eval/runs", tags=["evaluation"])


@router.get("", summary="Evaluation runs, newest first, with their results")
async def list_runs(engine: Engine = EngineDep) -> list[dict[str, Any]]:
    return [r.to_dict() for r in engine.eval_runs.list()]


@router.post("", status_code=202, summary="Start an evaluation run (runs in the background)")
async def start_run(body: EvalRunRequest, engine: Engine = EngineDep) -> dict[str, Any]:
    params = body.model_dump()
    run = engine.eval_runs.create(body.name or f"{len(body.questions)} questions", params)

    def work(kb: KnowledgeBase) -> None:
        engine.eval_runs.set_state(run.id, "running")
        try:
            results = evaluate(kb, body)
        except Exception as e:
            from kvgraph.errors import KvgraphError

            message = str(e) if isinstance(e, KvgraphError) else f"internal error ({type(e).__name__})"
            engine.eval_runs.set_state(run.id, "failed", error=message)
            return
        engine.eval_runs.set_state(run.id, "done", results=results)

    engine.readers.submit(work)
    return engine.eval_runs.get(run.id).to_dict()


@router.get("/{run_id}", summary="One evaluation run")
async def get_run(run_id: str, engine: Engine = EngineDep) -> dict[str, Any]:
    return engine.eval_runs.get(run_id).to_dict()


@router.delete("/{run_id}", summary="Delete an evaluation run")
async def delete_run(run_id: str, engine: Engine = EngineDep) -> dict[str, Any]:
    engine.eval_runs.delete(run_id)
    return {"id": run_id, "deleted": True}


def evaluate(kb: KnowledgeBase, body: EvalRunRequest) -> dict[str, Any]:
    """Retrieval metrics per mode (and answer scores when asked) for the run's questions."""
    from kvgraph.errors import InvalidInputError
    from kvgraph.eval.metrics import evaluate_retrieval

    ks = sorted(set(body.ks))
    if ks[0] < 1 or ks[-1] > 100:
        raise InvalidInputError(f"ks must be between 1 and 100, got {ks}")
    gold: dict[str, list[str]] = {}
    by_file: dict[str, bool] = {}
    for i, q in enumerate(body.questions):
        qid = f"q{i + 1}"
        by_file[qid] = not q.relevant_ids and bool(q.relevant_files)
        gold[qid] = list(q.relevant_ids) or [Path(f).name for f in q.relevant_files]
    modes: dict[str, Any] = {}
    if not any(gold.values()) and not body.score_answers:
        raise InvalidInputError("no question has relevant_ids or relevant_files, and score_answers is off")
    for mode in dict.fromkeys(body.modes) if any(gold.values()) else ():
        results: dict[str, list[str]] = {}
        t0 = time.perf_counter()
        for i, q in enumerate(body.questions):
            qid = f"q{i + 1}"
            hits = kb.search(q.question, k=ks[-1], mode=mode)
            if by_file[qid]:  # rank files: each file once, at its best chunk's place
                names = [Path(str(h.node.metadata.get("file_path") or "")).name for h in hits]
                results[qid] = list(dict.fromkeys(n for n in names if n))
            else:
                results[qid] = [h.node.id for h in hits]
        seconds = time.perf_counter() - t0
        report = evaluate_retrieval(results, gold, ks=ks)
        modes[mode] = {
            "means": report.means,
            "n_queries": report.n_queries,
            "skipped_no_gold": report.skipped_no_gold,
            "ms_per_query": round(1000 * seconds / max(len(body.questions), 1), 2),
            "rows": [{"question": body.questions[int(r.qid[1:]) - 1].question, **r.to_dict()} for r in report.rows],
        }
    out: dict[str, Any] = {"ks": ks, "modes": modes}
    if body.score_answers and any(q.answers for q in body.questions):
        from kvgraph.eval.answers import evaluate_answers
        from kvgraph.eval.datasets import EvalDataset, Query

        queries = [Query(f"q{i + 1}", q.question, [], list(q.answers)) for i, q in enumerate(body.questions)]
        answers = evaluate_answers(kb, EvalDataset("server", [], queries), llm=kb.llm())
        out["answers"] = answers.to_dict()
    finite: dict[str, Any] = _finite(out)
    return finite


def _finite(value: Any) -> Any:
    """NaN (a metric with nothing to average) as null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
