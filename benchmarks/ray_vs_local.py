"""Local process pool vs Ray on one machine: wall time, Ray's overhead, the per-core rate, same manifest or not.

    .venv/bin/python benchmarks/ray_vs_local.py --count 8 --seconds 12
    .venv/bin/python benchmarks/ray_vs_local.py --count 6 --seconds 12 --size 1280x720 --json out.json

Makes `count` synthetic hand sources (clean, panned and silent ones in turn, so
some are kept and some rejected), copies the data folder twice, builds one copy
with `--executor local --jobs N` and the other with `--executor ray` on a local
Ray instance of N CPUs, and prints a table: wall time of each, Ray's start-up,
the rate per core (sources, source-seconds and clip-seconds per hour), and
whether the two manifests and rejects files are byte-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from s2vdata.build import build
from s2vdata.config import BuildSettings
from s2vdata.ingest import register_files
from s2vdata.media import write_video
from s2vdata.synth import render, synth_sources
from s2vdata.targets import get_target

TARGET = "hand"
DEFECTS = (None, None, "pan", "silent")  # one in two sources clean, so the build keeps some and rejects some


def make_sources(data: Path, *, count: int, seconds: float, size: tuple[int, int] | None) -> None:
    """Writes and registers `count` synthetic sources in `data`, at the synth sizes or at `size` (w, h)."""
    data.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        defect = DEFECTS[i % len(DEFECTS)]
        if size is None:
            synth_sources(target=TARGET, count=1, seed=1000 + i, data_dir=data, seconds=seconds, defect=defect)
            continue
        scene = render(TARGET, seed=(1000, i), seconds=seconds, fps=30.0, width=size[0], height=size[1], defect=defect)
        with tempfile.TemporaryDirectory(dir=data) as tmp:
            path = Path(tmp) / f"bench-{i:04d}.mp4"
            write_video(path, scene.frames(), scene.audio, fps=30.0, sample_rate=scene.sample_rate)
            register_files([path], target=TARGET, data_dir=data, origins=[f"bench://{TARGET}/{size[0]}x{size[1]}/{i}"])


def timed_build(root: Path, *, executor: str, jobs: int) -> dict:
    """Returns the wall time and counts of one build of `root`/data into `root`/manifests."""
    outcomes = []
    t0 = time.perf_counter()
    rep = build(
        target=get_target(TARGET),
        data_dir=root / "data",
        manifests_dir=root / "manifests",
        settings=BuildSettings(seed=0),
        jobs=jobs,
        executor=executor,
        on_source=outcomes.append,
    )
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "sources": len(outcomes),
        "clips": rep.clips,
        "failed": rep.failed,
        "task_s": sum(o.seconds for o in outcomes),
    }


def source_seconds(data: Path) -> float:
    """Returns the total duration of the registered sources, from the registry."""
    from s2vdata.registry import Registry

    return sum(float(r["duration_s"] or 0) for r in Registry(data).rows())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=8, help="synthetic sources")
    ap.add_argument("--seconds", type=float, default=12.0, help="length of each source")
    ap.add_argument("--size", default="", help="WxH of every source (default: the synth sizes, about 320 px)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for local, CPUs for Ray")
    ap.add_argument("--work", type=Path, default=None, help="folder to build in (default: a temporary one, removed)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None

    work = Path(args.work or tempfile.mkdtemp(prefix="s2v-bench-ray-"))
    try:
        base = work / "base" / "data"
        t0 = time.perf_counter()
        make_sources(base, count=args.count, seconds=args.seconds, size=size)
        made = time.perf_counter() - t0
        for name in ("local", "ray"):
            shutil.rmtree(work / name, ignore_errors=True)
            shutil.copytree(base, work / name / "data")

        local = timed_build(work / "local", executor="local", jobs=args.jobs)

        import ray

        from s2vdata.ray_executor import start_ray

        t0 = time.perf_counter()
        start_ray(num_cpus=args.jobs)
        ray.get(ray.remote(lambda: None).remote())  # a worker is up: the instance is ready for tasks
        ray_start = time.perf_counter() - t0
        try:
            on_ray = timed_build(work / "ray", executor="ray", jobs=args.jobs)
        finally:
            ray.shutdown()

        same = {
            f: (work / "local" / "manifests" / f"{TARGET}{f}").read_bytes()
            == (work / "ray" / "manifests" / f"{TARGET}{f}").read_bytes()
            for f in (".csv", ".rejects.csv")
        }
        src_s = source_seconds(base)
        cores = args.jobs
        per_core_hour = 3600.0 / (local["wall_s"] * cores)
        result = {
            # other work on the machine slows both builds: the load average says how busy it was
            "machine": {
                "cpus": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
                "load_avg_1min_at_end": round(os.getloadavg()[0], 1),
            },
            "sources": args.count,
            "source_seconds": round(src_s, 1),
            "size": args.size or "synth (about 320 px)",
            "make_sources_s": round(made, 1),
            "jobs": cores,
            "local_wall_s": round(local["wall_s"], 2),
            "ray_wall_s": round(on_ray["wall_s"], 2),
            "ray_start_s": round(ray_start, 2),
            "ray_overhead_pct": round(100 * (on_ray["wall_s"] / local["wall_s"] - 1), 1),
            "clips": local["clips"],
            "failed": local["failed"] + on_ray["failed"],
            # from the local build's wall time: start-up and commit included (what a small build sees)
            "per_core": {
                "sources_per_hour": round(args.count * per_core_hour, 1),
                "source_seconds_per_hour": round(src_s * per_core_hour),
                "clip_seconds_per_hour": round(local["clips"] * 4 * per_core_hour),
            },
            # from the time inside the tasks: the steady rate of a long build, where start-up is amortised
            "per_core_steady": {
                "task_seconds_per_source_local": round(local["task_s"] / max(1, local["sources"]), 2),
                "task_seconds_per_source_ray": round(on_ray["task_s"] / max(1, on_ray["sources"]), 2),
                "sources_per_hour": round(3600 * local["sources"] / max(local["task_s"], 1e-9), 1),
                "source_seconds_per_hour": round(3600 * src_s / max(local["task_s"], 1e-9)),
                "clip_seconds_per_hour": round(3600 * local["clips"] * 4 / max(local["task_s"], 1e-9)),
            },
            "identical": same,
        }
        print(f"| | local --jobs {cores} | ray ({cores} CPUs) |\n|---|---|---|")
        print(f"| build wall time | {local['wall_s']:.1f} s | {on_ray['wall_s']:.1f} s (+{ray_start:.1f} s Ray start) |")
        print(f"| clips kept | {local['clips']} | {on_ray['clips']} |")
        print(f"| manifest / rejects byte-identical | {same['.csv']} / {same['.rejects.csv']} | |")
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
