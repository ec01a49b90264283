"""The URL file of `s2vdata fetch`: its lines, the requests they make, and the source id each request gets.

A request is one video, or one time range of one, to download; its source id
comes from the URL (never from a title), so the same video under two URLs is
one source, and a re-run finds the rows of an earlier one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from yt_dlp.extractor import gen_extractor_classes

log = logging.getLogger(__name__)

Section = tuple[float, float]
UrlLine = tuple[str, str | None, list[Section] | None]

_SECTIONS_RE = re.compile(r"^\d[\d:.]*-\d[\d:.]*(,\d[\d:.]*-\d[\d:.]*)*$")
_SAFE_ID_RE = re.compile(r"[^A-Za-z0-9_-]")


class Request(NamedTuple):
    """One thing to download: a URL, the target its source belongs to, and a time range of it (None: all of it)."""

    url: str
    target: str
    section: Section | None


# --------------------------------------------------------------------------- the file


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

    Format (docs/fetch.md, docs/design.md): one URL per line, optionally followed by
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
            raise ValueError(f"{where}: unexpected {' '.join(rest)!r}: a line is URL [TARGET] [START-END,...]")
        lines.append((url, target, sections))
    return lines


def unique_requests(lines: Iterable[UrlLine], *, sections: bool) -> list[Request]:
    """Returns the requests of the URL lines, each once (a repeated line gives one; the first wins).

    With `sections`, each time range of a line is a request of its own; without, a line is one request
    for the whole video.
    """
    seen: set[tuple[str, Section | None]] = set()
    requests = []
    for url, target, ranges in lines:
        if ranges and not sections:
            log.info("%s: time ranges ignored (sections off): fetching the whole video", url)
        for section in ranges if ranges and sections else [None]:
            key = (urllib.parse.urldefrag(url)[0], section)
            if key not in seen:
                seen.add(key)
                requests.append(Request(url, target or "", section))
    return requests


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


def origin(request: Request) -> str:
    """Returns the registry's origin of a request: its URL, with a time range as a media fragment (`#t=10,25`)."""
    url, _, section = request
    return url if section is None else f"{url}#t={section[0]:g},{section[1]:g}"


def request_id(request: Request, *, known: dict[str, str]) -> str:
    """Returns the source id of a request: the one `known` (origin -> id, from the registry) gives, else a new one."""
    # the id comes from matching the URL against every yt-dlp extractor (milliseconds each): a URL the
    # registry already knows reuses its id, so re-running a file of millions does not repeat that work
    sid = known.get(origin(request))
    if sid is None:
        sid = source_id_for(request.url)
        if request.section:
            sid += _section_suffix(request.section)
    return sid
