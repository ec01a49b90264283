"""Where per-source work runs: in this process, in a local process pool, or on a Ray cluster."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import traceback
from typing import Iterator

from s2vdata.build import SourceJob, SourceOutcome, process_source

log = logging.getLogger(__name__)


def run_one(job: SourceJob) -> SourceOutcome:
    """Returns the outcome of one source; an internal error becomes a failed outcome, never an exception."""
    try:
        return process_source(job)
    except Exception as e:  # noqa: BLE001 - one broken source must not stop the build; it is reported and retried
        log.error("%s: internal error\n%s", job.path, traceback.format_exc())
        return SourceOutcome(job.source_id, "failed", reason=f"internal error: {type(e).__name__}: {e}".splitlines()[0][:200])


def run_jobs(work: list[SourceJob], *, jobs: int = 1, executor: str = "local",
             ray_address: str | None = None) -> Iterator[SourceOutcome]:
    """Yields the outcome of every job, in completion order, running them `jobs` at a time."""
    if executor == "ray":
        from s2vdata.ray_executor import run_ray

        yield from run_ray(work, ray_address=ray_address, run=run_one)
        return
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r}: use local or ray")
    if jobs <= 1 or len(work) <= 1:
        for job in work:
            yield run_one(job)
        return
    # spawn: PyAV and OpenCV keep threads that a forked child must not inherit
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, job) for job in work]
        for fut in cf.as_completed(futures):
            yield fut.result()
