"""data/sources.csv: the registry of sources, one row per source, rewritten atomically (on a local disk or a bucket)."""

from __future__ import annotations

import contextlib
import csv
import io
from datetime import datetime, timezone
from pathlib import Path

from s2vdata.atomic import locked
from s2vdata.csvtext import to_csv
from s2vdata.storage import Location

COLUMNS = [
    "source_id", "target", "origin", "path", "sha256", "status", "reason",
    "duration_s", "width", "height", "fps", "audio_rate", "added_at",
    "title", "uploader", "license", "webpage_url",
]

# what every reader of the registry needs
REQUIRED = ["source_id", "target", "origin", "path", "status", "reason"]

# sources.csv keeps stream facts (duration, fps) to 6 significant digits
DIGITS = 6


def now_iso() -> str:
    """Returns the current UTC time as an ISO 8601 string (seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class Registry:
    """The sources of one data folder. Reads are cheap; `upsert` rewrites the file once per batch."""

    def __init__(self, data_dir: Location | Path | str):
        self.data_dir = Location(data_dir)
        self.path = self.data_dir / "sources.csv"

    def rows(self) -> list[dict]:
        """Returns every row, in registry order (the order sources were added)."""
        try:
            text = self.path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return []
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            rows = [dict(r) for r in reader]
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        except (UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"{self.path}: not a readable sources.csv ({e}); restore it from a backup or ingest again") from e
        if missing:
            raise ValueError(f"{self.path}: not an s2v sources.csv (missing columns {missing}); restore it or ingest again")
        return rows

    def get(self, source_id: str) -> dict | None:
        """Returns the row of `source_id`, or None."""
        return next((r for r in self.rows() if r["source_id"] == source_id), None)

    def upsert(self, rows: list[dict]) -> None:
        """Adds new rows and updates existing ones (matched by source_id), keeping the order; one atomic rewrite."""
        if not rows:
            return
        with self._lock():
            current = self.rows()
            index = {r["source_id"]: i for i, r in enumerate(current)}
            extra = [c for r in current for c in r if c not in COLUMNS]
            for row in rows:
                sid = row["source_id"]
                if sid in index:
                    current[index[sid]].update(row)
                else:
                    index[sid] = len(current)
                    current.append(dict(row))
                extra += [c for c in row if c not in COLUMNS and c not in extra]
            columns = COLUMNS + list(dict.fromkeys(extra))
            self.path.write_text(to_csv(current, columns, digits=DIGITS))

    def _lock(self):
        """Returns a lock held while the registry is rewritten: a file lock on a local disk; on an object store,
        one writer at a time is the caller's to keep (only the driver of fetch, ingest or synth writes)."""
        if self.data_dir.is_local:
            return locked(self.data_dir.path / ".sources.lock")
        return contextlib.nullcontext()
