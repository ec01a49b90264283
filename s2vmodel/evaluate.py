"""Evaluate a checkpoint on a manifest split: does the video keep the image and move with the sound?

For every clip of the split the model generates all 120 frames from the clip's
frame 0 and its whole 4 s of sound (exactly what `generate` does), and frames
1..119 are compared with the real ones. Two baselines go through the same
measures: `still` (frame 0 repeated: the best a model that ignores the sound
can do on appearance, and zero on motion) and `real` (the real clip, for the
measures that compare against the sound). Real frames are seen the way the
trainer sees them, minus the randomness: the centre 256x256 of the 286x286
frame, resized to 64x64 with an area filter.

Motion is also compared with the real clip's own (`motion_time`: the motion-energy
curves correlated; `motion_place`: where in the frame it moves), and clips whose
first frame is mid-event (a burst, hands together) get `ghost` and `hole`: how the
generated frames err inside the input's event region (see `metrics.event_errors`).

FVD (`s2vmodel.fvd`) compares the set of generated (or still) videos with the set
of real ones: every clip's 7 non-overlapping 16-frame windows, at the model's
size, resized to 224 for the Kinetics-400 I3D. The I3D features of the real and
still videos depend only on the clip's frames: `fvd_cache` keeps them by the
frames' sha256, so a second evaluation of a split embeds only the model's windows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from s2vdata.clips import ClipError
from s2vmodel import fvd as fvd_metric
from s2vmodel import metrics
from s2vmodel.checkpoint import load_generator
from s2vmodel.clipio import clip_name, iter_decoded, load_clip_refs
from s2vmodel.config import DataConfig
from s2vmodel.generate import generate_array, make_strip, strip_times, write_png
from s2vmodel.i3d import load_i3d

log = logging.getLogger(__name__)

METRICS = ("l1", "psnr", "ssim", "av_sync", "av_align")  # the keys of each baseline's result
APPEARANCE = ("l1", "psnr", "ssim")  # against the real frames: not defined for `real` itself
BASELINES = ("model", "still", "real")
COLUMNS = (*METRICS, "fvd")  # per-clip means, then FVD of the whole set against the real clips
MOTION = ("time", "place", "amount")  # result["motion"][baseline]: motion against the real clip's
EVENTS = ("ghost", "hole")  # result["events"][baseline]: inside the input's event region, mid-event clips only
TABLE = (*METRICS, "motion_time", "motion_place", "fvd")  # the columns `s2vmodel evaluate` prints
FVD_CACHE_VERSION = "i3d-kinetics400-logits/16x224/1"  # part of every FVD cache key: change it when the features change


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
    out: dict[str, dict[str, float | None]] = {}
    for name, video in _videos(generated=generated, real=real):
        row: dict[str, float | None] = {}
        for metric in APPEARANCE:
            row[metric] = None if name == "real" else getattr(metrics, metric)(video[1:], real[1:])
        row["av_sync"] = metrics.av_sync(video, audio)
        row["av_align"] = metrics.av_align(video, audio)
        out[name] = row
    return out


def _videos(*, generated: np.ndarray, real: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Returns the three videos a clip is scored as: model, still (frame 0 repeated) and real."""
    return [("model", generated), ("still", np.repeat(real[:1], len(real), axis=0)), ("real", real)]


def motion_scores(*, generated: np.ndarray, real: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Returns {baseline: {time, place, amount}}: each video's motion against the real clip's (real: 1, 1, 1)."""
    return {
        name: {
            "time": metrics.motion_time(video, real),
            "place": metrics.motion_place(video, real),
            "amount": metrics.motion_amount(video, real),
        }
        for name, video in _videos(generated=generated, real=real)
    }


def event_scores(*, generated: np.ndarray, real: np.ndarray) -> dict[str, dict[str, float]] | None:
    """Returns {model|still: {ghost, hole}} when the clip's first frame is mid-event, else None."""
    if not metrics.holds_event(real):
        return None
    out = {}
    for name, video in _videos(generated=generated, real=real)[:2]:
        ghost, hole = metrics.event_errors(video, real)
        out[name] = {"ghost": ghost, "hole": hole}
    return out


def _mean(values: list[float | None]) -> float | None:
    """Returns the mean of the finite values, None when there are none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarise(per_clip: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    """Returns the mean of each metric over clips, per baseline (None where undefined; psnr ignores inf)."""
    # a clip whose frames do not change gives PSNR inf for `still`: it has no finite mean
    return {name: {metric: _mean([c[name][metric] for c in per_clip]) for metric in METRICS} for name in BASELINES}


def summarise_motion(per_clip: list[dict]) -> dict[str, dict[str, float | None]]:
    """Returns the per-baseline means of the motion measures over clips."""
    return {name: {m: _mean([c["motion"][name][m] for c in per_clip]) for m in MOTION} for name in BASELINES}


def summarise_events(per_clip: list[dict]) -> dict:
    """Returns ghost and hole means over the mid-event clips, per baseline, with how many clips and which."""
    mid = [c for c in per_clip if c["events"] is not None]
    out: dict = {name: {m: _mean([c["events"][name][m] for c in mid]) for m in EVENTS} for name in ("model", "still")}
    out.update(
        clips=len(mid), clip_ids=[c["clip_id"] for c in mid], threshold=metrics.EVENT_THRESHOLD, min_share=metrics.EVENT_MIN_SHARE
    )
    return out


def table_rows(result: dict) -> dict[str, dict[str, float | None]]:
    """Returns {baseline: {column of TABLE: value}} of an evaluation, for printing."""
    rows = {}
    for name in BASELINES:
        row = {m: result[name][m] for m in (*METRICS, "fvd")}
        row.update(motion_time=result["motion"][name]["time"], motion_place=result["motion"][name]["place"])
        rows[name] = {column: row[column] for column in TABLE}
    return rows


class FeatureCache:
    """I3D features kept on disk by the sha256 of the frames they come from (one .npy per video)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.hits = 0

    @staticmethod
    def key(frames: np.ndarray, *, kind: str) -> str:
        """Returns the cache key of a video's features: the frames' bytes, shape and the feature version."""
        digest = hashlib.sha256(f"{FVD_CACHE_VERSION}/{kind}/{frames.shape}".encode())
        digest.update(np.ascontiguousarray(frames).tobytes())
        return digest.hexdigest()

    def get(self, frames: np.ndarray, *, kind: str, compute) -> np.ndarray:
        """Returns the features of frames: from the cache when there, else compute() (kept for next time)."""
        if self.folder is None:
            return compute()
        path = self.folder / f"{self.key(frames, kind=kind)}.npy"
        if path.is_file():
            try:
                features = np.load(path)
                self.hits += 1
                return features
            except (OSError, ValueError) as err:
                log.warning("fvd cache: rebuilding unreadable %s: %s", path, err)
        features = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
        np.save(tmp, features)
        os.replace(tmp, path)
        return features


class Embeddings:
    """I3D embeddings of every clip's FVD windows, per baseline, and the FVD of model and still against real."""

    def __init__(self, *, device: str, cache: FeatureCache | None = None) -> None:
        self.device = device
        self.cache = cache or FeatureCache(None)
        self.rows: dict[str, list[np.ndarray]] = {name: [] for name in BASELINES}
        self.clips = 0

    def _embed(self, clips: np.ndarray) -> np.ndarray:
        return fvd_metric.i3d_embeddings(clips, device=self.device)

    def add(self, *, generated: np.ndarray, real: np.ndarray) -> None:
        """Embeds the windows of one clip's generated, still and real videos ((T, H, W, 3) uint8, same shape)."""
        windows = fvd_metric.clip_windows(real)
        self.rows["model"].append(self._embed(fvd_metric.clip_windows(generated)))
        self.rows["real"].append(self.cache.get(real, kind="real", compute=lambda: self._embed(windows)))
        # every window of a still video is the same 16 copies of frame 0: embed one, count it per window
        one = np.repeat(real[None, :1], fvd_metric.FVD_FRAMES, axis=1)
        still = self.cache.get(real[:1], kind="still", compute=lambda: self._embed(one))
        self.rows["still"].append(np.repeat(still, len(windows), axis=0))
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
            "cached": self.cache.hits,  # real and still feature sets read from the FVD cache instead of embedded
            "note": fvd_metric.fvd_note(self.clips),
        }


@torch.no_grad()
def evaluate(
    *,
    checkpoint: Path,
    manifest: Path | str,
    split: str = "test",
    strips_dir: Path | None = None,
    strips: int = 4,
    limit: int = 0,
    device: str = "cpu",
    fvd: bool = True,
    fvd_cache: Path | None = None,
    on_clip: Callable[[int, int], None] | None = None,
) -> dict:
    """Returns the evaluation of a checkpoint on one split of a manifest, as a JSON-ready dict.

    {"model": {metric: mean}, "still": {...}, "real": {...}, "clips": N, "split": split,
    "skipped": [names], "per_clip": [{"clip_id", "model", "still", "real"}], "fvd": {protocol}, ...};
    metrics are l1, psnr, ssim (frames 1..119 against the real ones), av_sync, av_align (motion
    against the sound, all 120 frames), and fvd (the set against the real clips; None for
    `real`, and everywhere when `fvd` is False; `fvd_cache` keeps the real and still
    features by frame hash). Beside them, "motion" holds each baseline's time, place and
    amount of motion against the real clip's, and "events" the ghost and hole errors of
    model and still on the clips whose first frame is mid-event (and how many). `strips_dir` gets Figure-2 strips of the first
    `strips` clips; `limit` > 0 evaluates only that many clips; `on_clip(done, total)`
    reports progress.
    """
    if fvd:
        load_i3d()  # fail before generating anything when the I3D weights are not installed
    model, config = load_generator(checkpoint, map_location=device)
    refs = load_clip_refs([manifest], split=split)
    if limit > 0:
        refs = refs[:limit]
    per_clip: list[dict] = []
    skipped: list[str] = []
    embeddings = Embeddings(device=device, cache=FeatureCache(fvd_cache)) if fvd else None
    for done, (ref, decoded) in enumerate(iter_decoded(refs), start=1):
        if isinstance(decoded, ClipError):
            log.warning("skipping clip %s: %s", clip_name(ref), decoded.reason)
            skipped.append(ref.clip_id)
            if on_clip:
                on_clip(done, len(refs))
            continue
        frames, wave = decoded
        real = eval_frames(frames, size=config.image_size)
        generated = generate_array(model, image=real[0], audio=wave)[: len(real)]
        per_clip.append(
            {
                "clip_id": ref.clip_id,
                **clip_scores(generated=generated, real=real, audio=wave),
                "motion": motion_scores(generated=generated, real=real),
                "events": event_scores(generated=generated, real=real),
            }
        )
        if embeddings is not None:
            embeddings.add(generated=generated, real=real)
        if strips_dir is not None and len(per_clip) <= strips:
            times = strip_times(len(real))
            strip = make_strip(image=real[0], generated=[generated[t] for t in times], times=times, real=[real[t] for t in times])
            write_png(Path(strips_dir) / f"{ref.clip_id}.png", strip)
        if on_clip:
            on_clip(done, len(refs))
    summary = summarise(per_clip)
    distances = embeddings.distances() if embeddings is not None else dict.fromkeys(BASELINES)
    for name in BASELINES:
        summary[name]["fvd"] = distances[name]
    return {
        **summary,
        "motion": summarise_motion(per_clip),
        "events": summarise_events(per_clip),
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
