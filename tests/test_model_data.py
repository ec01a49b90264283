"""The trainer's data: manifests and shards -> samples as the paper takes them, the cache, resumable order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from s2vdata.manifest import clip_sha256, write_manifest
from s2vdata.media import encode_clip
from s2vdata.shards import write_shard
from s2vmodel.cache import ClipCache, build_cache, cache_key, cache_size
from s2vmodel.clipio import ClipError, DataError, load_clip_refs
from s2vmodel.config import DataConfig
from s2vmodel.data import ClipStream, TrainData, fixed_batch, sample_from_full

SIZE, FRAMES, SPF = 286, 120, 1470


def clap_clip(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (frames, audio) of a synthetic clip: a bar that drops and hits the floor with a click.

    Each frame's row of the bar is a known function of the frame index, and a click sounds in the
    slot where the bar lands, so sound and motion correspond (and a test can read frame numbers
    back from pixels: the red channel of the top-left corner encodes the frame index).
    """
    rng = np.random.default_rng(seed)
    frames = np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8)
    frames[:] = rng.integers(40, 90, size=3, dtype=np.uint8)
    audio = (rng.standard_normal(FRAMES * SPF) * 0.002).astype(np.float32)
    period = int(rng.integers(18, 30))
    phase = int(rng.integers(0, period))
    for i in range(FRAMES):
        t = (i + phase) % period
        y = 40 + int(200 * t / (period - 1))
        frames[i, y : y + 30, 60:230] = (230, 230, 230)
        if t == period - 1:
            n = np.arange(SPF)
            audio[i * SPF : (i + 1) * SPF] += (0.8 * np.exp(-n / 200) * np.sin(n * 0.9)).astype(np.float32)
        frames[i, :16, :16, 0] = 2 * i
    return frames, audio


def make_dataset(folder: Path, *, clips: int, shards: int = 1, splits: list[str] | None = None, target: str = "hand") -> Path:
    """Return the manifest path of a small real dataset (H.264/FLAC shards) written under folder."""
    shard_dir = folder / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    rows, per_shard = [], [[] for _ in range(shards)]
    for c in range(clips):
        frames, audio = clap_clip(c)
        mp4, flac = encode_clip(frames, audio)
        key = f"clip{c:04d}"
        s = c % shards
        row = {
            "clip_id": f"src{c}-0",
            "target": target,
            "source_id": f"src{c}",
            "origin": "synthetic",
            "start_s": 0.0,
            "duration_s": 4.0,
            "frames": FRAMES,
            "fps": 30,
            "sample_rate": 44100,
            "size": SIZE,
            "shard": f"shards/{target}-{s:06d}.tar",
            "key": key,
            "split": (splits or ["train"] * clips)[c],
            "sha256": clip_sha256(mp4, flac),
            "license": "",
            "webpage_url": "",
        }
        per_shard[s].append((key, {"mp4": mp4, "flac": flac, "json": json.dumps(row).encode()}))
        rows.append(row)
    for s, samples in enumerate(per_shard):
        write_shard(shard_dir / f"{target}-{s:06d}.tar", samples)
    manifest = folder / f"{target}.csv"
    write_manifest(manifest, rows)
    return manifest


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), clips=5, shards=2, splits=["train", "train", "train", "val", "train"])


def frame_numbers(frames: torch.Tensor) -> np.ndarray:
    """Return the frame indices encoded in the red corner of (T, 64, 64, 3) uint8 frames."""
    return np.round(frames[:, 0, 0, 0].numpy().astype(float) / 2).astype(int)


def test_sample_is_100_consecutive_frames_from_a_random_start_with_the_whole_sound():
    frames, audio = clap_clip(3)
    # the whole frame (no crop: the coded corner always survives; the crop has its own test below)
    data = DataConfig(crop=286)
    starts = set()
    for s in range(30):
        sample = sample_from_full(frames, audio * 0.25, rng=np.random.default_rng(s), data=data)
        assert sample["frames"].shape == (100, 64, 64, 3) and sample["frames"].dtype == np.uint8
        assert sample["wave"].shape == (176400,)
        assert np.isclose(np.abs(sample["wave"]).max(), 1.0)  # peak-normalised, as the paper
        start = sample["start"]
        starts.add(start)
        assert 0 <= start <= 20
        # the red corner codes the frame index (+-2 after H.264's chroma coding)
        assert np.abs(frame_numbers(torch.from_numpy(sample["frames"])) - np.arange(start, start + 100)).max() <= 2
    assert len(starts) > 5


def test_crop_is_one_window_for_the_whole_clip():
    frames = np.zeros((120, 286, 286, 3), np.uint8)
    frames[:, 100:110, 100:110] = 255  # a still square: the same crop keeps it at the same place
    sample = sample_from_full(frames, np.zeros(176400, np.float32), rng=np.random.default_rng(1), data=DataConfig())
    assert (sample["frames"] == sample["frames"][:1]).all()
    assert sample["frames"].max() > 0


def test_load_clip_refs_filters_the_split_and_rejects_empty_or_missing(dataset, tmp_path):
    assert len(load_clip_refs([dataset], split="train")) == 4
    assert [r.clip_id for r in load_clip_refs([dataset], split="val")] == ["src3-0"]
    with pytest.raises(DataError, match="no 'test' clips"):
        load_clip_refs([dataset], split="test")
    broken = tmp_path / "broken.csv"
    broken.write_text(dataset.read_text().replace("shards/hand-000001.tar", "shards/gone.tar"))
    with pytest.raises(DataError, match="missing"):
        load_clip_refs([broken], split="train")
    with pytest.raises(DataError, match="no manifest"):
        load_clip_refs([tmp_path / "absent.csv"], split="train")


def collect(data: TrainData, n: int) -> list[list[str]]:
    return [next(data)["keys"] for _ in range(n)]


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_epochs_cover_every_clip_once_and_resume_in_the_same_order(dataset, workers):
    refs = load_clip_refs([dataset], split="train")
    data_config = DataConfig(cache="", shuffle_buffer=4)

    def fresh() -> TrainData:
        stream = ClipStream(refs, data=data_config, batch_size=1, seed=3)
        return TrainData(stream, workers=workers)

    # every epoch, the units (workers) together deliver every train clip exactly once
    stream = ClipStream(refs, data=data_config, batch_size=1, seed=3)
    units = max(1, workers)
    for epoch in range(3):
        keys = [k for u in range(units) for b in stream.epoch_batches(epoch=epoch, unit=u, units=units) for k in b["keys"]]
        assert len(keys) == 4 and len(set(keys)) == 4
    full = fresh()
    batches = [next(full) for _ in range(10)]
    order = [b["keys"] for b in batches]
    part_data = fresh()
    part = collect(part_data, 3)
    resumed = fresh()
    resumed.load_state(part_data.state())
    assert part + collect(resumed, 7) == order


def test_cache_holds_every_clip_at_72_px_and_feeds_the_same_clips(dataset, tmp_path):
    refs = load_clip_refs([dataset], split="train")
    folder = tmp_path / "cache" / cache_key([dataset], split="train")
    cache = build_cache(refs, folder=folder)
    assert cache.frames.shape == (4, 120, 72, 72, 3) and all(cache.ok) and cache.failed == []
    frames, audio = cache.clip(0)
    assert frames.shape == (120, 72, 72, 3) and audio.dtype == np.float32 and np.abs(audio).max() > 0.5
    assert build_cache(refs, folder=folder).folder == folder  # complete: opened, not rebuilt
    stream = ClipStream(refs, data=DataConfig(), batch_size=2, seed=0, cache=ClipCache(folder))
    batches = collect(TrainData(stream, workers=0), 2)
    assert sorted(k for b in batches for k in b) == sorted(cache.names)
    batch = next(TrainData(stream, workers=0))
    assert batch["frames"].shape == (2, 100, 64, 64, 3)


def test_cached_frames_keep_the_clip_timeline(dataset, tmp_path):
    # cached at 64 px (the whole frame, crop 286): the 64 px crop is the whole cached frame, so the coded corner survives
    refs = load_clip_refs([dataset], split="train")
    size = cache_size(crop=286)
    assert size == 64
    cache = build_cache(refs, folder=tmp_path / "c64", size=size)
    batch = next(TrainData(ClipStream(refs, data=DataConfig(crop=286), batch_size=2, seed=0, cache=cache), workers=0))
    for b in range(2):
        start = int(batch["start"][b])
        frames, _ = cache.clip(cache.names.index(batch["keys"][b]))
        assert np.array_equal(batch["frames"][b].numpy(), frames[start : start + 100])
        # and those are the clip's frames start, start + 1, ... (the red corner codes the index, +-2 after chroma coding)
        assert np.abs(frame_numbers(batch["frames"][b]) - np.arange(start, start + 100)).max() <= 2


def test_cache_key_changes_with_the_manifest(dataset, tmp_path):
    copy = tmp_path / "hand.csv"
    copy.write_text(dataset.read_text())
    before = cache_key([copy], split="train")
    copy.write_text(dataset.read_text() + "")
    assert cache_key([copy], split="train") == before
    copy.write_text(dataset.read_text().replace("src1-0", "src1-9"))
    assert cache_key([copy], split="train") != before
    assert cache_key([copy], split="val") != cache_key([copy], split="train")


def test_malformed_clip_is_named_skipped_and_counted(tmp_path):
    manifest = make_dataset(tmp_path, clips=3)
    shard = tmp_path / "shards" / "hand-000000.tar"
    from s2vdata.shards import read_shard

    samples = list(read_shard(shard))
    samples[1] = (samples[1][0], {**samples[1][1], "mp4": b"not a video at all"})
    write_shard(shard, samples)
    refs = load_clip_refs([manifest], split="train")
    data = TrainData(ClipStream(refs, data=DataConfig(cache=""), batch_size=1, seed=0), workers=0)
    keys = [k for b in collect(data, 2) for k in b]
    assert "src1-0" not in " ".join(keys)
    assert len(data.skipped) == 1 and "src1-0" in data.skipped[0]
    collect(data, 4)  # two more epochs meet it again: still one skipped clip
    assert len(data.skipped) == 1
    assert fixed_batch(refs, data=DataConfig(), count=3, seed=0)["frames"].shape[0] == 2
    # the cache keeps the clip's slot and reason; the trainer skips and counts it just the same
    cache = build_cache(refs, folder=tmp_path / "cache")
    assert cache.ok == [True, False, True] and len(cache.failed) == 1 and "src1-0" in cache.failed[0]
    with pytest.raises(ClipError, match="src1-0"):
        cache.clip(1)
    data = TrainData(ClipStream(refs, data=DataConfig(), batch_size=1, seed=0, cache=cache), workers=0)
    keys = [k for b in collect(data, 4) for k in b]
    assert "src1-0" not in " ".join(keys) and len(keys) == 4
    assert data.skipped == cache.failed


def test_a_damaged_shard_costs_its_clips_only(tmp_path):
    manifest = make_dataset(tmp_path, clips=4, shards=2)
    shard = tmp_path / "shards" / "hand-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])  # cut inside its first clip
    refs = load_clip_refs([manifest], split="train")
    data = TrainData(ClipStream(refs, data=DataConfig(cache=""), batch_size=1, seed=0), workers=0)
    keys = [k for b in collect(data, 2) for k in b]
    assert all("hand-000000.tar" in k for k in keys)
    assert data.skipped == ["hand-000001.tar"]
    cache = build_cache(refs, folder=tmp_path / "cache")
    assert cache.ok == [True, False, True, False]


def test_a_csv_that_is_not_a_manifest_is_named_in_one_line(tmp_path):
    other = tmp_path / "sources.csv"
    other.write_text("source_id,path\na,b.mp4\n")
    with pytest.raises(DataError) as err:
        load_clip_refs([other], split="train")
    assert str(other) in str(err.value) and "not an s2v manifest" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="cannot read it as a manifest"):
        load_clip_refs([tmp_path], split="train")
    binary = tmp_path / "x.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="x.csv"):
        load_clip_refs([binary], split="train")
