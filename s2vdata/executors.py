"""Where per-source work runs: in this process, in a pool of local worker processes, or on a Ray cluster.

Whatever the executor, one bad source costs one source: an error inside the
work becomes a failed outcome (`run_one`), and a worker process that dies
(the out-of-memory killer, a crash in a native library) costs the source it
was working on, never the build. Locally, that source is tried once more in
a fresh process (a passing kill gets a second chance), then reported failed
with the signal that killed it; the other sources go on, and the build exits 1.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import traceback
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import wait

from s2vdata.jobs import SourceJob, SourceOutcome, failed
from s2vdata.media import set_threads
from s2vdata.worker import process_source

log = logging.getLogger(__name__)

LOCAL_ATTEMPTS = 2  # a source whose worker process dies is run this many times in all


def run_one(job: SourceJob) -> SourceOutcome:
    """Returns the outcome of one source; an internal error becomes a failed outcome, never an exception."""
    try:
        return process_source(job)
    except Exception as e:  # noqa: BLE001 - one broken source must not stop the build; it is reported and retried
        log.error("%s: internal error\n%s", job.path, traceback.format_exc())
        return failed(job, f"internal error: {type(e).__name__}: {e}")


def run_jobs(
    work: list[SourceJob], *, jobs: int = 1, executor: str = "local", ray_address: str | None = None
) -> Iterator[SourceOutcome]:
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
    yield from _run_pool(work, processes=jobs)


def _cores() -> int:
    """Returns the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _worker_main(conn, threads: int = 0) -> None:
    """A worker process: runs the jobs the driver sends until it sends None; `threads`: FFmpeg's threads per decoder."""
    # Ctrl-C goes to the whole process group: the driver decides what stops, not each worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(threads)
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(run_one(job))


class _Worker:
    """One local worker process, the pipe to it, and the job it is on."""

    def __init__(self, ctx, threads: int = 0):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, threads), daemon=True)
        self.process.start()
        child.close()
        self.job: SourceJob | None = None

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, EOFError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _death(process) -> str:
    """Returns how a worker process ended, in words."""
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (the out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with code {code}"


def _run_pool(work: list[SourceJob], *, processes: int) -> Iterator[SourceOutcome]:
    """Yields the outcome of every job run in `processes` worker processes, replacing any that dies."""
    # spawn: PyAV and OpenCV keep threads that a forked child must not inherit
    ctx = mp.get_context("spawn")
    queue = deque(work)
    attempts: dict[str, int] = {}
    # the cores shared out: with a worker per core, each decodes on one thread (FFmpeg's own threads would only
    # add their overhead: docs/performance.md)
    threads = max(1, _cores() // processes)
    workers = [_Worker(ctx, threads) for _ in range(min(processes, len(work)))]
    try:
        while queue or any(w.job is not None for w in workers):
            for i, w in enumerate(workers):
                if w.job is None and queue:
                    if not w.process.is_alive():
                        w.stop()
                        workers[i] = w = _Worker(ctx, threads)
                    w.job = queue.popleft()
                    attempts[w.job.source_id] = attempts.get(w.job.source_id, 0) + 1
                    try:
                        w.conn.send(w.job)
                    except OSError:
                        pass  # it died just now: its sentinel says so below
            busy = [w for w in workers if w.job is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for i, w in enumerate(workers):
                if w.job is None or (w.conn not in ready and w.process.sentinel not in ready):
                    continue
                try:
                    outcome = w.conn.recv() if w.conn.poll() else None
                except (EOFError, OSError):
                    outcome = None
                if outcome is not None:
                    w.job = None
                    yield outcome
                    continue
                # the worker died on its job: that job alone pays, once more in a fresh process, then failed
                w.process.join(timeout=5)  # its pipe may close before it is reaped
                job, how = w.job, _death(w.process)
                w.job = None
                w.stop()
                workers[i] = _Worker(ctx, threads)
                log.error("%s: worker process %s", job.path, how)
                if attempts[job.source_id] < LOCAL_ATTEMPTS:
                    queue.appendleft(job)
                else:
                    yield failed(job, f"worker process {how} while working on it, {attempts[job.source_id]} times")
    finally:
        for w in workers:
            w.stop()
