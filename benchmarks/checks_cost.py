"""Time the window checks (voice model included) against a bare decode of the same sources.

    .venv/bin/python benchmarks/checks_cost.py [--out benchmarks/out] [--minutes 1] [--sources 2] [--sizes 720p,480p]

Sources: the synthetic hand-clap scenes of benchmarks/build.py (H.264 + AAC,
30 fps), at 1280x720 and at 854x480. The bare decode is benchmarks/build.py's
(the FFmpeg command line decodes, crops the centre square and scales it to
286 px; the sound is resampled to 44.1 kHz mono), one file at a time. The checks are
`s2vdata.checks.measure_window` on every back-to-back 4-second window of the
same files, decoded by `s2vdata.media.GridReader` as the build does; only the
checks' own calls are timed: each frame shrunk for them as it arrives
(`SmallFrames.add`, as the build does) and measure_window (wall clock and CPU of the whole process,
every thread), after one untimed call on a blank window (a worker's one-time
costs: numpy imports its FFT module on first use). Loading the voice model (its weights read into numpy, no
torch) happens once per worker and is reported apart, with the import of
`s2vdata.checks` in a fresh process (what a build worker pays to start).
CPU seconds of both are reported too: on a shared machine they move less
with the load than wall time does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from build import bare_decode, children_cpu, scene_source  # noqa: E402


def time_checks(paths: list[Path]) -> dict:
    """Returns the wall and CPU seconds of measure_window over every 4-second window of these files, and the model load time."""
    from s2vdata import media
    from s2vdata.checks import SmallFrames, measure_window, speech
    from s2vdata.config import CLIP
    from s2vdata.media import GridReader

    # one FFmpeg thread, as a build worker decodes with a worker per core: with FFmpeg's frame threads, frames
    # still in flight would be decoded while the checks are timed, and counted in their CPU time
    media.set_threads(1)

    t0 = time.perf_counter()
    speech.load_model()
    load_s = time.perf_counter() - t0
    n, spf = CLIP.frames, CLIP.samples_per_frame
    # a worker's first window pays one-time costs (numpy's FFT module is imported on first use, cv2's pool, ...):
    # paid here, on a blank window, so each size is timed warm whatever ran before it
    measure_window(np.zeros((n, CLIP.size, CLIP.size, 3), np.uint8), np.zeros(n * spf, np.float32))
    wall = cpu = shrink_cpu = 0.0
    windows = 0
    for path in paths:
        frames = np.empty((n, CLIP.size, CLIP.size, 3), np.uint8)
        audio = np.empty(n * spf, np.float32)
        small = SmallFrames(n, size=CLIP.size)
        i = 0
        with GridReader(path) as reader:
            for slot in reader.slots():
                frames[i] = slot.frame
                audio[i * spf : (i + 1) * spf] = slot.audio
                # the build shrinks each frame for the checks as it arrives: part of their cost
                w, c = time.perf_counter(), time.process_time()
                small.add(i, slot.frame)
                wall += time.perf_counter() - w
                shrink = time.process_time() - c
                cpu += shrink
                shrink_cpu += shrink
                i += 1
                if i == n:
                    w, c = time.perf_counter(), time.process_time()
                    measure_window(frames, audio, small=small)
                    wall += time.perf_counter() - w
                    cpu += time.process_time() - c
                    windows += 1
                    i = 0
    return {
        "windows": windows,
        "checks_wall_s": round(wall, 2),
        "checks_cpu_s": round(cpu, 2),
        "ms_per_window": round(1000 * wall / max(1, windows), 1),
        "shrink_cpu_ms_per_window": round(1000 * shrink_cpu / max(1, windows), 1),
        "model_load_s": round(load_s, 2),
    }


def worker_start() -> float:
    """Returns the seconds a fresh process takes to import s2vdata.checks and load the voice model (a worker's start)."""
    import subprocess

    code = (
        "import time; t = time.perf_counter(); from s2vdata.checks import speech; speech.load_model(); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return round(float(out.strip()), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--minutes", type=float, default=1.0, help="length of each source")
    ap.add_argument("--sources", type=int, default=2, help="sources per size")
    ap.add_argument("--sizes", default="720p,480p", help="which sizes: 720p, 480p or both")
    ap.add_argument("--repeats", type=int, default=3, help="bare decode and checks alternated this many times: best of each")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "sizes": {},
        "worker_start_s": worker_start(),
    }
    wanted = set(args.sizes.split(","))
    for width, height in ((1280, 720), (854, 480)):
        if f"{height}p" not in wanted:
            continue
        paths = [(args.out / f"cost-{height}p-{i}.mp4").resolve() for i in range(args.sources)]
        for i, p in enumerate(paths):
            scene_source(p, seconds=60 * args.minutes, width=width, height=height, seed=20 + i)
        # alternated, best of each (on a shared machine a run's time moves by a quarter with the neighbours' load),
        # and the ratio of each repeat
        runs: dict[str, list[float]] = {"bare": [], "bare_cpu": [], "bare1_cpu": [], "wall": [], "cpu": []}
        checks: dict = {}
        repeats = max(1, args.repeats)
        for _ in range(repeats):
            cpu0 = children_cpu()
            runs["bare"].append(bare_decode(paths, jobs=1))
            cpu1 = children_cpu()
            bare_decode(paths, jobs=1, one_thread=True)
            runs["bare_cpu"].append(cpu1 - cpu0)
            runs["bare1_cpu"].append(children_cpu() - cpu1)
            checks = time_checks(paths)
            runs["wall"].append(checks["checks_wall_s"])
            runs["cpu"].append(checks["checks_cpu_s"])
        bare, bare_cpu, bare1_cpu = min(runs["bare"]), min(runs["bare_cpu"]), min(runs["bare1_cpu"])
        checks.update(checks_wall_s=min(runs["wall"]), checks_cpu_s=min(runs["cpu"]))
        checks["ms_per_window"] = round(1000 * checks["checks_wall_s"] / max(1, checks["windows"]), 1)
        row = {
            "sources": f"{len(paths)} x {60 * args.minutes:g} s {width}x{height} 30 fps",
            "repeats": repeats,
            "bare_decode_s": round(bare, 2),
            "bare_decode_cpu_s": round(bare_cpu, 2),
            "bare_decode_one_thread_cpu_s": round(bare1_cpu, 2),
            "load_average": round(os.getloadavg()[0], 1),
        }
        row.update(checks)
        row["checks_vs_bare"] = round(row["checks_wall_s"] / bare, 3)
        row["checks_cpu_vs_bare_cpu"] = round(row["checks_cpu_s"] / bare_cpu, 3)
        row["checks_cpu_vs_one_thread_bare_cpu"] = round(row["checks_cpu_s"] / bare1_cpu, 3)
        # each repeat's own ratio: the machine's speed drifts between repeats (a decode's CPU moved by a third
        # from one repeat to the next here), and a bare decode and the checks run right after each other see the same
        ratios = sorted(c / b for c, b in zip(runs["cpu"], runs["bare_cpu"]))
        row["checks_cpu_vs_bare_cpu_per_repeat"] = {
            "median": round(float(np.median(ratios)), 3),
            "min": round(ratios[0], 3),
            "max": round(ratios[-1], 3),
        }
        result["sizes"][f"{height}p"] = row
        print(json.dumps({f"{height}p": row}), flush=True)
    (args.out / f"checks_cost-{'-'.join(sorted(wanted))}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
