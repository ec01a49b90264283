"""The manifest (one row per clip) and the rejects file: columns, read, write."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Iterable

import pandas as pd

from s2vdata.atomic import write_text

COLUMNS = [
    "clip_id", "target", "source_id", "origin", "start_s", "duration_s", "frames", "fps",
    "sample_rate", "size", "shard", "key", "split", "sha256", "license", "webpage_url", "group_id",
]
# score columns, in this order, after COLUMNS (measure_window may add more: they follow, sorted)
SCORE_COLUMNS = ["audio_db", "motion", "scene_cut", "camera_shift", "av_sync", "av_lag_frames", "unrelated_audio", "decode_errors"]
REJECT_COLUMNS = ["source_id", "origin", "start_s", "check", "value", "threshold", "reason"]


def clip_sha256(mp4: bytes, flac: bytes) -> str:
    """Returns the SHA-256 of a clip: its .mp4 bytes followed by its .flac bytes."""
    return hashlib.sha256(mp4 + flac).hexdigest()


def cell(value) -> str:
    """Returns the CSV text of a value, the same on every machine (floats to 10 significant digits)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.10g}"
    return str(value)


def to_csv(rows: Iterable[dict], columns: list[str]) -> str:
    """Returns rows as CSV text with one header row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: cell(r.get(c)) for c in columns})
    return buf.getvalue()


def manifest_columns(rows: list[dict]) -> list[str]:
    """Returns the columns of a manifest holding `rows`: the fixed ones, the known scores, then any other score."""
    extra = sorted({k for r in rows for k in r} - set(COLUMNS) - set(SCORE_COLUMNS))
    return COLUMNS + SCORE_COLUMNS + extra


def write_manifest(path: Path | str, rows: list[dict]) -> None:
    """Writes a manifest CSV atomically."""
    write_text(path, to_csv(rows, manifest_columns(rows)))


def write_rejects(path: Path | str, rows: list[dict]) -> None:
    """Writes a rejects CSV atomically."""
    write_text(path, to_csv(rows, REJECT_COLUMNS))


def read_manifest(path: Path | str) -> pd.DataFrame:
    """Returns a manifest as a DataFrame (ids and paths as strings); raises ValueError if it is not one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such manifest; build one with `s2vdata build --target T`")
    df = pd.read_csv(path, dtype={"clip_id": str, "source_id": str, "key": str, "shard": str, "split": str,
                                  "sha256": str, "license": str, "webpage_url": str, "origin": str, "group_id": str},
                     keep_default_na=False)
    missing = [c for c in ("clip_id", "shard", "key", "split", "sha256") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not an s2v manifest (missing columns {missing})")
    return df
