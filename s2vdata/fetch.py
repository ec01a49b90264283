"""`s2vdata fetch`: download the URLs of a URL file into data/sources/ and record every outcome in sources.csv.

The run, on the driver: read the URL file (`urlfile`), plan a download for
every request not done yet, run the downloads (`download`) in threads here or
as tasks on a Ray cluster, and register each request's row, in batches, in
the order of the URL file. Only the driver writes sources.csv; a download
reaches data/sources/ whole before its row is written, so a kill at any
moment leaves no `ok` row for a partial file, and a re-run skips what is
`ok`, retries what failed and picks up new lines. The data folder is a local
path or a bucket (`storage.Location`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from yt_dlp.utils import parse_bytes

from s2vdata.csvtext import cell
from s2vdata.download import (
    Cancelled,
    Fetched,
    FetchOptions,
    FetchTask,
    close_sessions,
    download,
    lost,
    staging_folder,
)
from s2vdata.fetch_reasons import classify
from s2vdata.registry import DIGITS, Registry, now_iso
from s2vdata.storage import Location
from s2vdata.targets import load_targets
from s2vdata.urlfile import (
    Request,
    UrlLine,
    read_urls,
    request_id,
    source_id_for,
    unique_requests,
)

__all__ = ["FetchOptions", "FetchReport", "classify", "fetch_urls", "read_urls", "source_id_for"]

log = logging.getLogger(__name__)

# Registry rewrites are batched: at most every this many finished URLs or seconds, and at the end.
_FLUSH_ROWS = 200
_FLUSH_SECONDS = 10.0
# ...and rewriting takes at most this share of the driver's time: sources.csv is rewritten whole, which takes
# seconds at 100,000 rows, so a long run spaces its rewrites out instead of spending its time on them
_WRITE_SHARE = 0.1
# a Ray fetch task waits on the network: it asks for a sliver of a CPU, so --jobs, not the CPU count, sets how many run
RAY_TASK_CPUS = 0.01


@dataclass
class FetchReport:
    """What a fetch run did: counts, failures by reason, and the registry rows it wrote or kept."""

    ok: int = 0  # downloaded in this run
    failed: int = 0  # ended failed in this run
    skipped: int = 0  # already ok (or failed with retry_failed off), or a duplicate: nothing done
    reasons: collections.Counter = field(default_factory=collections.Counter)  # failed by reason
    rows: list[dict] = field(default_factory=list)  # one per source of the file, in file order


def fetch_urls(
    urls_file: Path,
    *,
    data_dir: Location | Path | str,
    options: FetchOptions,
    progress=None,
    executor: str = "local",
    ray_address: str | None = None,
) -> FetchReport:
    """Returns a FetchReport after downloading every URL of `urls_file` into `data_dir` and registering it.

    Each URL (each time range of it, with sections) ends as one row of
    data/sources.csv: `ok` with its file in data/sources/ and metadata, or
    `failed` with a one-line reason. Rows already `ok` are skipped (their
    files untouched); `failed` rows are retried when options.retry_failed.
    New rows are registered in the order of the URL file, whatever order the
    downloads end in. `data_dir` is a local folder or a bucket's prefix
    (`s3://bucket/data`). With executor "ray" the downloads run as Ray tasks
    spread over the nodes of the cluster at `ray_address` (default: a local
    instance), options.jobs at once per node. Raises ValueError for a
    malformed URL file or option (bad usage), ImportError when Ray is asked
    for and missing.

    progress, when given, is called with one dict per event (calls are
    serialised). Every event has the keys "event", "done" (URLs settled,
    skipped ones included), "total" (URLs in the file after removing
    duplicates), "bytes" (bytes downloaded in this run so far) and "rate"
    (bytes per second since the run started):
      {"event": "start", ...}                          once, before any download
      {"event": "bytes", ...}                          as bytes arrive (with Ray: as each download ends)
      {"event": "url", "source_id", "status", "reason", ...}   each URL settled
    status is the row's ("ok" or "failed", also for rows skipped as already
    done) or "duplicate" for a second URL of a video already in this run.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}: use local or ray")
    data = Location(data_dir)
    cookies = _check(options, data=data)
    lines = read_urls(urls_file, default_target=options.target)
    _warn_about_targets(lines)
    requests = unique_requests(lines, sections=options.sections)
    ledger = _Ledger(Registry(data), total=len(requests), progress=progress)
    _remove_partials(data)
    tasks = _plan(requests, data=data, options=options, cookies=cookies, ledger=ledger)
    ledger.start()
    try:
        if executor == "ray":
            _download_on_ray(tasks, jobs=options.jobs, ray_address=ray_address, data=data, ledger=ledger)
        else:
            _download_in_threads(tasks, jobs=options.jobs, ledger=ledger)
    finally:
        ledger.close()
        _remove_empty_staging(data)
    report = ledger.report
    log.info("fetch: %d ok, %d failed, %d skipped", report.ok, report.failed, report.skipped)
    return report


# --------------------------------------------------------------------------- before the run


def _check(options: FetchOptions, *, data: Location) -> str | None:
    """Returns the cookies file's text (None without one) once the options and the data folder are usable; raises ValueError."""
    if options.rate_limit and parse_bytes(options.rate_limit) is None:
        raise ValueError(f"bad rate limit {options.rate_limit!r}: give bytes per second like 500K or 2M")
    if options.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, not {options.jobs}")
    if not data.is_local:
        scheme, _, path = data.url.partition("://")
        bucket = Location(f"{scheme}://{path.split('/', 1)[0]}", options=data.options)
        if not bucket.exists():
            raise ValueError(
                f"{bucket}: no such bucket, or no access to it: create it or check the credentials "
                "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, --storage-option)"
            )
    if not options.cookies:
        return None
    try:
        # read here and sent with every task: a Ray node may not see the driver's file
        return Path(options.cookies).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(
            f"cookies file {options.cookies} not found or unreadable ({e}): export it from your browser (cookies.txt)"
        ) from e


def _warn_about_targets(lines: list[UrlLine]) -> None:
    missing = [url for url, target, _ in lines if not target]
    if missing:
        log.warning("%d URL(s) have no target (first: %s): give one after the URL or pass --target", len(missing), missing[0])
    # a typo in a target is not fatal (the file still lands), but no `build --target` would pick it up
    try:
        known = set(load_targets())
    except ValueError as e:
        log.warning("cannot check target names: %s", e)
        return
    unknown = collections.Counter(target for _, target, _ in lines if target and target not in known)
    for name, n in unknown.items():
        log.warning(
            "target %r (%d URL(s)) is not a known preset (%s): `build --target %s` needs one (add it with a targets TOML file)",
            name,
            n,
            ", ".join(sorted(known)),
            name,
        )


def _remove_partials(data: Location) -> None:
    # partial downloads of a run that was killed: never resumed (the remote file may have changed since)
    stale = staging_folder(data)
    if stale.is_dir():
        for leftover in stale.iterdir():
            log.info("removing a partial download left by an earlier run: %s", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _remove_empty_staging(data: Location) -> None:
    # leave no empty staging folders behind; a folder still holding something is kept to inspect
    folder = staging_folder(data)
    for path in (folder, folder.parent) if data.is_local else (folder,):
        try:
            path.rmdir()
        except OSError:
            pass


# --------------------------------------------------------------------------- the plan


def _plan(
    requests: Iterable[Request], *, data: Location, options: FetchOptions, cookies: str | None, ledger: _Ledger
) -> Iterator[FetchTask]:
    """Yields a task for every request that needs a download; settles the others in the ledger on the way.

    Lazily: a request's id is found only when the runner asks for the next task (matching a URL against
    yt-dlp's extractors takes milliseconds), so downloads start at once even for a file of millions.
    """
    existing = ledger.existing
    known = {r["origin"]: r["source_id"] for r in existing.values() if r.get("origin")}
    # one listing instead of one request per `ok` row: on a bucket, a re-run of a large file stays cheap
    present = {f"sources/{f.name}" for f in (data / "sources").glob("*")}
    seen: set[str] = set()
    for index, request in enumerate(requests):
        sid = request_id(request, known=known)
        if sid in seen:
            # another URL of a video already in this run: one row per video
            log.info("%s: %s is the same video as an earlier line: skipped", sid, request.url)
            ledger.duplicate(index, sid)
            continue
        seen.add(sid)
        old = existing.get(sid)
        if _needs_download(old, present=present, options=options):
            added_at = (old or {}).get("added_at") or now_iso()
            yield FetchTask(index, sid, request, data, options, added_at=added_at, cookies=cookies)
            continue
        row = dict(old)
        if request.target and row.get("target") != request.target:
            log.info("%s: target %r -> %r (file kept)", sid, row.get("target"), request.target)
            row["target"] = request.target
        ledger.kept(index, row)


def _needs_download(row: dict | None, *, present: set[str], options: FetchOptions) -> bool:
    if row is None:
        return True
    if row.get("status") == "ok":
        if row.get("path") in present:
            return False
        log.warning("%s: registry says ok but %s is missing: fetching again", row["source_id"], row.get("path"))
        return True
    return options.retry_failed


# --------------------------------------------------------------------------- the runners


def _download_in_threads(tasks: Iterator[FetchTask], *, jobs: int, ledger: _Ledger) -> None:
    """Runs the tasks `jobs` at a time in threads of this process, settling each in the ledger as it ends.

    Ctrl-C (or any error) stops the downloads in flight at their next progress report (their partial
    files are removed) and settles the ones that had already finished; a second Ctrl-C stops waiting.
    """
    cancel = threading.Event()

    def on_bytes(n: int) -> None:
        if cancel.is_set():
            raise Cancelled()
        ledger.add_bytes(n)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fetch")
    running: set[concurrent.futures.Future] = set()
    try:
        while True:
            for task in itertools.islice(tasks, jobs - len(running)):
                running.add(pool.submit(download, task, on_bytes=on_bytes))
            if not running:
                break
            finished, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                ledger.fetched(future.result())
    except BaseException:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        for future in running:
            if future.done() and not future.cancelled():
                ledger.fetched(future.result())
        raise
    finally:
        pool.shutdown(wait=not cancel.is_set())
        close_sessions()


def _download_on_ray(tasks: Iterator[FetchTask], *, jobs: int, ray_address: str | None, data: Location, ledger: _Ledger) -> None:
    """Runs the tasks on a Ray cluster, spread over its nodes, about `jobs` at once per node; settles each as it ends.

    A task whose worker dies is retried by Ray, then settled failed (`worker lost`); Ctrl-C cancels the
    tasks in flight (their partial files are removed by the next run) and settles the finished ones.
    """
    first = next(tasks, None)
    if first is None:
        return  # everything is done already: no cluster needed
    from s2vdata.ray_executor import run_ray, start_ray

    started = start_ray(ray_address=ray_address)
    import ray

    try:
        # each node downloads from its own address: the in-flight cap is per node, SPREAD deals tasks out evenly
        nodes = max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
        results = run_ray(
            itertools.chain([first], tasks),
            run=download,
            lost=lost,
            max_in_flight=jobs * nodes,
            task_options={"num_cpus": RAY_TASK_CPUS, "scheduling_strategy": "SPREAD"},
        )
        with contextlib.closing(results):
            for fetched in results:
                ledger.add_bytes(fetched.bytes)
                ledger.fetched(_seen_by_driver(fetched, data=data))
    finally:
        if started:
            ray.shutdown()


def _seen_by_driver(fetched: Fetched, *, data: Location) -> Fetched:
    """Returns the outcome of a Ray task, made failed when its file is not where the driver sees the data folder."""
    row = fetched.row
    if data.is_local and row is not None and row["status"] == "ok" and not (data / row["path"]).is_file():
        # a local --data on a cluster: the node wrote to its own disk, which no build on the driver can read
        log.error(
            "%s: stored by a Ray node in %s, which the driver does not see: on a cluster, use a bucket "
            "(--data s3://...) or a filesystem every node mounts at the same path",
            row["source_id"],
            data,
        )
        keep = ("source_id", "target", "origin", "added_at")
        row = {k: (v if k in keep else "") for k, v in row.items()} | {"status": "failed", "reason": "not on a shared filesystem"}
        return Fetched(fetched.index, row, fetched.bytes)
    return fetched


# --------------------------------------------------------------------------- the ledger


def _same(a: dict, b: dict) -> bool:
    return all(cell(a.get(k), digits=DIGITS) == cell(b.get(k), digits=DIGITS) for k in set(a) | set(b))


class _Ledger:
    """The run's account of every request: counts, progress events, and the registry written in batches.

    A request is settled once (kept, duplicate, or fetched), in any order; its row reaches sources.csv
    once every earlier request is settled, so new rows are registered in the URL file's order wherever
    and whenever their downloads ended. A rewrite happens every _FLUSH_ROWS rows or _FLUSH_SECONDS (spaced
    out so that rewrites take at most _WRITE_SHARE of the time), and
    at `close`, which also writes the rows still waiting behind a request that never settled (Ctrl-C).
    """

    def __init__(self, registry: Registry, *, total: int, progress: Callable[[dict], None] | None):
        self.registry = registry
        self.existing = {r["source_id"]: r for r in registry.rows()}
        self.report = FetchReport()
        self.total = total
        self._progress = progress
        self._lock = threading.Lock()
        self._done = 0
        self._bytes = 0
        self._started = time.monotonic()
        self._rows: dict[int, dict] = {}  # every settled request's row, for the report
        self._waiting: dict[int, dict | None] = {}  # settled, behind an unsettled one: the row to write (None: nothing)
        self._next = 0  # the first request whose row is not yet queued for writing
        self._queued: list[dict] = []  # rows to write at the next rewrite
        self._last_write = time.monotonic()
        self._write_took = 0.0  # seconds the last rewrite took

    def start(self) -> None:
        self._emit("start")

    def add_bytes(self, n: int) -> None:
        """Counts bytes downloaded (called from download threads)."""
        if n:
            with self._lock:
                self._bytes += n
            self._emit("bytes")

    def kept(self, index: int, row: dict) -> None:
        """Settles a request whose row stays as it is (done before, or failed and not retried)."""
        self.report.skipped += 1
        self._settle(index, row)

    def duplicate(self, index: int, source_id: str) -> None:
        """Settles a second request for a source already in this run: no row of its own."""
        self.report.skipped += 1
        self._settle(index, None, source_id=source_id, status="duplicate")

    def fetched(self, result: Fetched) -> None:
        """Settles a request that was downloaded (or failed); an interrupted one (row None) stays unsettled."""
        row = result.row
        if row is None:
            return
        if row["status"] == "ok":
            self.report.ok += 1
        else:
            self.report.failed += 1
            self.report.reasons[row["reason"]] += 1
        self._settle(result.index, row)

    def close(self) -> None:
        """Writes every settled row still unwritten and fills the report's rows, in request order."""
        for index in sorted(self._waiting):
            self._queue(self._waiting.pop(index))
        self._write()
        self.report.rows = [self._rows[i] for i in sorted(self._rows)]

    def _settle(self, index: int, row: dict | None, *, source_id: str = "", status: str = "") -> None:
        old = self.existing.get(row["source_id"]) if row else None
        # a retry that fails the same way again changes nothing: sources.csv is left alone
        self._waiting[index] = row if row and (old is None or not _same(old, row)) else None
        if row:
            self._rows[index] = row
        while self._next in self._waiting:
            self._queue(self._waiting.pop(self._next))
            self._next += 1
        with self._lock:
            self._done += 1
        self._emit(
            "url",
            source_id=row["source_id"] if row else source_id,
            status=status or row["status"],
            reason=(row or {}).get("reason", ""),
        )
        since = time.monotonic() - self._last_write
        due = len(self._queued) >= _FLUSH_ROWS or since >= _FLUSH_SECONDS
        if due and since >= self._write_took / _WRITE_SHARE:
            self._write()

    def _queue(self, row: dict | None) -> None:
        if row is not None:
            self._queued.append(row)

    def _write(self) -> None:
        started = time.monotonic()
        if self._queued:
            self.registry.upsert(self._queued)
            self._queued = []
        self._last_write = time.monotonic()
        self._write_took = self._last_write - started

    def _emit(self, event: str, **extra) -> None:
        if self._progress is None:
            return
        with self._lock:
            elapsed = max(time.monotonic() - self._started, 1e-3)
            self._progress(
                {
                    "event": event,
                    "done": self._done,
                    "total": self.total,
                    "bytes": self._bytes,
                    "rate": self._bytes / elapsed,
                    **extra,
                }
            )
