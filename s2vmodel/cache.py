"""The decoded clip cache: every clip's frames at 72x72 and its sound, memory-mapped.

Decoding 120 frames of 286x286 H.264 per sample costs far more than a training step of
the tiny model, so the frames are decoded once and stored at 72x72 (286 scaled by
64/256): a random 64x64 crop there matches the paper's crop 256 of 286 then resize to 64,
up to resampling. Sound is stored as the clip's int16 samples (exact: the FLAC is int16).

Layout: <cache dir>/<key>/{frames.u8, audio.i16, index.json}; the key hashes the
manifests' bytes, the split and this layout's version, so a changed manifest gets a new
cache instead of stale clips. index.json is written last: its presence means complete.
A clip that could not be decoded keeps its slot and its reason: `ClipCache.clip` raises
ClipError for it, so the trainer skips and counts it as it would when streaming.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from s2vdata.clips import CLIP, ClipError, ClipRef
from s2vmodel.clipio import clip_name, iter_decoded

log = logging.getLogger(__name__)

CACHE_SIZE = 72  # 286 * 64 / 256, rounded: the paper's crop
VERSION = "s2v-cache-2"


def cache_size(*, crop: int, out: int = 64) -> int:
    """Return the side at which to cache 286 px frames so that an `out` px crop there matches a `crop` px crop of 286."""
    return round(CLIP.size * out / crop)


def cache_key(manifests: list[Path | str], *, split: str, size: int = CACHE_SIZE, refs: list[ClipRef] | None = None) -> str:
    """Return the cache folder name for these manifests' current contents, split and frame size.

    A local manifest is hashed whole (its sha256 column changes with any rebuilt clip);
    a manifest on an object store by the clips it names (`refs`), read through the clip API.
    """
    digest = hashlib.sha256(f"{VERSION}/{size}".encode())
    for manifest in sorted(str(m) for m in manifests):
        if "://" in manifest:
            digest.update(manifest.encode())
            continue
        path = Path(manifest).resolve()
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    for ref in refs or []:
        digest.update(f"{ref.clip_id}/{ref.shard}/{ref.key}".encode())
    digest.update(split.encode())
    return digest.hexdigest()[:16]


class ClipCache:
    """Read access to a complete cache folder; memory maps open lazily in each process."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        self.names: list[str] = index["names"]
        self.size: int = index["size"]
        self._errors: dict[int, str] = {int(i): reason for i, reason in index["errors"].items()}
        self._frames: np.ndarray | None = None
        self._audio: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict:
        # DataLoader workers get the path, not a pickled copy of the mapped arrays
        return {**self.__dict__, "_frames": None, "_audio": None}

    @property
    def ok(self) -> list[bool]:
        """Return, per clip, whether it could be decoded into the cache."""
        return [i not in self._errors for i in range(len(self))]

    @property
    def frames(self) -> np.ndarray:
        """Return the (N, 120, size, size, 3) uint8 frame map (size 72 for the paper's crop)."""
        if self._frames is None:
            self._frames = np.memmap(
                self.folder / "frames.u8", dtype=np.uint8, mode="r", shape=(len(self), CLIP.frames, self.size, self.size, 3)
            )
        return self._frames

    @property
    def audio(self) -> np.ndarray:
        """Return the (N, 176400) int16 sound map."""
        if self._audio is None:
            self._audio = np.memmap(self.folder / "audio.i16", dtype=np.int16, mode="r", shape=(len(self), CLIP.samples))
        return self._audio

    @property
    def failed(self) -> list[str]:
        """Return the names of the clips that could not be decoded into the cache."""
        return [self.names[i] for i in sorted(self._errors)]

    def clip(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Return clip i as (frames (120, size, size, 3) uint8 map, audio (176400,) float32); ClipError if not decoded."""
        if i in self._errors:
            raise ClipError(self.names[i], self._errors[i])
        return self.frames[i], self.audio[i].astype(np.float32) / 32768.0


def build_cache(
    refs: list[ClipRef],
    *,
    folder: Path,
    size: int = CACHE_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> ClipCache:
    """Return the cache of refs in folder, decoding every clip once when it is not complete yet."""
    folder = Path(folder)
    if (folder / "index.json").is_file():
        return ClipCache(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = len(refs)
    frame_map = np.memmap(tmp / "frames.u8", dtype=np.uint8, mode="w+", shape=(n, CLIP.frames, size, size, 3))
    audio_map = np.memmap(tmp / "audio.i16", dtype=np.int16, mode="w+", shape=(n, CLIP.samples))
    slot = {(r.shard, r.key): i for i, r in enumerate(refs)}
    errors: dict[int, str] = {}
    for done, (ref, decoded) in enumerate(iter_decoded(refs), start=1):
        i = slot[(ref.shard, ref.key)]
        if isinstance(decoded, ClipError):
            log.warning("cache: clip %s cannot be used: %s", clip_name(ref), decoded.reason)
            errors[i] = decoded.reason
        else:
            video, wave = decoded
            frame_map[i] = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in video])
            audio_map[i] = np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)
        if progress is not None:
            progress(done, n)
    frame_map.flush()
    audio_map.flush()
    del frame_map, audio_map
    index = {
        "names": [clip_name(r) for r in refs],
        "errors": {str(i): r for i, r in errors.items()},
        "size": size,
        "version": VERSION,
    }
    (tmp / "index.json").write_text(json.dumps(index))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    log.info("cache %s: %d clips, %d that cannot be used", folder, n, len(errors))
    return ClipCache(folder)
