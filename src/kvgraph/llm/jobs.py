"""Run paid LLM jobs on a thread pool, handing each result back as it arrives, stopping at the first error.

LLM servers batch concurrent requests, so extraction runs several at once. An error cancels
what has not started and is raised; whatever finished was already cached by the job itself,
so a re-run resumes from there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

Job = TypeVar("Job")


def run_jobs(
    jobs: Sequence[Job],
    work: Callable[[Job], Any],
    on_result: Callable[[Job, Any], None],
    concurrency: int,
    name: str = "kvgraph-llm",
) -> None:
    """``work(job)`` for every job on ``concurrency`` threads; ``on_result(job, result)`` in the calling thread."""
    with ThreadPoolExecutor(concurrency, thread_name_prefix=name) as pool:
        futures: dict[Future[Any], Job] = {pool.submit(work, job): job for job in jobs}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in finished:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                on_result(futures[future], future.result())
