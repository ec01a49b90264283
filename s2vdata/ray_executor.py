"""Per-source work as Ray tasks: the driver plans and commits, any node of the cluster decodes, checks and cuts.

A task is `run(job)` (`executors.run_one`), which reads the source and writes
the sidecar and part tar at the absolute paths in the job, so every node must
see the data folder at the same path (a shared POSIX filesystem: see
docs/scaling.md). The results do not depend on where a task ran: the commit
on the driver reads them in registry order, and `encode_clip` makes the same
bytes from the same pictures (see docs/scaling.md for what the nodes need).

A worker that dies mid-task (killed, out of memory, node lost) is retried by
Ray up to MAX_RETRIES times; because a source's files are written atomically
and a finished source is skipped, a retry or a re-run redoes only what was
not finished.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Callable, Iterable, Iterator, TypeVar

from s2vdata.jobs import failed

T = TypeVar("T")  # a job
R = TypeVar("R")  # its result

log = logging.getLogger(__name__)

INSTALL_HINT = "--executor ray needs Ray: pip install 's2v[ray]'"
MAX_RETRIES = 3  # a task whose worker dies is run again up to this many times
# environment every Ray process of ours gets: Ray must never phone home (no internet on data machines, and no surprise)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}
JOIN_HINT = "start the head with `ray start --head --port=6379` and pass its host:port, or leave --ray-address out for a local instance"
CONNECT_TIMEOUT_S = 10.0  # how long a cluster's head may take to accept a connection
MIN_IN_FLIGHT = 8  # tasks kept submitted even on a tiny cluster, so no CPU waits for the driver


def _import_ray():
    """Returns the ray module, or raises ImportError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return ray


def _check_reachable(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raises ValueError if a host:port Ray address does not accept connections."""
    # ray.init keeps retrying an address where nothing listens for many minutes without a word
    if "://" in address or address in ("auto", "local"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"Ray address {address!r}: expected host:port (e.g. 10.0.0.1:6379), auto, or ray://host:10001")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ValueError(f"Ray address {address!r}: nothing answers there ({e.strerror or e}); {JOIN_HINT}") from e


def _join_failure(error: BaseException) -> str:
    """Returns why joining a cluster failed and what to do, from the innermost error Ray chained."""
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    text = " ".join(str(e) for e in chain)
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        return ("the cluster wants an authentication token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                "(or the token file) as on the cluster's nodes; see docs/scaling.md")
    return f"{str(error).splitlines()[0].rstrip('.')}; {JOIN_HINT}"


def start_ray(*, ray_address: str | None = None, num_cpus: int | None = None) -> bool:
    """Returns True if this call started (or connected) Ray and the caller must shut it down, False if it was already up.

    With `ray_address` ("auto", "host:6379", "ray://host:10001"), or else the
    RAY_ADDRESS environment variable (set by `ray job submit`), it joins that
    cluster; without either it starts a local instance on this machine's
    cores, even if a `ray start` cluster runs here. Usage statistics are
    switched off in this process and in every worker.
    """
    ray = _import_ray()
    os.environ.update(RAY_ENV)
    if ray.is_initialized():
        return False
    ray_address = ray_address or os.environ.get("RAY_ADDRESS") or None
    if ray_address:
        _check_reachable(ray_address)
        try:
            # the cluster's workers do not inherit this process's environment: give it to them with the job
            ray.init(address=ray_address, runtime_env={"env_vars": dict(RAY_ENV)}, log_to_driver=False,
                     logging_level=logging.WARNING)
        except ConnectionError as e:
            raise ValueError(f"Ray address {ray_address!r}: {_join_failure(e)}") from e
    else:
        # a local instance and its workers inherit os.environ; a job runtime_env here would only
        # make Ray start fresh workers instead of its prestarted ones (seconds on a small machine)
        # address="local": ray.init(address=None) would join a `ray start` cluster it finds on this machine
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING)
    return True


def _lost_reason(error: Exception) -> str:
    """Returns the one-line reason of a task Ray could not complete."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"ray task lost after {MAX_RETRIES} retries: {type(error).__name__}: {first}"[:300]


def run_ray(work: Iterable[T], *, ray_address: str | None = None, run: Callable[[T], R], max_in_flight: int | None = None,
            lost: Callable[[T, str], R] | None = None) -> Iterator[R]:
    """Yields the result of `run` on every item of work, in completion order, each run as a Ray task.

    `run` must never raise for a bad item (`executors.run_one` turns errors
    into failed outcomes); should it raise anyway, or should a task's worker
    die more than MAX_RETRIES times, that item's result is `lost(item,
    reason)` (default: a failed SourceOutcome), and the others go on. At most
    `max_in_flight` tasks are submitted at once (default: twice the cluster's
    CPUs, at least MIN_IN_FLIGHT), so a plan of 100,000 items does not flood
    the scheduler. Builds run sources this way; fetch runs URLs.
    """
    lost = lost or (lambda job, reason: failed(job, reason))
    ray = _import_ray()
    work = list(work)
    if not work:
        return
    started = start_ray(ray_address=ray_address)
    pending: dict = {}
    try:
        # retry_exceptions=False: an exception is the source's own verdict; only a dead worker is worth a retry
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(run)
        limit = max_in_flight or max(MIN_IN_FLIGHT, 2 * int(ray.cluster_resources().get("CPU", 1)))
        queue = iter(work)

        def submit() -> None:
            while len(pending) < limit:
                job = next(queue, None)
                if job is None:
                    return
                pending[task.remote(job)] = job

        submit()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", e)
                    log.error("%s: task raised: %s", job, e)
                    outcome = lost(job, f"task raised: {type(cause).__name__}: {cause}".splitlines()[0][:300])
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.OutOfMemoryError, ray.exceptions.ObjectLostError,
                        ray.exceptions.TaskCancelledError) as e:
                    log.error("%s: %s", job, _lost_reason(e))
                    outcome = lost(job, _lost_reason(e))
                yield outcome
            submit()
    finally:
        # a consumer that stops early (Ctrl-C, an error in the commit) must not leave tasks running on a shared cluster
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
