"""`s2vdata fetch`: download the URLs of a URL file with yt-dlp into data/sources/ and record every outcome.

Only yt-dlp's Python API is used (never its printed output). A download
lands in a temporary folder under the data folder (data/tmp/fetch/<source_id>/)
and reaches data/sources/ only by an atomic rename once it is complete,
probed and hashed; its registry row is written after that, in batches. So a
kill at any moment leaves no `ok` row for a partial file, and a re-run skips
what is `ok`, retries what failed and picks up new lines.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import hashlib
import itertools
import logging
import os
import re
import shutil
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import yt_dlp
from yt_dlp.extractor import gen_extractor_classes
from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
from yt_dlp.networking.exceptions import HTTPError, RequestError, TransportError
from yt_dlp.utils import (DownloadError, ExtractorError, UnsupportedError, YoutubeDLError, download_range_func,
                          parse_bytes)

from s2vdata.media import MediaError, probe
from s2vdata.ingest import file_sha256
from s2vdata.csvtext import cell
from s2vdata.registry import DIGITS, Registry, now_iso
from s2vdata.targets import load_targets

log = logging.getLogger(__name__)

Section = tuple[float, float]
UrlLine = tuple[str, str | None, list[Section] | None]

# Registry rewrites are batched: at most every this many finished URLs or seconds, and at the end.
_FLUSH_ROWS = 200
_FLUSH_SECONDS = 10.0
_TMP = Path("tmp") / "fetch"
_SECTIONS_RE = re.compile(r"^\d[\d:.]*-\d[\d:.]*(,\d[\d:.]*-\d[\d:.]*)*$")
_SAFE_ID_RE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class FetchOptions:
    """How `fetch_urls` downloads; every field maps to a `s2vdata fetch` option."""

    target: str | None = None  # target for URL lines that name none
    jobs: int = 4  # URLs downloaded at once (threads)
    max_height: int = 1080  # tallest picture to pick; a direct link of unknown height still downloads
    socket_timeout: float = 30.0  # seconds a connection may stay silent before the attempt fails
    retries: int = 3  # extra attempts after a transient error (5xx, 429, reset, timeout, truncated)
    retry_failed: bool = True  # re-try URLs whose registry row is `failed`
    rate_limit: str | None = None  # per-download bandwidth cap, e.g. "2M" (bytes/s)
    cookies: Path | None = None  # Netscape cookies.txt for sign-in walls (copied, never written back)
    proxy: str | None = None  # e.g. "socks5://127.0.0.1:1080" or "http://proxy:3128"
    allow_local_urls: bool = False  # also accept file:// URLs
    sections: bool = True  # honour time ranges given on URL lines (download only those)
    backoff_s: float = 1.0  # first pause before a retry; doubles on each retry


@dataclass
class FetchReport:
    """What a fetch run did: counts, failures by reason, and the registry rows it wrote or kept."""

    ok: int = 0  # downloaded in this run
    failed: int = 0  # ended failed in this run
    skipped: int = 0  # already ok (or failed with retry_failed off): nothing done
    reasons: collections.Counter = field(default_factory=collections.Counter)  # failed by reason
    rows: list[dict] = field(default_factory=list)  # one per source of the file (a video, or a range of one)


@dataclass(frozen=True)
class _Job:
    source_id: str
    url: str
    target: str
    section: Section | None


class _Cancelled(BaseException):
    """Raised inside a download when the run is interrupted; a BaseException so yt-dlp lets it through."""


class _Failure(Exception):
    """A URL that ended failed; `reason` is the normalised one-line reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


# --------------------------------------------------------------------------- the URL file


def _parse_time(text: str, *, where: str) -> float:
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{where}: bad time {text!r}: use seconds (12.5) or [h:]mm:ss") from None
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    return seconds


def _parse_sections(text: str, *, where: str) -> list[Section]:
    sections = []
    for part in text.split(","):
        start, _, end = part.partition("-")
        a, b = _parse_time(start, where=where), _parse_time(end, where=where)
        if b <= a:
            raise ValueError(f"{where}: time range {part!r} ends before it starts")
        sections.append((a, b))
    return sections


def read_urls(path: Path, *, default_target: str | None) -> list[UrlLine]:
    """Returns the (url, target, sections) of every URL line of a URL file, in file order.

    Format (docs/design.md section 2): one URL per line, optionally followed by
    whitespace and a target name, optionally followed by time ranges
    `START-END[,START-END...]` in seconds or [h:]mm:ss (e.g. `10-25,1:40-1:55`);
    a `#` at the start of a line or after whitespace starts a comment (a `#`
    inside a URL is kept). Lines without a target get `default_target`;
    sections is None when the line gives none. Raises ValueError naming the
    line for anything else on a line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read URL file {path}: {e}") from e
    lines: list[UrlLine] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        tokens = []
        for token in line.split():
            if token.startswith("#"):
                break
            tokens.append(token)
        if not tokens:
            continue
        url, rest = tokens[0], tokens[1:]
        target, sections = default_target, None
        if rest and not _SECTIONS_RE.match(rest[0]):
            target, rest = rest[0], rest[1:]
        if rest and _SECTIONS_RE.match(rest[0]):
            sections, rest = _parse_sections(rest[0], where=where), rest[1:]
        if rest:
            raise ValueError(
                f"{where}: unexpected {' '.join(rest)!r}: a line is URL [TARGET] [START-END,...]")
        lines.append((url, target, sections))
    return lines


# --------------------------------------------------------------------------- ids


_EXTRACTORS = None
_EXTRACTORS_LOCK = threading.Lock()


def _extractors() -> list:
    global _EXTRACTORS
    with _EXTRACTORS_LOCK:
        if _EXTRACTORS is None:
            _EXTRACTORS = [ie for ie in gen_extractor_classes() if ie.ie_key() != "Generic"]
        return _EXTRACTORS


def _safe(text: str) -> str:
    """Returns text reduced to [A-Za-z0-9_-]; a short hash keeps ids apart that the reduction would merge."""
    safe = _SAFE_ID_RE.sub("_", text)
    if safe != text:
        safe += "_" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return safe


def source_id_for(url: str) -> str:
    """Returns the stable, file-name-safe source id of a URL (no dots: shard keys are built from it).

    For a URL that one of yt-dlp's site extractors recognises, the id is the
    extractor and the site's video id (`youtube-dQw4w9WgXcQ`), so two URLs of
    the same video share it; a direct link or an unknown page gets
    `url-<hash of the URL>` (its fragment dropped).
    """
    parts = urllib.parse.urlsplit(url.strip())
    video = urllib.parse.parse_qs(parts.query).get("v")
    host = parts.hostname or ""
    if video and (host == "youtube.com" or host.endswith(".youtube.com")):
        # a video opened from a playlist (`watch?v=X&list=Y`) matches the playlist extractor, yet
        # noplaylist makes yt-dlp fetch video X: name it after X, as `watch?v=X` is
        url = f"https://www.youtube.com/watch?v={video[0]}"
    for ie in _extractors():
        if ie.suitable(url):
            video_id = ie.get_temp_id(url)
            if video_id:
                return f"{_safe(ie.ie_key().lower())}-{_safe(video_id)}"
            break
    canonical = urllib.parse.urldefrag(url.strip())[0]
    return "url-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _section_suffix(section: Section) -> str:
    def fmt(t: float) -> str:
        return f"{t:g}".replace(".", "p")

    return f"-s{fmt(section[0])}-{fmt(section[1])}"


def _requests(lines: Iterable[UrlLine], *, options: FetchOptions) -> list[tuple[str, str, Section | None]]:
    """Returns the (url, target, section) to fetch, each once: repeated lines give one (the first wins)."""
    seen: set[tuple[str, Section | None]] = set()
    requests = []
    for url, target, sections in lines:
        if sections and not options.sections:
            log.info("%s: time ranges ignored (sections off): fetching the whole video", url)
        for section in (sections if sections and options.sections else [None]):
            key = (urllib.parse.urldefrag(url)[0], section)
            if key not in seen:
                seen.add(key)
                requests.append((url, target or "", section))
    return requests


def _origin(url: str, section: Section | None) -> str:
    """Returns the registry's origin for a URL or a time range of it (a media fragment, `#t=10,25`)."""
    return url if section is None else f"{url}#t={section[0]:g},{section[1]:g}"


def _job(url: str, *, target: str, section: Section | None, known: dict[str, str]) -> _Job:
    # the id comes from matching the URL against every yt-dlp extractor (milliseconds each): a URL the
    # registry already knows reuses its id, so re-running a file of millions does not repeat that work
    sid = known.get(_origin(url, section))
    if sid is None:
        base = source_id_for(url)
        sid = base + _section_suffix(section) if section else base
    return _Job(sid, url, target, section)


# --------------------------------------------------------------------------- reasons


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        if isinstance(exc, DownloadError) and exc.exc_info and exc.exc_info[1] is not exc:
            exc = exc.exc_info[1]
        elif isinstance(exc, ExtractorError) and exc.orig_msg is not None and exc.cause is not None:
            exc = exc.cause if isinstance(exc.cause, BaseException) else exc.__cause__
        else:
            exc = exc.__cause__ or exc.__context__


_MESSAGE_REASONS = [
    # (pattern in yt-dlp's message, reason, transient)
    (re.compile(r"HTTP Error (\d{3})"), None, None),
    (re.compile(r"timed out|timeout", re.I), "timeout", True),
    (re.compile(r"Connection refused", re.I), "connection refused", False),
    (re.compile(r"Connection reset|Connection aborted|RemoteDisconnected|Broken pipe", re.I), "connection reset", True),
    (re.compile(r"bytes read, \d+ more expected|Did not get any data|IncompleteRead|ContentTooShort|"
                r"Downloaded \d+ bytes, expected", re.I), "truncated", True),
    (re.compile(r"Unsupported URL|No video formats found|no video|is not a valid URL", re.I), "no video found", False),
    (re.compile(r"Requested format is not available", re.I), "no suitable format", False),
    (re.compile(r"Sign in|log in|login|cookies|members[- ]only|age[- ]restricted|confirm your age", re.I),
     "sign-in required", False),
    (re.compile(r"Private video", re.I), "private video", False),
    (re.compile(r"not available in your country|geo.?restrict|blocked", re.I), "geo-blocked", False),
    (re.compile(r"Name or service not known|getaddrinfo|name resolution|nodename nor servname", re.I),
     "dns failure", False),
    (re.compile(r"Video unavailable|has been removed|no longer available|does not exist", re.I), "unavailable", False),
    (re.compile(r"ffmpeg|ffprobe", re.I), "ffmpeg failed", False),
]


def _http_reason(status: int) -> tuple[str, bool]:
    # 408 and 429 say "later"; 5xx are the server's trouble, often passing
    return f"http {status}", status >= 500 or status in (408, 429)


def classify(exc: BaseException) -> tuple[str, bool]:
    """Returns (reason, transient) for a download error: a short normalised reason for counting,
    and whether trying again later may succeed."""
    for e in _chain(exc):
        if isinstance(e, HTTPError):
            return _http_reason(e.status)
        if isinstance(e, TimeoutError):
            return "timeout", True
        if isinstance(e, ConnectionRefusedError):
            return "connection refused", False
        if isinstance(e, ConnectionResetError):
            return "connection reset", True
        if isinstance(e, UnsupportedError):
            return "no video found", False
    message = " ".join(str(e) for e in _chain(exc))
    for pattern, reason, transient in _MESSAGE_REASONS:
        m = pattern.search(message)
        if m and reason is None:
            return _http_reason(int(m.group(1)))
        if m:
            return reason, transient
    text = re.sub(r"^\[[^\]]+\]\s*[^:]*:\s*", "", _one_line(exc))
    # yt-dlp's advice to report bugs upstream belongs in the log, not in a reason meant for counting
    text = re.split(r"\s*\(caused by |;\s*please report", text)[0]
    return "error: " + text[:80], False


def _one_line(exc: BaseException) -> str:
    """Returns the exception's message on one line, without yt-dlp's "ERROR:" and carriage returns."""
    text = " ".join(str(exc).replace("\r", " ").split())
    text = re.sub(r"^ERROR:\s*", "", text)
    return text or type(exc).__name__


# --------------------------------------------------------------------------- one download


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
        # the same message reaches the log once more, with the attempt number, from _fetch_one
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


def _ydl_params(*, options: FetchOptions, logger: _YdlLog, hook: Callable[[dict], None],
                cookiefile: Path | None) -> dict:
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
    if cookiefile:
        params["cookiefile"] = str(cookiefile)
    return params


def _job_params(job: _Job, *, work: Path) -> dict:
    """Returns the yt-dlp parameters of one download: where it goes, its file name, its time range."""
    params = {
        "paths": {"home": str(work), "temp": str(work)},
        # the file is named from the source id (itself from the video id), never from the title
        "outtmpl": {"default": f"{job.source_id}.%(ext)s"},
    }
    if job.section:
        params["download_ranges"] = download_range_func(None, [job.section])
    return params


class _Session:
    """One worker thread's yt-dlp instance, reused from URL to URL: building one costs more than a small
    download (its extractor list, a TLS context)."""

    def __init__(self, *, options: FetchOptions, cookiefile: Path | None):
        self.logger = _YdlLog()
        self.on_bytes: Callable[[int], None] = lambda n: None
        self._last = 0
        # yt-dlp checks for ffmpeg before a partial (sections) download without reading `ffmpeg_location`,
        # only this context variable (what its own --ffmpeg-location sets); threads start with it unset
        location = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
        if location is not None:
            location.set(ffmpeg_location())
        self.ydl = yt_dlp.YoutubeDL(_ydl_params(options=options, logger=self.logger, hook=self._hook,
                                                cookiefile=cookiefile))

    def _hook(self, d: dict) -> None:
        n = d.get("downloaded_bytes") or 0
        # on_bytes is called on every report, even with nothing new: it is where an interrupted run stops us
        self.on_bytes(max(0, n - self._last) if d.get("status") in ("downloading", "finished") else 0)
        self._last = 0 if d.get("status") == "finished" else max(self._last, n)

    def download(self, job: _Job, *, work: Path, on_bytes: Callable[[int], None]) -> tuple[Path, dict]:
        """Returns the downloaded file and yt-dlp's info dict; raises YoutubeDLError/_Failure."""
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        self.logger.source_id, self.on_bytes, self._last = job.source_id, on_bytes, 0
        # yt-dlp reads these per download: setting them is how one instance serves many URLs
        params = _job_params(job, work=work)
        self.ydl.params["outtmpl"].update(params.pop("outtmpl"))
        self.ydl.params.pop("download_ranges", None)  # yt-dlp wants it absent, not None, for a whole video
        self.ydl.params.update(params)
        info = self.ydl.extract_info(job.url, download=False, process=False)
        if info is None:
            raise _Failure("no video found")
        if info.get("_type") in ("playlist", "multi_video"):
            # a page with one embedded video comes back as a list of one; a real list is the user's to split
            first_two = list(itertools.islice(info.get("entries") or [], 2))
            if len(first_two) != 1:
                raise _Failure("playlist", f"{job.url} is a playlist or channel: list its videos' URLs, one per line")
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
        self.ydl.close()


class _Sessions:
    """A `_Session` per worker thread, made on first use; `close` ends them all and removes cookie copies."""

    def __init__(self, *, options: FetchOptions, folder: Path):
        self.options = options
        self.folder = folder
        self._local = threading.local()
        self._all: list[_Session] = []
        self._lock = threading.Lock()

    def get(self) -> _Session:
        """Returns this thread's session."""
        session = getattr(self._local, "session", None)
        if session is None:
            cookiefile = None
            if self.options.cookies:
                # yt-dlp saves its cookie jar back on close: each session gets a private copy, so the
                # user's file is never written and two threads never write one file
                self.folder.mkdir(parents=True, exist_ok=True)
                cookiefile = self.folder / f"cookies-{threading.get_ident()}.txt"
                shutil.copyfile(self.options.cookies, cookiefile)
            session = self._local.session = _Session(options=self.options, cookiefile=cookiefile)
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        """Closes every session and deletes the cookie copies."""
        with self._lock:
            sessions, self._all = self._all, []
        for session in sessions:
            session.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _row(job: _Job, *, status: str, reason: str = "", added_at: str = "") -> dict:
    return {
        "source_id": job.source_id,
        "target": job.target,
        "origin": _origin(job.url, job.section),
        "path": "",
        "sha256": "",
        "status": status,
        "reason": reason,
        "duration_s": "",
        "width": "",
        "height": "",
        "fps": "",
        "audio_rate": "",
        "added_at": added_at or now_iso(),
        "title": "",
        "uploader": "",
        "license": "",
        "webpage_url": "",
    }


def _fetch_one(job: _Job, *, data_dir: Path, options: FetchOptions, sessions: _Sessions, added_at: str,
               on_bytes: Callable[[int], None]) -> dict | None:
    """Returns the registry row of one job after downloading it (or failing, with a reason);
    None when the run was interrupted first (on_bytes raises _Cancelled then)."""
    scheme = urllib.parse.urlsplit(job.url).scheme.lower()
    allowed = {"http", "https"} | ({"file"} if options.allow_local_urls else set())
    if scheme not in allowed:
        log.warning("%s: refused scheme %r in %s: only http and https (file:// with --allow-local-urls)",
                    job.source_id, scheme, job.url)
        return _row(job, status="failed", reason="refused scheme", added_at=added_at)

    # absolute: yt-dlp joins a relative output path onto its "home" path once more
    work = (data_dir / _TMP / job.source_id).resolve()
    try:
        for attempt in range(options.retries + 1):
            on_bytes(0)
            try:
                path, info = sessions.get().download(job, work=work, on_bytes=on_bytes)
                break
            except YoutubeDLError as e:
                reason, transient = classify(e)
                # yt-dlp already retried inside the download itself; only a failed extraction is retried here
                extraction = any(isinstance(x, (ExtractorError, RequestError, TransportError)) for x in _chain(e))
                if not (transient and extraction) or attempt == options.retries:
                    raise _Failure(reason, _one_line(e)) from e
                log.info("%s: attempt %d of %s failed (%s), trying again: %s", job.source_id, attempt + 1, job.url,
                         reason, _one_line(e))
                time.sleep(options.backoff_s * 2**attempt)
        row = _land(job, path=path, info=info, data_dir=data_dir, added_at=added_at)
    except _Failure as e:
        # one line per failed URL, with yt-dlp's own words: the registry keeps only the short reason
        log.warning("%s: %s failed (%s): %s", job.source_id, job.url, e.reason, e)
        return _row(job, status="failed", reason=e.reason, added_at=added_at)
    except _Cancelled:
        log.info("%s: interrupted; its partial download is removed", job.source_id)
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return row


def _land(job: _Job, *, path: Path, info: dict, data_dir: Path, added_at: str) -> dict:
    """Returns the ok row after probing, hashing and renaming a finished download into data/sources/."""
    try:
        facts = probe(path)
    except MediaError as e:
        raise _Failure(f"undecodable: {e.reason}", str(e)) from e
    ext = path.suffix.lstrip(".").lower() or "bin"
    if not re.fullmatch(r"[a-z0-9]{1,8}", ext):
        ext = "bin"
    sources = data_dir / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    final = sources / f"{job.source_id}.{ext}"
    # a file of ours under another extension (from a run killed before its row was written) would linger
    for stale in sources.glob(f"{job.source_id}.*"):
        if stale != final:
            stale.unlink()
    sha = file_sha256(path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    # the temporary folder is on the same file system (under data/): the rename is atomic
    os.replace(path, final)
    row = _row(job, status="ok", added_at=added_at)
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
        webpage_url=info.get("webpage_url") or job.url,
    )
    return row


# --------------------------------------------------------------------------- the run


def _needs_fetch(row: dict | None, *, job: _Job, data_dir: Path, options: FetchOptions) -> bool:
    if row is None:
        return True
    if row.get("status") == "ok":
        if row.get("path") and (data_dir / row["path"]).is_file():
            return False
        log.warning("%s: registry says ok but %s is missing: fetching again", job.source_id, row.get("path"))
        return True
    return options.retry_failed


def _same(a: dict, b: dict) -> bool:
    return all(cell(a.get(k), digits=DIGITS) == cell(b.get(k), digits=DIGITS) for k in set(a) | set(b))


def _warn_unknown_targets(lines: list[UrlLine]) -> None:
    # a typo in a target is not fatal (the file still lands), but no `build --target` would pick it up
    try:
        known = set(load_targets())
    except ValueError as e:
        log.warning("cannot check target names: %s", e)
        return
    unknown = collections.Counter(target for _, target, _ in lines if target and target not in known)
    for name, n in unknown.items():
        log.warning("target %r (%d URL(s)) is not a known preset (%s): `build --target %s` needs one "
                    "(add it with a targets TOML file)", name, n, ", ".join(sorted(known)), name)


def fetch_urls(urls_file: Path, *, data_dir: Path, options: FetchOptions, progress=None) -> FetchReport:
    """Returns a FetchReport after downloading every URL of `urls_file` into `data_dir` and registering it.

    Each URL (each time range of it, with sections) ends as one row of
    data/sources.csv: `ok` with its file in data/sources/ and metadata, or
    `failed` with a one-line reason. Rows already `ok` are skipped (their
    files untouched); `failed` rows are retried when options.retry_failed.
    Raises ValueError for a malformed URL file or option (bad usage).

    progress, when given, is called with one dict per event, from worker
    threads (calls are serialised by a lock). Every event has the keys
    "event", "done" (URLs finished, skipped ones included), "total" (URLs in
    the file after removing duplicates), "bytes" (bytes downloaded in this
    run so far) and "rate" (bytes per second since the run started):
      {"event": "start", ...}                          once, before any download
      {"event": "bytes", ...}                          as bytes arrive
      {"event": "url", "source_id", "status", "reason", ...}   each URL settled
    status is the row's ("ok" or "failed", also for rows skipped as already
    done) or "duplicate" for a second URL of a video already in this run.
    """
    data_dir = Path(data_dir)
    if options.rate_limit and parse_bytes(options.rate_limit) is None:
        raise ValueError(f"bad rate limit {options.rate_limit!r}: give bytes per second like 500K or 2M")
    if options.cookies and not Path(options.cookies).is_file():
        raise ValueError(f"cookies file {options.cookies} not found: export it from your browser (cookies.txt)")
    if options.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, not {options.jobs}")
    lines = read_urls(urls_file, default_target=options.target)
    missing = [url for url, target, _ in lines if not target]
    if missing:
        log.warning("%d URL(s) have no target (first: %s): give one after the URL or pass --target",
                    len(missing), missing[0])
    _warn_unknown_targets(lines)
    requests = _requests(lines, options=options)
    registry = Registry(data_dir)
    existing = {r["source_id"]: r for r in registry.rows()}
    known = {r["origin"]: r["source_id"] for r in existing.values() if r.get("origin")}

    report = FetchReport()
    lock = threading.Lock()
    state = {"done": 0, "bytes": 0}
    pending: list[dict] = []
    last_flush = started = time.monotonic()

    def emit(event: str, **extra) -> None:
        if progress is None:
            return
        with lock:
            elapsed = max(time.monotonic() - started, 1e-3)
            progress({"event": event, "done": state["done"], "total": len(requests), "bytes": state["bytes"],
                      "rate": state["bytes"] / elapsed, **extra})

    cancel = threading.Event()

    def on_bytes(n: int) -> None:
        if cancel.is_set():
            raise _Cancelled()
        if n:
            with lock:
                state["bytes"] += n
            emit("bytes")

    def flush() -> None:
        nonlocal last_flush
        if pending:
            registry.upsert(list(pending))
            pending.clear()
        last_flush = time.monotonic()

    def finish(job: _Job, row: dict, *, fetched: bool) -> None:
        old = existing.get(job.source_id)
        if fetched:
            if row["status"] == "ok":
                report.ok += 1
            else:
                report.failed += 1
                report.reasons[row["reason"]] += 1
        else:
            report.skipped += 1
        # a retry that fails the same way again changes nothing: sources.csv is left alone
        if old is None or not _same(old, row):
            pending.append(row)
        report.rows.append(row)
        with lock:
            state["done"] += 1
        emit("url", source_id=job.source_id, status=row["status"], reason=row.get("reason", ""))
        if len(pending) >= _FLUSH_ROWS or time.monotonic() - last_flush >= _FLUSH_SECONDS:
            flush()

    def added_at(job: _Job) -> str:
        old = existing.get(job.source_id)
        return (old or {}).get("added_at") or now_iso()

    seen: set[str] = set()

    def next_job(pending_requests: Iterator) -> _Job | None:
        """Returns the next job to download; settles duplicates and rows already done on the way."""
        for url, target, section in pending_requests:
            # ids are found as URLs are handed out, so downloads start at once even for a file of millions
            job = _job(url, target=target, section=section, known=known)
            if job.source_id in seen:
                # another URL of a video already in this run: one row per video
                log.info("%s: %s is the same video as an earlier line: skipped", job.source_id, url)
                report.skipped += 1
                with lock:
                    state["done"] += 1
                emit("url", source_id=job.source_id, status="duplicate", reason="")
                continue
            seen.add(job.source_id)
            old = existing.get(job.source_id)
            if _needs_fetch(old, job=job, data_dir=data_dir, options=options):
                return job
            row = dict(old)
            if job.target and row.get("target") != job.target:
                log.info("%s: target %r -> %r (file kept)", job.source_id, row.get("target"), job.target)
                row["target"] = job.target
            finish(job, row, fetched=False)
        return None

    # partial downloads of a run that was killed: never resumed (the remote file may have changed since)
    stale = data_dir / _TMP
    if stale.is_dir():
        for leftover in stale.iterdir():
            log.info("removing a partial download left by an earlier run: %s", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
    emit("start")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=options.jobs, thread_name_prefix="fetch")
    sessions = _Sessions(options=options, folder=data_dir / _TMP / ".sessions")
    queue = iter(requests)
    running: dict[concurrent.futures.Future, _Job] = {}
    try:
        while True:
            while len(running) < options.jobs:
                job = next_job(queue)
                if job is None:
                    break
                future = pool.submit(_fetch_one, job, data_dir=data_dir, options=options, sessions=sessions,
                                     added_at=added_at(job), on_bytes=on_bytes)
                running[future] = job
            if not running:
                break
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                finish(job, future.result(), fetched=True)
    except BaseException:
        # Ctrl-C (or a broken run): downloads in flight stop at their next progress report; the ones that
        # had already finished are still registered. A second Ctrl-C stops waiting for them.
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        for future, job in running.items():
            if future.done() and not future.cancelled() and future.exception() is None and future.result():
                finish(job, future.result(), fetched=True)
        raise
    finally:
        pool.shutdown(wait=not cancel.is_set())
        sessions.close()
        flush()
        # leave no empty temporary folders behind; a folder still holding something is kept to inspect
        for folder in (data_dir / _TMP, data_dir / _TMP.parent):
            try:
                folder.rmdir()
            except OSError:
                pass
    log.info("fetch: %d ok, %d failed, %d skipped", report.ok, report.failed, report.skipped)
    return report
