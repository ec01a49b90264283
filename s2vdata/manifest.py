"""The manifest (one row per clip) and the rejects file: columns, read, write."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pandas as pd

from s2vdata.checks import CHECKS
from s2vdata.csvtext import to_csv
from s2vdata.storage import Location

COLUMNS = [
    "clip_id",
    "target",
    "source_id",
    "origin",
    "start_s",
    "duration_s",
    "frames",
    "fps",
    "sample_rate",
    "size",
    "shard",
    "key",
    "split",
    "sha256",
    "license",
    "webpage_url",
    "group_id",
]
# score columns, in this order, after COLUMNS (measure_window may add more: they follow, sorted)
SCORE_COLUMNS = [*CHECKS, "decode_errors", "audio_gap_ms"]
REJECT_COLUMNS = ["source_id", "origin", "start_s", "check", "value", "threshold", "reason"]


def clip_sha256(mp4: bytes, flac: bytes) -> str:
    """Returns the SHA-256 of a clip: its .mp4 bytes followed by its .flac bytes."""
    return hashlib.sha256(mp4 + flac).hexdigest()


# manifests keep scores and start times to 10 significant digits: start_s is k/30 to well under a sample
DIGITS = 10


def manifest_columns(rows: list[dict]) -> list[str]:
    """Returns the columns of a manifest holding `rows`: the fixed ones, the known scores, then any other score."""
    extra = sorted({k for r in rows for k in r} - set(COLUMNS) - set(SCORE_COLUMNS))
    return COLUMNS + SCORE_COLUMNS + extra


def write_manifest(path: Location | Path | str, rows: list[dict]) -> None:
    """Writes a manifest CSV atomically."""
    Location(path).write_text(to_csv(rows, manifest_columns(rows), digits=DIGITS))


def write_rejects(path: Location | Path | str, rows: list[dict]) -> None:
    """Writes a rejects CSV atomically."""
    Location(path).write_text(to_csv(rows, REJECT_COLUMNS, digits=DIGITS))


def read_manifest(path: Location | Path | str) -> pd.DataFrame:
    """Returns a manifest as a DataFrame (ids and paths as strings); raises ValueError if it is not one."""
    path = Location(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no such manifest; build one with `s2vdata build --target T`") from e
    except OSError as e:
        raise ValueError(f"{path}: cannot read it as a manifest ({e.strerror or e})") from e
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            dtype={
                "clip_id": str,
                "source_id": str,
                "key": str,
                "shard": str,
                "split": str,
                "sha256": str,
                "license": str,
                "webpage_url": str,
                "origin": str,
                "group_id": str,
            },
            keep_default_na=False,
        )
    except (ValueError, UnicodeDecodeError) as e:  # pandas' parser errors are ValueErrors
        raise ValueError(f"{path}: not an s2v manifest ({str(e).splitlines()[0]})") from e
    missing = [c for c in ("clip_id", "shard", "key", "split", "sha256") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not an s2v manifest (missing columns {missing})")
    return df
