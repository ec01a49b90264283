"""Benchmark the trainer on this machine: loader clips/s (shards, cache) and step time per preset.

    .venv/bin/python benchmarks/train.py                       # synthetic clips made here
    .venv/bin/python benchmarks/train.py --manifest manifests/hand.csv --steps 3

Prints a markdown table and writes benchmarks/out/train.json. The loader numbers are
the DataLoader delivering batches with nothing else to do (what a step can be fed at);
a step's time is measured inside `s2vmodel train` itself (its steps/s metric, data wait included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from s2vdata.manifest import clip_sha256, write_manifest
from s2vdata.media import encode_clip
from s2vdata.shards import write_shard
from s2vmodel.cache import build_cache, cache_key, cache_size
from s2vmodel.config import DataConfig, resolve_config
from s2vmodel.data import ClipStream, TrainData, load_clip_refs
from s2vmodel.train import train


def synthetic_manifest(folder: Path, *, clips: int) -> Path:
    """Return a manifest of `clips` synthetic clips (a bar moving with clicks) in one shard under folder."""
    rng = np.random.default_rng(0)
    rows, samples = [], []
    for c in range(clips):
        frames = np.full((120, 286, 286, 3), 60, np.uint8)
        audio = (rng.standard_normal(176_400) * 0.01).astype(np.float32)
        for i in range(120):
            y = 20 + (i * 9 + c * 13) % 230
            frames[i, y : y + 30, 40:240] = 220
            if (i * 9 + c * 13) % 230 < 9:
                audio[i * 1470 : i * 1470 + 400] += 0.7
        mp4, flac = encode_clip(frames, audio)
        key = f"bench{c:04d}"
        row = {
            "clip_id": key,
            "target": "bench",
            "source_id": key,
            "origin": "synthetic",
            "start_s": 0.0,
            "duration_s": 4.0,
            "frames": 120,
            "fps": 30,
            "sample_rate": 44100,
            "size": 286,
            "shard": "bench-000000.tar",
            "key": key,
            "split": "train",
            "sha256": clip_sha256(mp4, flac),
            "license": "",
            "webpage_url": "",
        }
        rows.append(row)
        samples.append((key, {"mp4": mp4, "flac": flac, "json": json.dumps(row).encode()}))
    write_shard(folder / "bench-000000.tar", samples)
    write_manifest(folder / "bench.csv", rows)
    return folder / "bench.csv"


def loader_rate(refs, *, cache, workers: int, batches: int, batch_size: int) -> float:
    """Return clips/s the loader delivers over `batches` batches (after the first, which starts the workers)."""
    stream = ClipStream(refs, data=DataConfig(workers=workers), batch_size=batch_size, seed=0, cache=cache)
    data = TrainData(stream, workers=workers)
    next(data)
    start = time.perf_counter()
    for _ in range(batches):
        next(data)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="a built manifest (default: synthetic clips made here)")
    parser.add_argument("--clips", type=int, default=8, help="synthetic clips when no --manifest")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per preset")
    parser.add_argument("--presets", default="tiny,paper")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/train.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="s2v-bench-") as tmp:
        tmp = Path(tmp)
        manifest = args.manifest or synthetic_manifest(tmp, clips=args.clips)
        refs = load_clip_refs([manifest], split="train")
        results: dict = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "torch": torch.__version__,
            "clips": len(refs),
            "loader": {},
            "steps": {},
        }
        n = max(2, min(len(refs) // 2, 8))
        for workers in (0, 1, 2):
            results["loader"][f"shards, {workers} workers"] = loader_rate(
                refs, cache=None, workers=workers, batches=n, batch_size=2
            )
        size = cache_size(crop=256)
        start = time.perf_counter()
        cache = build_cache(refs, folder=tmp / "cache" / cache_key([manifest], split="train", size=size), size=size)
        results["cache_build_s_per_clip"] = (time.perf_counter() - start) / len(refs)
        for workers in (0, 1, 2):
            results["loader"][f"cache, {workers} workers"] = loader_rate(
                refs, cache=cache, workers=workers, batches=50, batch_size=2
            )
        for preset in args.presets.split(","):
            # one warm-up step, then the timed ones: a run's first step pays for allocations
            config = resolve_config(
                preset=preset,
                overrides={
                    "data": {"cache": str(tmp / "cache"), "workers": 1},
                    "train": {
                        "steps": args.steps + 1,
                        "log_every": 1,
                        "sample_every": 10**9,
                        "ckpt_every": 10**9,
                        "threads": args.threads,
                    },
                },
            )
            out = tmp / f"run-{preset}"
            train([manifest], out=out, config=config)
            lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
            results["steps"][preset] = sum(1 / line["steps_per_s"] for line in lines) / len(lines)

    print(f"machine: {results['machine']}, torch {results['torch']}, {results['clips']} clips")
    print("| loader | clips/s |\n|---|---|")
    for name, rate in results["loader"].items():
        print(f"| {name} | {rate:.1f} |")
    print(f"\ncache build: {results['cache_build_s_per_clip']:.2f} s per clip\n")
    print("| preset | s/step (batch 2, CPU) |\n|---|---|")
    for name, seconds in results["steps"].items():
        print(f"| {name} | {seconds:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
