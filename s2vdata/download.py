"""One download: a URL (or a time range of one) fetched with yt-dlp, checked, and stored whole in data/sources/.

`download(task)` is what a fetch runs for every request, in a thread of the
local process or as a Ray task on any node. A task is plain values (the
request, the data folder's Location, the options, the cookies' text); its
answer is the request's registry row: `ok` with the file's facts, or
`failed` with a short reason (`fetch_reasons`). It never writes the
registry: only the driver does.

Where the bytes go: yt-dlp writes into a staging folder, the download is
probed and hashed there, and only then reaches data/sources/, whole: by an
atomic rename when the data folder is local (the staging folder is
data/tmp/fetch/<source_id>/, on the same filesystem), by one upload when it
is in a bucket (the staging folder is in this machine's temporary folder).
Only yt-dlp's Python API is used, never its printed output.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yt_dlp
from yt_dlp.networking.exceptions import RequestError, TransportError
from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
from yt_dlp.utils import (
    ExtractorError,
    YoutubeDLError,
    download_range_func,
    parse_bytes,
)

from s2vdata.fetch_reasons import chain, classify, one_line
from s2vdata.ingest import file_sha256
from s2vdata.media import MediaError, probe
from s2vdata.registry import now_iso
from s2vdata.storage import Location
from s2vdata.urlfile import Request, origin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchOptions:
    """How `fetch_urls` downloads; every field maps to a `s2vdata fetch` option."""

    target: str | None = None  # target for URL lines that name none
    jobs: int = 4  # URLs downloaded at once (threads here; on each node with Ray)
    max_height: int = 1080  # tallest picture to pick; a direct link of unknown height still downloads
    socket_timeout: float = 30.0  # seconds a connection may stay silent before the attempt fails
    retries: int = 3  # extra attempts after a transient error (5xx, 429, reset, timeout, truncated)
    retry_failed: bool = True  # re-try URLs whose registry row is `failed`
    rate_limit: str | None = None  # per-download bandwidth cap, e.g. "2M" (bytes/s)
    cookies: Path | None = None  # Netscape cookies.txt for sign-in walls (read once, never written back)
    proxy: str | None = None  # e.g. "socks5://127.0.0.1:1080" or "http://proxy:3128"
    allow_local_urls: bool = False  # also accept file:// URLs
    sections: bool = True  # honour time ranges given on URL lines (download only those)
    backoff_s: float = 1.0  # first pause before a retry; doubles on each retry


@dataclass(frozen=True)
class FetchTask:
    """One download as plain values: it runs in a thread here or as a Ray task on any node."""

    index: int  # its place among the run's requests: rows are registered in this order
    source_id: str
    request: Request
    data: Location  # the data folder: a local path, or a bucket's prefix with its storage options
    options: FetchOptions
    added_at: str  # kept from an earlier row of the source, else when this run planned it
    cookies: str | None = None  # the cookies file's text, read by the driver (a node may not see the file)


@dataclass(frozen=True)
class Fetched:
    """What one download gave: the request's registry row (None: interrupted first) and the bytes it downloaded."""

    index: int
    row: dict | None
    bytes: int = 0


class Cancelled(BaseException):
    """Raised inside a download when the run is interrupted; a BaseException so yt-dlp lets it through."""


class _Failure(Exception):
    """A request that ended failed; `reason` is the normalised one-line reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


def staging_folder(data: Location) -> Path:
    """Returns the folder on this machine where downloads for `data` are staged (one subfolder per source)."""
    if data.is_local:
        # under the data folder: the final rename stays on one filesystem, and nothing is written elsewhere
        return data.path / "tmp" / "fetch"
    # a bucket's downloads are staged on the node that runs them, apart from other buckets' downloads
    return Path(tempfile.gettempdir()) / f"s2v-fetch-{hashlib.sha256(data.url.encode()).hexdigest()[:12]}"


# --------------------------------------------------------------------------- yt-dlp


class _YdlLog:
    """Routes yt-dlp's messages to logging, tagged with the current source id (yt-dlp's words stay in the log)."""

    def __init__(self) -> None:
        self.source_id = ""

    def debug(self, msg: str) -> None:
        log.debug("%s: %s", self.source_id, msg)

    def info(self, msg: str) -> None:
        log.debug("%s: %s", self.source_id, msg)

    def warning(self, msg: str) -> None:
        log.info("%s: %s", self.source_id, msg)

    def error(self, msg: str) -> None:
        # the same message reaches the log once more, with the attempt number, from `_attempts`
        log.debug("%s: %s", self.source_id, msg)


@functools.cache
def ffmpeg_location() -> str:
    """Returns the ffmpeg binary yt-dlp merges with: the one on PATH, else imageio-ffmpeg's."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def format_selector(max_height: int) -> str:
    """Returns the yt-dlp format selection: within max_height, video-only plus audio-only (merged by ffmpeg),
    else one file with both; above it only when nothing fits; else any video (build judges it).

    Video-only plus audio-only comes first because sites that split the streams (YouTube) offer their
    best pictures only that way. `height<=?` lets a format of unknown height (a direct link) through.
    """
    h = int(max_height)
    return f"bv[height<=?{h}]+ba/b[height<=?{h}]/bv+ba/b/bv*"


def format_sort(max_height: int) -> list[str]:
    """Returns yt-dlp's format ordering: the tallest picture up to max_height, else the smallest above it."""
    return [f"res:{int(max_height)}"]


def _ydl_params(*, options: FetchOptions, logger: _YdlLog, hook: Callable[[dict], None], cookies: str | None) -> dict:
    """Returns the yt-dlp parameters shared by every download of a run (per-download ones: `_job_params`)."""

    def sleep(n: int) -> float:
        return options.backoff_s * 2**n

    params = {
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "no_color": True,
        # the Python API reads no configuration file (only yt-dlp's command line does); its cache stays off
        "cachedir": False,
        "noplaylist": True,
        "logger": logger,
        "socket_timeout": options.socket_timeout,
        "retries": options.retries,
        "fragment_retries": options.retries,
        "extractor_retries": options.retries,
        "retry_sleep_functions": {"http": sleep, "fragment": sleep, "extractor": sleep},
        "format": format_selector(options.max_height),
        "format_sort": format_sort(options.max_height),
        "ffmpeg_location": ffmpeg_location(),
        "force_keyframes_at_cuts": False,
        "overwrites": True,
        "progress_hooks": [hook],
        "enable_file_urls": options.allow_local_urls,
    }
    if options.rate_limit:
        params["ratelimit"] = parse_bytes(options.rate_limit)
    if options.proxy:
        params["proxy"] = options.proxy
    if cookies is not None:
        # a text stream, not a file: yt-dlp reads the jar from it and saves it back into it, so no copy of the
        # user's cookies is ever written to disk, and their file is never rewritten
        params["cookiefile"] = io.StringIO(cookies)
    return params


def _task_params(task: FetchTask, *, work: Path) -> dict:
    """Returns the yt-dlp parameters of one download: where it goes, its file name, its time range."""
    params = {
        "paths": {"home": str(work), "temp": str(work)},
        # the file is named from the source id (itself from the video id), never from the title
        "outtmpl": {"default": f"{task.source_id}.%(ext)s"},
    }
    if task.request.section:
        params["download_ranges"] = download_range_func(None, [task.request.section])
    return params


class _Session:
    """A yt-dlp instance, reused from URL to URL by one thread: building one costs more than a small download
    (its extractor list, a TLS context)."""

    def __init__(self, *, options: FetchOptions, cookies: str | None):
        self.logger = _YdlLog()
        self.on_bytes: Callable[[int], None] = _ignore
        self.closed = False
        self._last = 0
        # yt-dlp checks for ffmpeg before a partial (sections) download without reading `ffmpeg_location`,
        # only this context variable (what its own --ffmpeg-location sets); threads start with it unset
        location = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
        if location is not None:
            location.set(ffmpeg_location())
        self.ydl = yt_dlp.YoutubeDL(_ydl_params(options=options, logger=self.logger, hook=self._hook, cookies=cookies))

    def _hook(self, d: dict) -> None:
        n = d.get("downloaded_bytes") or 0
        # on_bytes is called on every report, even with nothing new: it is where an interrupted run stops us
        self.on_bytes(max(0, n - self._last) if d.get("status") in ("downloading", "finished") else 0)
        self._last = 0 if d.get("status") == "finished" else max(self._last, n)

    def download(self, task: FetchTask, *, work: Path, on_bytes: Callable[[int], None]) -> tuple[Path, dict]:
        """Returns the downloaded file and yt-dlp's info dict; raises YoutubeDLError or _Failure."""
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        self.logger.source_id, self.on_bytes, self._last = task.source_id, on_bytes, 0
        # yt-dlp reads these per download: setting them is how one instance serves many URLs
        params = _task_params(task, work=work)
        self.ydl.params["outtmpl"].update(params.pop("outtmpl"))
        self.ydl.params.pop("download_ranges", None)  # yt-dlp wants it absent, not None, for a whole video
        self.ydl.params.update(params)
        info = self.ydl.extract_info(task.request.url, download=False, process=False)
        if info is None:
            raise _Failure("no video found")
        if info.get("_type") in ("playlist", "multi_video"):
            # a page with one embedded video comes back as a list of one; a real list is the user's to split
            first_two = list(itertools.islice(info.get("entries") or [], 2))
            if len(first_two) != 1:
                raise _Failure("playlist", f"{task.request.url} is a playlist or channel: list its videos' URLs, one per line")
            info = first_two[0]
        info = self.ydl.process_ie_result(info, download=True)
        if info is None:
            raise _Failure("no video found")
        done = [Path(d["filepath"]) for d in info.get("requested_downloads") or [] if d.get("filepath")]
        done = [p for p in done if p.is_file()]
        if not done:
            raise _Failure("no video found", "yt-dlp finished without a file")
        return done[0], info

    def close(self) -> None:
        self.closed = True
        self.ydl.close()


_THREAD = threading.local()
_OPEN: list[_Session] = []
_OPEN_LOCK = threading.Lock()


def _session(task: FetchTask) -> _Session:
    """Returns this thread's session for the task's options, made on first use; a Ray worker keeps it for its next task."""
    sessions = _THREAD.__dict__.setdefault("sessions", {})
    key = (task.options, task.cookies)
    session = sessions.get(key)
    if session is None or session.closed:
        session = sessions[key] = _Session(options=task.options, cookies=task.cookies)
        with _OPEN_LOCK:
            _OPEN.append(session)
    return session


def close_sessions() -> None:
    """Closes every session this process made (a local run does, once its threads are done)."""
    with _OPEN_LOCK:
        sessions = _OPEN[:]
        _OPEN.clear()
    for session in sessions:
        session.close()


# --------------------------------------------------------------------------- one download


def _ignore(n: int) -> None:
    pass


def download(task: FetchTask, *, on_bytes: Callable[[int], None] = _ignore) -> Fetched:
    """Returns what became of one task: its row once the file is downloaded and stored, or failed with a reason.

    Never raises for a bad URL, a bad file or an unexpected error (all are failed rows, so one request costs
    one row); `on_bytes(n)` is called as bytes arrive, and when it raises Cancelled the download stops and
    the row is None. This is the function a Ray worker runs.
    """
    received = [0]

    def count(n: int) -> None:
        on_bytes(n)
        received[0] += n

    try:
        row = _fetch(task, on_bytes=count)
    except Cancelled:
        log.info("%s: interrupted; its partial download is removed", task.source_id)
        row = None
    except Exception as e:  # noqa: BLE001 - one broken download must not stop the run: it is a failed row, retried next run
        log.error("%s: internal error on %s\n%s", task.source_id, task.request.url, traceback.format_exc())
        row = failed_row(task, reason=f"internal error: {type(e).__name__}")
    return Fetched(task.index, row, received[0])


def lost(task: FetchTask, reason: str) -> Fetched:
    """Returns the failed outcome of a task Ray could not complete (its worker died again and again)."""
    log.warning("%s: %s: %s", task.source_id, task.request.url, reason)
    return Fetched(task.index, failed_row(task, reason="worker lost"))


def _fetch(task: FetchTask, *, on_bytes: Callable[[int], None]) -> dict:
    scheme = urllib.parse.urlsplit(task.request.url).scheme.lower()
    allowed = {"http", "https"} | ({"file"} if task.options.allow_local_urls else set())
    if scheme not in allowed:
        log.warning(
            "%s: refused scheme %r in %s: only http and https (file:// with --allow-local-urls)",
            task.source_id,
            scheme,
            task.request.url,
        )
        return failed_row(task, reason="refused scheme")
    # absolute: yt-dlp joins a relative output path onto its "home" path once more
    work = (staging_folder(task.data) / task.source_id).absolute()
    try:
        path, info = _attempts(task, work=work, on_bytes=on_bytes)
        return _store(task, path=path, info=info)
    except _Failure as e:
        # one line per failed URL, with yt-dlp's own words: the registry keeps only the short reason
        log.warning("%s: %s failed (%s): %s", task.source_id, task.request.url, e.reason, e)
        return failed_row(task, reason=e.reason)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _attempts(task: FetchTask, *, work: Path, on_bytes: Callable[[int], None]) -> tuple[Path, dict]:
    """Returns the downloaded file and its info after up to 1 + retries attempts; raises _Failure with the reason."""
    retries = task.options.retries
    for attempt in range(retries + 1):
        on_bytes(0)
        try:
            return _session(task).download(task, work=work, on_bytes=on_bytes)
        except YoutubeDLError as e:
            reason, transient = classify(e)
            # yt-dlp already retried inside the download itself; only a failed extraction is retried here
            extraction = any(isinstance(x, (ExtractorError, RequestError, TransportError)) for x in chain(e))
            if not (transient and extraction) or attempt == retries:
                raise _Failure(reason, one_line(e)) from e
            log.info(
                "%s: attempt %d of %s failed (%s), trying again: %s",
                task.source_id,
                attempt + 1,
                task.request.url,
                reason,
                one_line(e),
            )
            time.sleep(task.options.backoff_s * 2**attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _store(task: FetchTask, *, path: Path, info: dict) -> dict:
    """Returns the ok row after probing and hashing a finished download and putting it whole into data/sources/."""
    try:
        facts = probe(path)
    except MediaError as e:
        raise _Failure(f"undecodable: {e.reason}", str(e)) from e
    ext = path.suffix.lstrip(".").lower() or "bin"
    if not re.fullmatch(r"[a-z0-9]{1,8}", ext):
        ext = "bin"
    final = task.data / "sources" / f"{task.source_id}.{ext}"
    sha = file_sha256(path)
    try:
        # a file of ours under another extension (from a run killed before its row was written) would linger
        for stale in (task.data / "sources").glob(f"{task.source_id}.*"):
            if stale != final:
                stale.unlink()
        _put(path, final)
    except OSError as e:
        raise _Failure("storage error", f"cannot store {final}: {e}") from e
    row = _row(task, status="ok", reason="")
    row.update(
        path=f"sources/{final.name}",
        sha256=sha,
        duration_s=facts.get("duration_s") or "",
        width=facts.get("width") or "",
        height=facts.get("height") or "",
        fps=facts.get("fps") or "",
        audio_rate=facts.get("audio_rate") or "",
        title=info.get("title") or "",
        uploader=info.get("uploader") or info.get("channel") or "",
        license=info.get("license") or "",
        webpage_url=info.get("webpage_url") or task.request.url,
    )
    return row


def _put(path: Path, final: Location) -> None:
    """Puts a finished download under its final name, whole: a rename on a local disk, one upload to a bucket."""
    if not final.is_local:
        final.upload(path)
        return
    final.parent.mkdir()
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    # the staging folder is under the data folder, on the same filesystem: the rename is atomic
    os.replace(path, final.path)


def failed_row(task: FetchTask, *, reason: str) -> dict:
    """Returns the registry row of a request that failed for `reason` (no file, no facts)."""
    return _row(task, status="failed", reason=reason)


def _row(task: FetchTask, *, status: str, reason: str) -> dict:
    return {
        "source_id": task.source_id,
        "target": task.request.target,
        "origin": origin(task.request),
        "path": "",
        "sha256": "",
        "status": status,
        "reason": reason,
        "duration_s": "",
        "width": "",
        "height": "",
        "fps": "",
        "audio_rate": "",
        "added_at": task.added_at or now_iso(),
        "title": "",
        "uploader": "",
        "license": "",
        "webpage_url": "",
    }
