"""Why a download failed: yt-dlp's errors turned into the registry's short reasons, and whether to try again.

A reason is meant for counting (`http 404`, `timeout`, `sign-in required`);
the log keeps yt-dlp's own words. docs/fetch.md lists every reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from yt_dlp.networking.exceptions import HTTPError
from yt_dlp.utils import DownloadError, ExtractorError, UnsupportedError


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """Yields an error and the errors behind it (yt-dlp wraps the network's error in its own, often twice)."""
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
    (re.compile(r"timed out|timeout", re.IGNORECASE), "timeout", True),
    (re.compile(r"Connection refused", re.IGNORECASE), "connection refused", False),
    (re.compile(r"Connection reset|Connection aborted|RemoteDisconnected|Broken pipe", re.IGNORECASE), "connection reset", True),
    (
        re.compile(
            r"bytes read, \d+ more expected|Did not get any data|IncompleteRead|ContentTooShort|"
            r"Downloaded \d+ bytes, expected",
            re.IGNORECASE,
        ),
        "truncated",
        True,
    ),
    (re.compile(r"Unsupported URL|No video formats found|no video|is not a valid URL", re.IGNORECASE), "no video found", False),
    (re.compile(r"Requested format is not available", re.IGNORECASE), "no suitable format", False),
    (
        re.compile(r"Sign in|log in|login|cookies|members[- ]only|age[- ]restricted|confirm your age", re.IGNORECASE),
        "sign-in required",
        False,
    ),
    (re.compile(r"Private video", re.IGNORECASE), "private video", False),
    (re.compile(r"not available in your country|geo.?restrict|blocked", re.IGNORECASE), "geo-blocked", False),
    (
        re.compile(r"Name or service not known|getaddrinfo|name resolution|nodename nor servname", re.IGNORECASE),
        "dns failure",
        False,
    ),
    (re.compile(r"Video unavailable|has been removed|no longer available|does not exist", re.IGNORECASE), "unavailable", False),
    (re.compile(r"ffmpeg|ffprobe", re.IGNORECASE), "ffmpeg failed", False),
]


def _http_reason(status: int) -> tuple[str, bool]:
    # 408 and 429 say "later"; 5xx are the server's trouble, often passing
    return f"http {status}", status >= 500 or status in (408, 429)


def classify(exc: BaseException) -> tuple[str, bool]:
    """Returns (reason, transient) for a download error: a short normalised reason for counting,
    and whether trying again later may succeed."""
    for e in chain(exc):
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
    message = " ".join(str(e) for e in chain(exc))
    for pattern, reason, transient in _MESSAGE_REASONS:
        m = pattern.search(message)
        if m and reason is None:
            return _http_reason(int(m.group(1)))
        if m:
            return reason, transient
    text = re.sub(r"^\[[^\]]+\]\s*[^:]*:\s*", "", one_line(exc))
    # yt-dlp's advice to report bugs upstream belongs in the log, not in a reason meant for counting
    text = re.split(r"\s*\(caused by |;\s*please report", text)[0]
    return "error: " + text[:80], False


def one_line(exc: BaseException) -> str:
    """Returns the exception's message on one line, without yt-dlp's "ERROR:" and carriage returns."""
    text = " ".join(str(exc).replace("\r", " ").split())
    text = re.sub(r"^ERROR:\s*", "", text)
    return text or type(exc).__name__
