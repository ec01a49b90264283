"""CSV text the same on every machine: one cell format and one writer for sources.csv, manifests and rejects."""

from __future__ import annotations

import csv
import io
from typing import Iterable


def cell(value, *, digits: int) -> str:
    """Returns the CSV text of a value (floats to `digits` significant digits, None as empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.{digits}g}"
    return str(value)


def to_csv(rows: Iterable[dict], columns: list[str], *, digits: int) -> str:
    """Returns rows as CSV text with one header row; keys not in `columns` are left out."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: cell(r.get(c), digits=digits) for c in columns})
    return buf.getvalue()
