"""Write a dataset of burst scenes the model was never tuned on: a fixed camera, a flash at each bang, at a random place.

    .venv/bin/python benchmarks/burst_scenes.py --out /tmp/bursts --sources 40 --seed 1
    s2vmodel train /tmp/bursts/bursts.csv --preset tiny --out runs/bursts
    s2vmodel evaluate /tmp/bursts/bursts.csv --checkpoint runs/bursts/checkpoints/latest.pt --split test

Unlike the `fireworks` target of `s2vdata synth` (a rocket rises, then a ring of
sparks), a flash here is a soft disc of light at a place the sound cannot tell,
over a background drawn from three kinds (night sky, dusk gradient, smooth
texture), fading over 0.15-0.5 s. Each 12 s source gives three 4 s clips (at 0,
4 and 8 s; test sources one every --test-stride s, overlapping), so a good share
of the clips start while a flash is still fading: the input image holds an event
the model must continue. Splits are by source (every tenth source is test, the
next val), so test scenes are unseen. Clips go straight into shards and a
manifest (the build's checks are not what this measures).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from s2vdata.config import CLIP
from s2vdata.manifest import clip_sha256, write_manifest
from s2vdata.media import encode_clip
from s2vdata.shards import write_shard
from s2vdata.synth_sound import add_at, bang, noise_floor

SECONDS = 12.0
SIZE = CLIP.size


def background(rng: np.random.Generator) -> np.ndarray:
    """Returns a (286, 286, 3) float background of one of three kinds: night sky, dusk gradient or smooth texture."""
    yy = np.linspace(0, 1, SIZE, dtype=np.float32)[:, None, None]
    kind = rng.integers(3)
    if kind == 0:  # night sky with stars
        top, low = rng.uniform(0, 40, 3), rng.uniform(10, 90, 3)
        img = top * (1 - yy) + low * yy + np.zeros((1, SIZE, 1), np.float32)
        for _ in range(int(rng.integers(30, 90))):
            img[rng.integers(SIZE), rng.integers(SIZE)] = rng.uniform(120, 230)
    elif kind == 1:  # dusk or day gradient
        top, low = rng.uniform(40, 200, 3), rng.uniform(30, 180, 3)
        img = top * (1 - yy) + low * yy + np.zeros((1, SIZE, 1), np.float32)
    else:  # smooth texture (a wall, foliage at night)
        cells = rng.uniform(0, 1, (6, 6, 3)).astype(np.float32)
        texture = cv2.resize(cells, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
        img = rng.uniform(10, 60, 3) + texture * rng.uniform(30, 110)
    return np.clip(img, 0, 200).astype(np.float32)


def plan_flashes(rng: np.random.Generator, *, frames: int, fps: int) -> list[dict]:
    """Returns the flashes of a source: onset frame, place, radius, colour and fade time, gaps of 0.6-2.6 s."""
    flashes, k = [], int(rng.uniform(0.3, 1.5) * fps)
    while k < frames - int(0.3 * fps):
        flashes.append(
            {
                "k": k,
                "y": rng.uniform(0.15, 0.85) * SIZE,
                "x": rng.uniform(0.15, 0.85) * SIZE,
                "radius": rng.uniform(0.05, 0.16) * SIZE,
                "colour": rng.uniform(170, 255, 3),
                "fade_s": rng.uniform(0.15, 0.5),
            }
        )
        k += int(rng.uniform(0.6, 2.6) * fps)
    return flashes


def render_source(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Returns (frames (360, 286, 286, 3) uint8, audio (529200,) float32) of one 12 s source."""
    fps, rate = CLIP.fps, CLIP.sample_rate
    n_frames = int(SECONDS * fps)
    base = background(rng)
    flashes = plan_flashes(rng, frames=n_frames, fps=fps)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    frames = np.empty((n_frames, SIZE, SIZE, 3), np.uint8)
    for i in range(n_frames):
        img = base.copy()
        for f in flashes:
            if i < f["k"]:
                continue
            light = float(np.exp(-(i - f["k"]) / (f["fade_s"] * fps)))
            if light < 0.02:
                continue
            disc = np.exp(-((yy - f["y"]) ** 2 + (xx - f["x"]) ** 2) / (2 * f["radius"] ** 2))[..., None]  # (H, W, 1)
            img = img + (f["colour"] - img) * np.clip(1.3 * light * disc, 0, 1)
        frames[i] = np.clip(img + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8)  # a little sensor noise
    audio = noise_floor(rng, n=int(SECONDS * rate), level_db=-50.0)
    for f in flashes:
        add_at(audio, f["k"] * CLIP.samples_per_frame, bang(rng, sample_rate=rate) * rng.uniform(0.4, 0.9))
    return frames, np.clip(audio, -1, 1).astype(np.float32)


def split_of(source: int) -> str:
    """Returns the split of source number `source`: every tenth is test, the next val, the rest train."""
    return {0: "test", 1: "val"}.get(source % 10, "train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for shards/ and bursts.csv")
    parser.add_argument("--sources", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--test-stride", type=float, default=2.0, help="seconds between test clip starts (more clips start mid-flash)"
    )
    args = parser.parse_args()
    rows = []
    for s in range(args.sources):
        rng = np.random.default_rng([args.seed, s])
        frames, audio = render_source(rng)
        samples = []
        stride = round((args.test_stride if split_of(s) == "test" else CLIP.seconds) * CLIP.fps)
        for c, f0 in enumerate(range(0, len(frames) - CLIP.frames + 1, stride)):
            mp4, flac = encode_clip(frames[f0 : f0 + CLIP.frames], audio[f0 * CLIP.samples_per_frame :][: CLIP.samples])
            key = f"burst{s:03d}_{c}"
            row = {
                "clip_id": key,
                "target": "bursts",
                "source_id": f"burst{s:03d}",
                "origin": "synthetic",
                "start_s": f0 / CLIP.fps,
                "duration_s": CLIP.seconds,
                "frames": CLIP.frames,
                "fps": CLIP.fps,
                "sample_rate": CLIP.sample_rate,
                "size": SIZE,
                "shard": f"shards/bursts-{s:06d}.tar",
                "key": key,
                "split": split_of(s),
                "sha256": clip_sha256(mp4, flac),
                "license": "",
                "webpage_url": "",
            }
            samples.append((key, {"mp4": mp4, "flac": flac, "json": json.dumps(row).encode()}))
            rows.append(row)
        write_shard(args.out / "shards" / f"bursts-{s:06d}.tar", samples)
        print(f"source {s + 1}/{args.sources}: {split_of(s)}", flush=True)
    write_manifest(args.out / "bursts.csv", rows)
    counts = {split: sum(r["split"] == split for r in rows) for split in ("train", "val", "test")}
    print(f"{len(rows)} clips: {counts} -> {args.out / 'bursts.csv'}")


if __name__ == "__main__":
    main()
