"""Evaluate a checkpoint on a manifest split: does the video keep the image and move with the sound?

For every clip of the split the model generates all 120 frames from the clip's
frame 0 and its whole 4 s of sound (exactly what `generate` does), and frames
1..119 are compared with the real ones. Two baselines go through the same
measures: `still` (frame 0 repeated: the best a model that ignores the sound
can do on appearance, and zero on motion) and `real` (the real clip, for the
measures that compare against the sound). Real frames are seen the way the
trainer sees them, minus the randomness: the centre 256x256 of the 286x286
frame, resized to 64x64 with an area filter.

FVD (`s2vmodel.fvd`) compares the set of generated (or still) videos with the set
of real ones: every clip's 7 non-overlapping 16-frame windows, at the model's
size, resized to 224 for the Kinetics-400 I3D.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from s2vdata.media import MediaError
from s2vdata.shards import read_members
from s2vmodel import fvd as fvd_metric
from s2vmodel import metrics
from s2vmodel.checkpoint import load_generator
from s2vmodel.config import DataConfig
from s2vmodel.data import ClipRef, decode_sample, load_clip_refs
from s2vmodel.generate import generate_array, make_strip, strip_times, write_png
from s2vmodel.i3d import load_i3d

log = logging.getLogger(__name__)

METRICS = ("l1", "psnr", "ssim", "av_sync", "av_align")  # the keys of each baseline's result
APPEARANCE = ("l1", "psnr", "ssim")  # against the real frames: not defined for `real` itself
BASELINES = ("model", "still", "real")
COLUMNS = (*METRICS, "fvd")  # per-clip means, then FVD of the whole set against the real clips


def eval_frames(frames: np.ndarray, *, size: int, crop: int = DataConfig.crop) -> np.ndarray:
    """Returns clip frames (T, 286, 286, 3) as the model sees them: the centre `crop` square resized to `size`."""
    h, w = frames.shape[1:3]
    crop = min(crop, h, w)
    y, x = (h - crop) // 2, (w - crop) // 2
    return np.stack([cv2.resize(f[y : y + crop, x : x + crop], (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def clip_scores(*, generated: np.ndarray, real: np.ndarray, audio: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Returns {baseline: {metric: value}} of one clip; appearance compares frames 1.. with the real ones.

    generated, real: (T, H, W, 3) uint8 with the same shape, frame 0 of `real`
    being the input image; audio: the clip's sound (T * 1470 samples).
    """
    still = np.repeat(real[:1], len(real), axis=0)
    out: dict[str, dict[str, float | None]] = {}
    for name, video in (("model", generated), ("still", still), ("real", real)):
        row: dict[str, float | None] = {}
        for metric in APPEARANCE:
            row[metric] = None if name == "real" else getattr(metrics, metric)(video[1:], real[1:])
        row["av_sync"] = metrics.av_sync(video, audio)
        row["av_align"] = metrics.av_align(video, audio)
        out[name] = row
    return out


def summarise(per_clip: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    """Returns the mean of each metric over clips, per baseline (None where undefined; psnr ignores inf)."""
    summary: dict[str, dict[str, float | None]] = {}
    for name in BASELINES:
        row: dict[str, float | None] = {}
        for metric in METRICS:
            values = [c[name][metric] for c in per_clip if c[name][metric] is not None]
            # a clip whose frames do not change gives PSNR inf for `still`: it has no finite mean
            finite = [v for v in values if math.isfinite(v)]
            row[metric] = float(np.mean(finite)) if finite else None
        summary[name] = row
    return summary


class Embeddings:
    """I3D embeddings of every clip's FVD windows, per baseline, and the FVD of model and still against real."""

    def __init__(self, *, device: str) -> None:
        self.device = device
        self.rows: dict[str, list[np.ndarray]] = {name: [] for name in BASELINES}
        self.clips = 0

    def add(self, *, generated: np.ndarray, real: np.ndarray) -> None:
        """Embeds the windows of one clip's generated, still and real videos ((T, H, W, 3) uint8, same shape)."""
        windows = {"model": fvd_metric.clip_windows(generated), "real": fvd_metric.clip_windows(real)}
        for name, clips in windows.items():
            self.rows[name].append(fvd_metric.i3d_embeddings(clips, device=self.device))
        # every window of a still video is the same 16 copies of frame 0: embed one, count it per window
        still = fvd_metric.i3d_embeddings(np.repeat(real[None, :1], fvd_metric.FVD_FRAMES, axis=1), device=self.device)
        self.rows["still"].append(np.repeat(still, len(windows["real"]), axis=0))
        self.clips += 1

    def distances(self) -> dict[str, float | None]:
        """Returns {baseline: FVD against the real windows} (None for `real` itself, or with under 2 windows)."""
        if self.clips == 0 or sum(len(r) for r in self.rows["real"]) < 2:
            return {name: None for name in BASELINES}
        real = np.concatenate(self.rows["real"])
        out: dict[str, float | None] = {"real": None}
        for name in ("model", "still"):
            out[name] = fvd_metric.frechet_distance(np.concatenate(self.rows[name]), real)
        return out

    def protocol(self) -> dict:
        """Returns how FVD was measured here, and a warning when the clips are too few."""
        windows = sum(len(r) for r in self.rows["real"])
        return {
            "frames": fvd_metric.FVD_FRAMES,
            "size": fvd_metric.FVD_SIZE,
            "features": "Kinetics-400 I3D logits (400)",
            "clips": self.clips,
            "windows": windows,
            "note": fvd_metric.fvd_note(self.clips),
        }


def iter_clips(refs: list[ClipRef]) -> Iterator[tuple[ClipRef, dict[str, bytes] | None]]:
    """Yields (ref, raw sample or None if missing) for each clip, reading each shard once."""
    by_shard: dict[Path, list[ClipRef]] = defaultdict(list)
    for ref in refs:
        by_shard[ref.shard].append(ref)
    for shard, group in by_shard.items():
        members = read_members(shard, {r.key for r in group})
        for ref in group:
            yield ref, members.get(ref.key)


@torch.no_grad()
def evaluate(*, checkpoint: Path, manifest: Path, split: str = "test", strips_dir: Path | None = None, strips: int = 4,
             limit: int = 0, device: str = "cpu", fvd: bool = True,
             on_clip: Callable[[int, int], None] | None = None) -> dict:
    """Returns the evaluation of a checkpoint on one split of a manifest, as a JSON-ready dict.

    {"model": {metric: mean}, "still": {...}, "real": {...}, "clips": N, "split": split,
    "skipped": [names], "per_clip": [{"clip_id", "model", "still", "real"}], "fvd": {protocol}, ...};
    metrics are l1, psnr, ssim (frames 1..119 against the real ones), av_sync, av_align (motion
    against the sound, all 120 frames), and fvd (the set against the real clips; None for
    `real`, and everywhere when `fvd` is False). `strips_dir` gets Figure-2 strips of the first
    `strips` clips; `limit` > 0 evaluates only that many clips; `on_clip(done, total)`
    reports progress.
    """
    if fvd:
        load_i3d()  # fail before generating anything when the I3D weights are not installed
    model, config = load_generator(checkpoint, map_location=device)
    refs = load_clip_refs([Path(manifest)], split=split)
    if limit > 0:
        refs = refs[:limit]
    per_clip: list[dict] = []
    skipped: list[str] = []
    embeddings = Embeddings(device=device) if fvd else None
    for done, (ref, sample) in enumerate(iter_clips(refs), start=1):
        try:
            if sample is None:
                raise MediaError(ref.shard, f"clip {ref.key} is not in its shard")
            frames, wave = decode_sample(sample, ref_name=ref.clip_id)
        except MediaError as err:
            log.warning("skipping malformed clip %s: %s", ref.clip_id, err)
            skipped.append(ref.clip_id)
            if on_clip:
                on_clip(done, len(refs))
            continue
        real = eval_frames(frames, size=config.image_size)
        generated = generate_array(model, image=real[0], audio=wave)[: len(real)]
        scores = clip_scores(generated=generated, real=real, audio=wave)
        per_clip.append({"clip_id": ref.clip_id, **scores})
        if embeddings is not None:
            embeddings.add(generated=generated, real=real)
        if strips_dir is not None and len(per_clip) <= strips:
            times = strip_times(len(real))
            strip = make_strip(image=real[0], generated=[generated[t] for t in times], times=times,
                               real=[real[t] for t in times])
            write_png(Path(strips_dir) / f"{ref.clip_id}.png", strip)
        if on_clip:
            on_clip(done, len(refs))
    summary = summarise(per_clip)
    distances = embeddings.distances() if embeddings is not None else dict.fromkeys(BASELINES)
    for name in BASELINES:
        summary[name]["fvd"] = distances[name]
    return {
        **summary,
        "fvd": embeddings.protocol() if embeddings is not None else None,
        "clips": len(per_clip),
        "split": split,
        "skipped": skipped,
        "checkpoint": str(checkpoint),
        "manifest": str(manifest),
        "av_sync_max_lag": metrics.AV_SYNC_MAX_LAG,
        "per_clip": per_clip,
    }


def _finite(value):
    """Returns value with non-finite floats as None, recursively (strict JSON has no inf or NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, result: dict) -> Path:
    """Returns path after writing an evaluation there as strict JSON (PSNR inf of identical frames becomes null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(result), indent=2, allow_nan=False) + "\n")
    return path
