"""WebDataset shards: tars of samples `<key>.mp4`, `<key>.flac`, `<key>.json`, on any store, written whole or not at all."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from s2vdata.storage import Location

# a fixed time in the tar headers, so the same clips make the same shard bytes
_MTIME = 0


def write_shard(path: Location | Path | str, samples: Iterable[tuple[str, dict[str, bytes]]]) -> int:
    """Returns the number of samples written to a new shard at `path` (atomic: all or nothing).

    Each sample is (key, {extension: bytes}); keys must not contain dots, as
    WebDataset splits a member name at its first dot.
    """
    with ShardWriter(path) as writer:
        for key, parts in samples:
            writer.add(key, parts)
    return writer.count


def read_shard(path: Location | Path | str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yields (key, {extension: bytes}) for each sample of a shard, streaming, in order.

    Raises OSError (FileNotFoundError when missing), tarfile.TarError or
    EOFError when the shard cannot be read whole; samples before the damage
    have been yielded.
    """
    key, parts = None, {}
    with Location(path).open("rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            k, _, ext = Path(member.name).name.partition(".")
            if key is not None and k != key:
                yield key, parts
                parts = {}
            key = k
            parts[ext] = tar.extractfile(member).read()
    if key is not None:
        yield key, parts


def read_members(path: Location | Path | str, keys: set[str]) -> dict[str, dict[str, bytes]]:
    """Returns {key: {extension: bytes}} for the wanted keys of a shard (others are read past)."""
    return {key: parts for key, parts in read_shard(path) if key in keys}


class ShardWriter:
    """Writes a shard one sample at a time (memory holds one sample); it appears under its name on close.

    Used as a context manager: on an exception nothing appears and `path`
    is left as it was.
    """

    def __init__(self, path: Location | Path | str):
        self.location = Location(path)
        self.count = 0
        self.bytes = 0
        self._ctx = self.location.writing()
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
            self.bytes += len(parts[ext])
        self.count += 1

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._tar.close()
        self._ctx.__exit__(exc_type, exc, tb)


def index_members(path: Location | Path | str) -> dict[str, dict[str, tuple[int, int]]]:
    """Returns {key: {extension: (data offset, size)}} of a shard, reading headers only (seeking past the data)."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    with Location(path).open("rb") as f, tarfile.open(fileobj=f, mode="r") as tar:
        for member in tar:
            if member.isfile():
                k, _, ext = Path(member.name).name.partition(".")
                out.setdefault(k, {})[ext] = (member.offset_data, member.size)
    return out


def read_sample(path: Location | Path | str, members: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """Returns {extension: bytes} of one sample, given its entry of `index_members` (ranged reads on object stores)."""
    loc = Location(path)
    if loc.is_local:
        out = {}
        with open(loc.path, "rb") as f:
            for ext, (offset, size) in members.items():
                f.seek(offset)
                out[ext] = f.read(size)
        return out
    return {ext: loc.read_range(offset, size) for ext, (offset, size) in members.items()}
