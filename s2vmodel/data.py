"""Manifests -> clips in their shards -> training batches, exactly as the paper samples them.

One training sample (paper section 3.2): 100 consecutive frames out of the clip's 120
(random start), one random 256x256 crop of the 286x286 frames for the whole clip, resized
to 64x64; the input image is the first of the 100; the sound is the whole clip's 4 s,
peak-normalised to [-1, 1], with `start` marking which 100 of its 120 slots are used.

Order and resumption. Every epoch has a fixed plan made from (seed, epoch): the shard
order, and which *unit* (a DataLoader worker of a DDP rank) reads what. With at least as
many shards as units a unit reads whole shards (webdataset's split by node and worker);
with fewer, every unit reads every shard and keeps every units-th clip. Each unit shuffles
through a seeded buffer and draws each clip's augmentation from (seed, epoch, unit, index),
so batch k of epoch e of worker w is the same in every run. Workers run epoch after epoch
without stopping (one DataLoader for the whole run: no worker restarts at epoch ends). The
trainer records, per worker, its epoch and the batches consumed in it; on resume each worker
skips those (before decoding) and the workers are rotated so that the DataLoader's round
robin continues where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from s2vdata.config import CLIP
from s2vdata.manifest import read_manifest
from s2vdata.media import MediaError, decode_clip_audio, decode_clip_video
from s2vmodel.config import DataConfig

if TYPE_CHECKING:
    from s2vmodel.cache import ClipCache

log = logging.getLogger(__name__)

IMAGE_SIZE = 64  # generated frame side (paper: 64x64)


class DataError(RuntimeError):
    """The training data cannot be used at all (empty manifest, missing shards)."""


@dataclass(frozen=True)
class ClipRef:
    """Where one clip of a manifest lives."""

    key: str  # sample key inside the shard
    shard: Path  # absolute path of the shard tar
    clip_id: str  # the manifest's clip id (for messages)


def load_clip_refs(manifests: list[Path], *, split: str) -> list[ClipRef]:
    """Return the clips of `split` in the manifests, raising DataError when none or a shard is missing."""
    refs: list[ClipRef] = []
    missing: set[Path] = set()
    for manifest in manifests:
        manifest = Path(manifest)
        if not manifest.is_file():
            raise DataError(f"no manifest at {manifest}: run `s2vdata build --target T` first")
        rows = read_manifest(manifest)
        if "split" in rows.columns:
            rows = rows[rows["split"] == split]
        for row in rows.itertuples(index=False):
            shard = (manifest.parent / str(row.shard)).resolve()
            if not shard.is_file():
                missing.add(shard)
            refs.append(ClipRef(key=str(row.key), shard=shard, clip_id=str(row.clip_id)))
    if missing:
        names = ", ".join(str(p) for p in sorted(missing)[:3])
        raise DataError(f"{len(missing)} shard(s) named in the manifest are missing ({names}): rebuild with `s2vdata build`")
    if not refs:
        raise DataError(
            f"no {split!r} clips in {', '.join(str(m) for m in manifests)}: build more sources or choose another --split"
        )
    return refs


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
    """Return one training sample from cached frames (120, 72, 72, 3) for the paper's crop: random start and 64 px crop."""
    n, h, w, _ = frames.shape
    start = int(rng.integers(0, n - data.frames + 1))
    y = int(rng.integers(0, h - IMAGE_SIZE + 1))
    x = int(rng.integers(0, w - IMAGE_SIZE + 1))
    clip = np.ascontiguousarray(frames[start : start + data.frames, y : y + IMAGE_SIZE, x : x + IMAGE_SIZE])
    return {"frames": clip, "wave": peak_normalize_np(np.asarray(wave, np.float32) / 32768.0), "start": start}


def decode_sample(sample: dict, *, ref_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (frames (120, 286, 286, 3) uint8, wave (176400,) float32) of a raw shard sample."""
    if "mp4" not in sample or "flac" not in sample:
        raise MediaError(ref_name, "sample lacks its .mp4 or .flac member")
    frames = decode_clip_video(sample["mp4"])
    wave, rate = decode_clip_audio(sample["flac"])
    if frames.shape[0] != CLIP.frames or wave.shape[0] != CLIP.samples or rate != CLIP.sample_rate:
        raise MediaError(
            ref_name,
            f"expected {CLIP.frames} frames and {CLIP.samples} samples at {CLIP.sample_rate} Hz, "
            f"got {frames.shape[0]} frames and {wave.shape[0]} samples at {rate} Hz",
        )
    return frames, wave


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
        cache: "ClipCache | None" = None,
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
        skipped: list[str] = []
        index = 0
        for n, (ref_name, load) in enumerate(raw):
            if index < skip:
                batch.append({})
                if len(batch) == self.batch_size:
                    batch, index = [], index + 1
                continue
            rng = np.random.default_rng([self.seed, epoch, unit, n])
            try:
                sample = load(rng)
            except MediaError as err:
                log.warning("skipping malformed clip %s: %s", ref_name, err)
                skipped.append(ref_name)
                continue
            sample["key"] = ref_name
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield collate(batch, worker=worker, epoch=epoch, index=index, skipped=skipped)
                batch, skipped, index = [], [], index + 1

    def _cached(self, epoch: int, unit: int, units: int) -> Iterator[tuple[str, Callable]]:
        """Yield (name, loader) for this unit's clips of the epoch from the decoded cache."""
        cache = self.cache
        order = np.random.default_rng([self.seed, epoch]).permutation(len(cache))
        for i in order[unit::units]:
            i = int(i)
            if not cache.ok[i]:
                continue
            yield cache.names[i], (lambda rng, i=i: sample_from_cached(cache.frames[i], cache.audio[i], rng=rng, data=self.data))

    def _streamed(self, epoch: int, unit: int, units: int) -> Iterator[tuple[str, Callable]]:
        """Yield (name, loader) for this unit's clips of the epoch, streamed from the shards."""
        wanted = {(str(r.shard), r.key): r for r in self.refs}
        shards = sorted({str(r.shard) for r in self.refs})
        order = [shards[i] for i in np.random.default_rng([self.seed, epoch]).permutation(len(shards))]
        by_shard = len(shards) >= units
        urls = order[unit::units] if by_shard else order
        if not urls:
            return
        stream = wds.WebDataset(
            urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False, handler=wds.warn_and_continue
        )
        buffer: list[tuple[str, dict]] = []
        rng = np.random.default_rng([self.seed, epoch, unit, 1 << 20])
        matched = 0
        for sample in stream:
            ref = wanted.get((str(Path(sample["__url__"]).resolve()), sample["__key__"]))
            if ref is None:
                continue
            matched += 1
            if not by_shard and (matched - 1) % units != unit:
                continue
            buffer.append((f"{ref.clip_id} ({Path(ref.shard).name}:{ref.key})", sample))
            if len(buffer) >= self.data.shuffle_buffer:
                yield self._loader(buffer.pop(int(rng.integers(len(buffer)))))
        while buffer:
            yield self._loader(buffer.pop(int(rng.integers(len(buffer)))))

    def _loader(self, item: tuple[str, dict]) -> tuple[str, Callable]:
        """Return (name, function rng -> sample) for one raw shard sample."""
        name, sample = item

        def load(rng: np.random.Generator) -> dict:
            frames, wave = decode_sample(sample, ref_name=name)
            return sample_from_full(frames, wave, rng=rng, data=self.data)

        return name, load


class TrainData:
    """An endless, resumable iterator of batches for one rank (one persistent DataLoader)."""

    def __init__(self, stream: ClipStream, *, workers: int) -> None:
        self.stream = stream
        self.num_workers = workers
        self.workers = max(1, workers)
        self.positions = [(0, 0)] * self.workers  # (epoch, batches consumed in it) per logical worker
        self.next_worker = 0
        self.skipped: list[str] = []  # malformed clips met so far (names)
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
        self.skipped.extend(batch["skipped"])
        return batch


def fixed_batch(refs: list[ClipRef], *, data: DataConfig, count: int, seed: int) -> dict:
    """Return a fixed batch of the first `count` readable clips (same crops every call), for metrics and samples."""
    samples: list[dict] = []
    for ref in refs:
        if len(samples) >= count:
            break
        stream = wds.WebDataset(
            [str(ref.shard)], shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False
        )
        for sample in stream:
            if sample["__key__"] != ref.key:
                continue
            try:
                frames, wave = decode_sample(sample, ref_name=ref.clip_id)
            except MediaError as err:
                log.warning("fixed batch: skipping malformed clip %s: %s", ref.clip_id, err)
                break
            rng = np.random.default_rng([seed, len(samples), 7])
            out = sample_from_full(frames, wave, rng=rng, data=data)
            out["key"] = ref.clip_id
            samples.append(out)
            break
    if not samples:
        raise DataError("no readable clip for the fixed metrics batch: every clip tried was malformed")
    return collate(samples, worker=0, epoch=0, index=0, skipped=[])
