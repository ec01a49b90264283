"""Local files into the registry: copied under a content-derived source_id, probed, never judged."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from s2vdata.media import VIDEO_EXTENSIONS, MediaError, ReadError, probe
from s2vdata.registry import Registry, now_iso
from s2vdata.storage import Location

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one ingest did: counts and the rows it added."""

    added: int = 0
    existing: int = 0
    failed: int = 0
    reasons: Counter = field(default_factory=Counter)
    rows: list[dict] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    """Returns the hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Returns the files named (any extension) plus the video files inside named folders, recursively, sorted."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise FileNotFoundError(f"{p}: no video files in this folder (looked for {', '.join(sorted(VIDEO_EXTENSIONS))}); "
                                        "name other files one by one")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return list(dict.fromkeys(out))


def probe_row(path: Path) -> dict:
    """Returns the registry fields of a probed file: status ok with stream facts, or failed with the decoder's reason.

    Raises ReadError when the file cannot be read at all (not a verdict on its bytes: nothing is registered).
    """
    try:
        info = probe(path)
    except MediaError as e:
        return {"status": "failed", "reason": e.reason}
    return {
        "status": "ok", "reason": "",
        "duration_s": info["duration_s"], "width": info["width"], "height": info["height"],
        "fps": info["fps"], "audio_rate": info["audio_rate"],
    }


def register_files(
    paths: Iterable[Path],
    *,
    target: str,
    data_dir: Location | Path | str,
    origins: list[str] | None = None,
    on_file: Callable[[Path, dict], None] | None = None,
) -> IngestReport:
    """Returns what happened to each file after copying it into data/sources/ and registering it.

    The source_id is the first 16 hex digits of the file's SHA-256, so the same
    bytes twice add nothing. A file no decoder opens is registered `failed`
    with the decoder's reason (and not copied); every other file is `ok`. A
    file registered `failed` before is probed again (and counted failed again
    if it still is); a file that cannot be read is counted failed and left out.
    """
    data_dir = Location(data_dir)
    registry = Registry(data_dir)
    known = {r["source_id"]: r for r in registry.rows()}
    report = IngestReport()
    paths = list(paths)
    origins = origins or [str(Path(p).resolve()) for p in paths]
    new_rows = []
    for path, origin in zip(paths, origins):
        path = Path(path)
        try:
            sha = file_sha256(path)
            sid = sha[:16]
            if sid in known and known[sid]["status"] == "ok":
                report.existing += 1
                if on_file:
                    on_file(path, {"source_id": sid, "status": "existing"})
                continue
            facts = probe_row(path)
        except (OSError, ReadError) as e:
            reason = e.reason if isinstance(e, ReadError) else f"cannot read: {e.strerror or e}"
            report.failed += 1
            report.reasons[f"{path.name}: {reason}"] += 1
            log.warning("%s: %s", path, reason)
            if on_file:
                on_file(path, {"status": "failed", "reason": reason})
            continue
        rel = ""
        if facts["status"] == "ok":
            ext = path.suffix.lower() if path.suffix else ".bin"
            rel = f"sources/{sid}{ext}"
            dest = data_dir / rel
            if not dest.exists():
                dest.upload(path)
            report.added += 1
        else:
            report.failed += 1
            report.reasons[f"{path.name}: {facts['reason']}"] += 1
            log.warning("%s: %s", path, facts["reason"])
        row = {"source_id": sid, "target": target, "origin": origin, "path": rel, "sha256": sha, "added_at": now_iso(), **facts}
        new_rows.append(row)
        known[sid] = row
        if on_file:
            on_file(path, row)
    registry.upsert(new_rows)
    report.rows = new_rows
    return report


def ingest_paths(paths: Iterable[Path], *, target: str, data_dir: Path, on_file=None) -> IngestReport:
    """Returns the report of registering the named files and the video files inside named folders."""
    return register_files(expand_paths(paths), target=target, data_dir=data_dir, on_file=on_file)
