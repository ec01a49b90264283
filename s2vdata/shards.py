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
    with ShardWriter(path) as writer:
        for key, parts in samples:
            writer.add(key, parts)
    return writer.count


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


class ShardWriter:
    """Writes a shard one sample at a time (memory holds one sample), renamed into place on close.

    Used as a context manager: on an exception the partial file is removed
    and `path` is left as it was.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.count = 0
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)

    def add(self, key: str, parts: dict[str, bytes]) -> None:
        """Appends one sample (key, {extension: bytes})."""
        if "." in key or "/" in key:
            raise ValueError(f"shard key {key!r} must not contain '.' or '/'")
        for ext in sorted(parts):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(parts[ext])
            info.mtime = _MTIME
            info.mode = 0o444
            info.uname = info.gname = "s2v"
            self._tar.addfile(info, io.BytesIO(parts[ext]))
        self.count += 1

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._tar.close()
        self._ctx.__exit__(exc_type, exc, tb)


def index_members(path: Path | str) -> dict[str, dict[str, tuple[int, int]]]:
    """Returns {key: {extension: (data offset, size)}} of a shard, reading headers only."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if member.isfile():
                k, _, ext = Path(member.name).name.partition(".")
                out.setdefault(k, {})[ext] = (member.offset_data, member.size)
    return out


def read_sample(path: Path | str, members: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """Returns {extension: bytes} of one sample, given its entry of `index_members`."""
    out = {}
    with open(path, "rb") as f:
        for ext, (offset, size) in members.items():
            f.seek(offset)
            out[ext] = f.read(size)
    return out
