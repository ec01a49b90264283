"""The clip API: how anything outside s2vdata reads an s2v dataset (the trainer, its cache, evaluation, verify).

A manifest names clips; each clip lives in a WebDataset shard (a tar of
`<key>.mp4`, `<key>.flac`, `<key>.json`) named relative to the manifest's
folder. This module is the one reader of that layout:

    refs = clip_refs(["manifests/hand.csv"], split="train")
    for ref, parts in iter_clip_parts(refs):       # each shard streamed once
        frames, audio = decode_clip(parts)         # (120, 286, 286, 3) uint8, (176400,) float32

`iter_shard` streams one shard (for loaders that split shards across
workers). Every failure is a ClipError naming the file and what to do.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2vdata.config import CLIP, ClipSpec
from s2vdata.manifest import read_manifest
from s2vdata.media import MediaError, ReadError, decode_clip_audio, decode_clip_video, write_video
from s2vdata.media import load_audio as _load_audio
from s2vdata.shards import read_shard
from s2vdata.storage import Location

__all__ = [
    "CLIP",
    "ClipSpec",
    "ClipError",
    "ClipRef",
    "read_manifest",
    "clip_refs",
    "iter_shard",
    "iter_clip_parts",
    "decode_clip",
    "decode_video",
    "decode_audio",
    "write_video",
    "load_audio",
    "MediaError",
]


class ClipError(Exception):
    """A manifest, shard or clip that cannot be used; `reason` is one line that says what to do."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class ClipRef:
    """Where one clip of a manifest lives."""

    clip_id: str  # the manifest's clip id
    key: str  # sample key inside the shard
    shard: str  # the shard's absolute path or URL
    split: str  # train, val or test
    source_id: str = ""  # the source it was cut from


def clip_refs(
    manifests: Iterable[Location | Path | str], *, split: str | None = None, check_shards: bool = True
) -> list[ClipRef]:
    """Returns the clips of `split` (all if None) in the manifests, in manifest order.

    Manifests and shards may be local or on an object store (`s3://...`,
    credentials from the environment). Raises ClipError when a manifest is
    missing or not a manifest, when a shard it names is missing
    (check_shards), or when no clip is left.
    """
    manifests = [Location(m) for m in manifests]
    refs: list[ClipRef] = []
    missing: set[str] = set()
    seen: dict[str, bool] = {}
    for manifest in manifests:
        try:
            rows = read_manifest(manifest)
        except FileNotFoundError as e:
            raise ClipError(manifest, "no such manifest: build one with `s2vdata build --target T`") from e
        except ValueError as e:
            raise ClipError(manifest, str(e).split(": ", 1)[-1]) from e
        if split is not None:
            rows = rows[rows["split"] == split]
        sources = rows["source_id"] if "source_id" in rows.columns else [""] * len(rows)
        folder = manifest.parent
        for clip_id, key, shard, row_split, source_id in zip(rows["clip_id"], rows["key"], rows["shard"], rows["split"], sources):
            where = folder.resolve(shard)
            if check_shards and where.url not in seen:
                seen[where.url] = where.is_file()
                if not seen[where.url]:
                    missing.add(where.url)
            refs.append(ClipRef(clip_id=clip_id, key=key, shard=where.url, split=row_split, source_id=source_id))
    if missing:
        names = ", ".join(sorted(missing)[:3])
        raise ClipError(names, f"{len(missing)} shard(s) named in the manifest are missing: rebuild with `s2vdata build`")
    if not refs:
        where = ", ".join(str(m) for m in manifests)
        raise ClipError(where, f"no {split!r} clips: build more sources or choose another split" if split else "no clips")
    return refs


def iter_shard(shard: Location | Path | str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yields (key, {extension: bytes}) for each sample of a shard (local or on an object store), streaming, in order.

    Raises ClipError naming the shard when it is missing or its tar is damaged.
    """
    try:
        yield from read_shard(shard)
    except FileNotFoundError as e:
        raise ClipError(shard, "shard is missing: rebuild with `s2vdata build`") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ClipError(shard, f"shard is damaged ({type(e).__name__}: {e}): rebuild it with `s2vdata build`") from e


def iter_clip_parts(refs: Iterable[ClipRef]) -> Iterator[tuple[ClipRef, dict[str, bytes] | None]]:
    """Yields (ref, {extension: bytes}, or None when the clip is not in its shard) for every ref, reading each shard once.

    Refs come out grouped by shard (shards in order of first appearance,
    clips in the order given). A missing or damaged shard raises ClipError.
    """
    by_shard: dict[str, list[ClipRef]] = {}
    for ref in refs:
        by_shard.setdefault(ref.shard, []).append(ref)
    for shard, group in by_shard.items():
        wanted = {r.key for r in group}
        found = {key: parts for key, parts in iter_shard(shard) if key in wanted}
        for ref in group:
            yield ref, found.get(ref.key)


def decode_video(mp4: bytes) -> np.ndarray:
    """Returns the frames of a clip's .mp4 bytes, (N, H, W, 3) uint8 RGB; raises ClipError."""
    try:
        return decode_clip_video(mp4)
    except MediaError as e:
        raise ClipError("<clip mp4>", e.reason) from e


def decode_audio(flac: bytes) -> tuple[np.ndarray, int]:
    """Returns (samples float32 mono in [-1, 1], rate) of a clip's .flac bytes; raises ClipError."""
    try:
        return decode_clip_audio(flac)
    except MediaError as e:
        raise ClipError("<clip flac>", e.reason) from e


def load_audio(path: Path | str, *, sample_rate: int = CLIP.sample_rate) -> np.ndarray:
    """Returns the first audio stream of any media file as float32 mono at `sample_rate`; raises MediaError naming the file."""
    try:
        return _load_audio(path, sample_rate=sample_rate)
    except ReadError as e:
        raise MediaError(path, e.reason) from e


def decode_clip(parts: dict[str, bytes] | None, *, name: str = "clip", clip: ClipSpec = CLIP) -> tuple[np.ndarray, np.ndarray]:
    """Returns (frames (120, 286, 286, 3) uint8 RGB, audio (176400,) float32) of one clip, checked against the clip spec.

    Raises ClipError (naming `name`) when a member is missing, does not
    decode, or has the wrong shape or rate.
    """
    if parts is None:
        raise ClipError(name, "clip is not in its shard")
    missing = [ext for ext in ("mp4", "flac") if ext not in parts]
    if missing:
        raise ClipError(name, f"missing {', '.join(missing)} in the shard")
    try:
        frames = decode_clip_video(parts["mp4"])
        audio, rate = decode_clip_audio(parts["flac"])
    except MediaError as e:
        raise ClipError(name, e.reason) from e
    if frames.shape != (clip.frames, clip.size, clip.size, 3):
        raise ClipError(name, f"video is {frames.shape}, expected ({clip.frames}, {clip.size}, {clip.size}, 3)")
    if rate != clip.sample_rate or audio.shape != (clip.samples,):
        raise ClipError(name, f"audio is {audio.shape} at {rate} Hz, expected ({clip.samples},) at {clip.sample_rate} Hz")
    return frames, audio
