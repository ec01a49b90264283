"""WebDataset shards: tars of samples `<key>.mp4`, `<key>.flac`, `<key>.json`, written atomically."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

from s2vdata.atomic import atomic_path

# a fixed time in the tar headers, so the same clips make the same shard bytes
_MTIME = 0


def write_shard(path: Path | str, samples: Iterable[tuple[str, dict[str, bytes]]]) -> int:
    """Returns the number of samples written to a new shard at `path` (atomic: all or nothing).

    Each sample is (key, {extension: bytes}); keys must not contain dots, as
    WebDataset splits a member name at its first dot.
    """
    n = 0
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, parts in samples:
                if "." in key or "/" in key:
                    raise ValueError(f"shard key {key!r} must not contain '.' or '/'")
                for ext in sorted(parts):
                    data = parts[ext]
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    info.mtime = _MTIME
                    info.mode = 0o444
                    info.uname = info.gname = "s2v"
                    tar.addfile(info, io.BytesIO(data))
                n += 1
    return n


def read_shard(path: Path | str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yields (key, {extension: bytes}) for each sample of a shard, in order."""
    key, parts = None, {}
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = Path(member.name).name
            k, _, ext = name.partition(".")
            if key is not None and k != key:
                yield key, parts
                parts = {}
            key = k
            parts[ext] = tar.extractfile(member).read()
    if key is not None:
        yield key, parts


def read_members(path: Path | str, keys: set[str]) -> dict[str, dict[str, bytes]]:
    """Returns {key: {extension: bytes}} for the wanted keys of a shard (others are skipped unread)."""
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r") as tar:
        for member in tar:
            k, _, ext = Path(member.name).name.partition(".")
            if member.isfile() and k in keys:
                out.setdefault(k, {})[ext] = tar.extractfile(member).read()
    return out
