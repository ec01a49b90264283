"""Manifests -> clips (through `s2vdata.clips`) -> training batches, exactly as the paper samples them.

One training sample (paper section 3.2): 100 consecutive frames out of the clip's 120
(random start), one random 256x256 crop of the 286x286 frames for the whole clip, resized
to 64x64; the input image is the first of the 100; the sound is the whole clip's 4 s,
peak-normalised to [-1, 1], with `start` marking which 100 of its 120 slots are used.

Clips come from one of two sources, both read through their public interface only: the
shards themselves (`s2vdata.clips.iter_shard`, decoded per sample) or the decoded cache
(`s2vmodel.cache.ClipCache.clip`). A clip either source cannot give (malformed, or a
damaged shard) raises ClipError when its sample is made, and is named, skipped and counted
the same way whichever the source.

Order and resumption. Every epoch has a fixed plan made from (seed, epoch): the shard
order, and which *unit* (a DataLoader worker of a DDP rank) reads what. With at least as
many shards as units a unit reads whole shards; with fewer, every unit reads every shard
and keeps every units-th clip. Each unit shuffles through a seeded buffer and draws each
clip's augmentation from (seed, epoch, unit, index), so batch k of epoch e of worker w is
the same in every run. Workers run epoch after epoch without stopping (one DataLoader for
the whole run: no worker restarts at epoch ends). The trainer records, per worker, its
epoch and the batches consumed in it; on resume each worker skips those (before decoding)
and the workers are rotated so that the DataLoader's round robin continues where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from s2vdata.clips import ClipError, ClipRef, decode_clip, iter_shard
from s2vmodel.clipio import DataError, clip_name, iter_decoded, load_clip_refs
from s2vmodel.config import DataConfig

log = logging.getLogger(__name__)

# DataError and load_clip_refs live in clipio; they are named here too for callers of the earlier layout
__all__ = [
    "ClipStream",
    "DataError",
    "TrainData",
    "collate",
    "fixed_batch",
    "load_clip_refs",
    "sample_from_cached",
    "sample_from_full",
]

IMAGE_SIZE = 64  # generated frame side (paper: 64x64)

Loader = Callable[[np.random.Generator], dict]  # rng -> one sample; raises ClipError for a clip that cannot be used


class DecodedClips(Protocol):
    """What the stream needs of a decoded cache (`s2vmodel.cache.ClipCache` is one): names, and each clip or its ClipError."""

    names: list[str]

    def __len__(self) -> int: ...

    def clip(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Return clip i as (frames (120, S, S, 3) uint8, audio (176400,) float32); ClipError when it cannot be used."""
        ...


def peak_normalize_np(wave: np.ndarray) -> np.ndarray:
    """Return wave scaled to peak absolute amplitude 1 (silence stays silence)."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return (wave / peak).astype(np.float32) if peak > 1e-8 else wave.astype(np.float32)


def sample_from_full(
    frames: np.ndarray, wave: np.ndarray, *, rng: np.random.Generator, data: DataConfig
) -> dict[str, np.ndarray | int]:
    """Return one training sample from decoded 286 px frames (120, H, W, 3) and the clip's sound.

    frames: (100, 64, 64, 3) uint8; wave: (176400,) float32 peak-normalised; start: first used frame.
    """
    n, h, w, _ = frames.shape
    start = int(rng.integers(0, n - data.frames + 1))
    y = int(rng.integers(0, h - data.crop + 1))
    x = int(rng.integers(0, w - data.crop + 1))
    clip = frames[start : start + data.frames, y : y + data.crop, x : x + data.crop]
    small = np.stack([cv2.resize(f, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA) for f in clip])
    return {"frames": small, "wave": peak_normalize_np(wave), "start": start}


def sample_from_cached(
    frames: np.ndarray, wave: np.ndarray, *, rng: np.random.Generator, data: DataConfig
) -> dict[str, np.ndarray | int]:
    """Return one training sample from cached frames (120, 72, 72, 3) and sound (float): random start and 64 px crop."""
    n, h, w, _ = frames.shape
    start = int(rng.integers(0, n - data.frames + 1))
    y = int(rng.integers(0, h - IMAGE_SIZE + 1))
    x = int(rng.integers(0, w - IMAGE_SIZE + 1))
    clip = np.ascontiguousarray(frames[start : start + data.frames, y : y + IMAGE_SIZE, x : x + IMAGE_SIZE])
    return {"frames": clip, "wave": peak_normalize_np(np.asarray(wave, np.float32)), "start": start}


def collate(samples: list[dict], *, worker: int, epoch: int, index: int, skipped: list[str]) -> dict:
    """Return a batch dict of stacked tensors from samples, tagged with where it comes from."""
    return {
        "frames": torch.from_numpy(np.stack([s["frames"] for s in samples])),  # (B, 100, 64, 64, 3) uint8
        "wave": torch.from_numpy(np.stack([s["wave"] for s in samples])),  # (B, 176400) float32
        "start": torch.tensor([s["start"] for s in samples], dtype=torch.long),  # (B,)
        "keys": [s["key"] for s in samples],
        "worker": worker,
        "epoch": epoch,
        "index": index,
        "skipped": list(skipped),
    }


class ClipStream(IterableDataset):
    """Endless batches for one rank, epoch after epoch, split across DataLoader workers (see module doc)."""

    def __init__(
        self,
        refs: list[ClipRef],
        *,
        data: DataConfig,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        cache: DecodedClips | None = None,
    ) -> None:
        super().__init__()
        self.refs = refs
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.cache = cache
        self.rotate = 0  # logical worker of physical worker 0
        self.positions: list[tuple[int, int]] = []  # (epoch, batches consumed in it) per logical worker
        self._skipped: list[str] = []  # names of clips skipped and not yet reported with a batch

    def _unit(self) -> tuple[int, int, int]:
        """Return (logical worker, unit, units) of the calling process."""
        info = get_worker_info()
        phys, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        logical = (phys + self.rotate) % workers
        return logical, self.rank * workers + logical, self.world * workers

    def __iter__(self) -> Iterator[dict]:
        logical, unit, units = self._unit()
        epoch, skip = self.positions[logical] if logical < len(self.positions) else (0, 0)
        while True:
            made = 0
            for batch in self.epoch_batches(epoch=epoch, unit=unit, units=units, skip=skip, worker=logical):
                made += 1
                yield batch
            if made == 0 and skip == 0:
                # an endless stream with nothing in an epoch would spin forever
                raise DataError(
                    f"rank {self.rank} worker {logical} got no complete batch of {self.batch_size} clips in epoch {epoch}: "
                    "use more clips (or shards), a smaller --batch-size, or fewer --workers / ranks"
                )
            epoch, skip = epoch + 1, 0

    def epoch_batches(self, *, epoch: int, unit: int, units: int, skip: int = 0, worker: int = 0) -> Iterator[dict]:
        """Yield the unit's batches of one epoch, the first `skip` of them left out (and not decoded)."""
        raw = self._cached(epoch, unit, units) if self.cache is not None else self._streamed(epoch, unit, units)
        batch: list[dict] = []
        # clips skipped since the last batch went out (kept across epochs, so one met at an epoch's end is still counted)
        skipped = self._skipped
        index = 0
        for n, (name, load) in enumerate(raw):
            if index < skip:
                batch.append({})
                if len(batch) == self.batch_size:
                    batch, index = [], index + 1
                continue
            rng = np.random.default_rng([self.seed, epoch, unit, n])
            try:
                sample = load(rng)
            except ClipError as err:
                log.warning("skipping clip %s: %s", name, err.reason)
                skipped.append(name)
                continue
            sample["key"] = name
            batch.append(sample)
            if len(batch) == self.batch_size:
                out = collate(batch, worker=worker, epoch=epoch, index=index, skipped=skipped)
                skipped.clear()
                batch, index = [], index + 1
                yield out

    def _cached(self, epoch: int, unit: int, units: int) -> Iterator[tuple[str, Loader]]:
        """Yield (name, loader) for this unit's clips of the epoch from the decoded cache."""
        cache = self.cache
        order = np.random.default_rng([self.seed, epoch]).permutation(len(cache))
        for i in order[unit::units]:
            i = int(i)
            yield cache.names[i], (lambda rng, i=i: sample_from_cached(*cache.clip(i), rng=rng, data=self.data))

    def _streamed(self, epoch: int, unit: int, units: int) -> Iterator[tuple[str, Loader]]:
        """Yield (name, loader) for this unit's clips of the epoch, streamed from the shards through a seeded shuffle buffer."""
        shards = sorted({r.shard for r in self.refs})
        order = [shards[i] for i in np.random.default_rng([self.seed, epoch]).permutation(len(shards))]
        whole_shards = len(shards) >= units
        mine = order[unit::units] if whole_shards else order
        buffer: list[tuple[str, Loader]] = []
        rng = np.random.default_rng([self.seed, epoch, unit, 1 << 20])
        matched = 0
        for item in self._shard_items(mine):
            matched += 1
            if not whole_shards and (matched - 1) % units != unit:
                continue
            buffer.append(item)
            if len(buffer) >= self.data.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    def _shard_items(self, shards: list[str]) -> Iterator[tuple[str, Loader]]:
        """Yield (name, loader) for each wanted clip of the shards, in shard order; a damaged shard yields one failing item."""
        wanted = {(r.shard, r.key): r for r in self.refs}
        for shard in shards:
            try:
                for key, parts in iter_shard(shard):
                    ref = wanted.get((shard, key))
                    if ref is not None:
                        yield clip_name(ref), self._loader(parts, name=clip_name(ref))
            except ClipError as err:
                yield Path(shard).name, _failing(err)

    def _loader(self, parts: dict[str, bytes], *, name: str) -> Loader:
        """Return the function rng -> sample for one clip's shard members (decoded only when called)."""

        def load(rng: np.random.Generator) -> dict:
            frames, wave = decode_clip(parts, name=name)
            return sample_from_full(frames, wave, rng=rng, data=self.data)

        return load


def _failing(err: ClipError) -> Loader:
    """Return a loader that raises err (a shard that could not be read to its end)."""

    def load(rng: np.random.Generator) -> dict:
        raise err

    return load


class TrainData:
    """An endless, resumable iterator of batches for one rank (one persistent DataLoader)."""

    def __init__(self, stream: ClipStream, *, workers: int) -> None:
        self.stream = stream
        self.num_workers = workers
        self.workers = max(1, workers)
        self.positions = [(0, 0)] * self.workers  # (epoch, batches consumed in it) per logical worker
        self.next_worker = 0
        self.skipped: list[str] = []  # clips that could not be used, met so far (distinct names)
        self._it: Iterator[dict] | None = None

    @property
    def epoch(self) -> int:
        """Return the epoch every worker has reached."""
        return min(epoch for epoch, _ in self.positions)

    def state(self) -> list[int]:
        """Return the data position: [next worker, then epoch and consumed batches per worker...]."""
        return [self.next_worker, *(v for position in self.positions for v in position)]

    def load_state(self, state: list[int]) -> None:
        """Continue from a position returned by state() (with the same number of workers)."""
        if len(state) != 1 + 2 * self.workers:
            epoch = max(state[1::2]) + 1 if len(state) > 1 else 0
            log.warning("data position was saved with another number of workers: starting epoch %d", epoch)
            self.positions = [(epoch, 0)] * self.workers
            return
        self.next_worker = int(state[0])
        self.positions = [(int(state[1 + 2 * w]), int(state[2 + 2 * w])) for w in range(self.workers)]
        self._it = None

    def __iter__(self) -> "TrainData":
        return self

    def __next__(self) -> dict:
        if self._it is None:
            self.stream.positions = list(self.positions)
            # the DataLoader's round robin starts at physical worker 0: make that the next logical one
            self.stream.rotate = self.next_worker
            loader = DataLoader(
                self.stream,
                batch_size=None,
                num_workers=self.num_workers,
                persistent_workers=False,
                prefetch_factor=2 if self.num_workers else None,
            )
            self._it = iter(loader)
        batch = next(self._it)
        worker, epoch = batch["worker"], batch["epoch"]
        self.positions[worker] = (epoch, batch["index"] + 1)
        self.next_worker = (worker + 1) % self.workers
        # a clip that cannot be used is met again every epoch: count it once
        self.skipped.extend(name for name in dict.fromkeys(batch["skipped"]) if name not in self.skipped)
        return batch


def fixed_batch(refs: list[ClipRef], *, data: DataConfig, count: int, seed: int) -> dict:
    """Return a fixed batch of the first `count` readable clips of refs (same crops every call), for metrics and samples."""
    samples: list[dict] = []
    for ref, decoded in iter_decoded(refs):
        if isinstance(decoded, ClipError):
            log.warning("fixed batch: skipping clip %s: %s", clip_name(ref), decoded.reason)
            continue
        samples.append(
            {**sample_from_full(*decoded, rng=np.random.default_rng([seed, len(samples), 7]), data=data), "key": ref.clip_id}
        )
        if len(samples) == count:
            break
    if not samples:
        raise DataError(
            f"{refs[0].shard if refs else 'manifest'}: no readable clip for the fixed metrics batch (all were malformed)"
        )
    return collate(samples, worker=0, epoch=0, index=0, skipped=[])
