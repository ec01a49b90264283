"""Time `s2vdata build` against a bare decode of the same sources, and its peak memory.

The bare decode is the physical limit: PyAV decodes every frame, scales it
(area filter, short side 286) and crops the centre square, and resamples the
sound to 44.1 kHz mono; nothing else. Both run in the same session, on the
same files, one process each.

    python benchmarks/build.py --out benchmarks/out          # 4 x 1-min 720p sources, then 1 vs 12 min memory
    python benchmarks/build.py --quick                        # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_source(path: Path, *, seconds: float, width: int = 1280, height: int = 720, seed: int = 0) -> None:
    """Writes a 720p synthetic hand-clap source (the project's own generator), unless it exists."""
    from s2vdata.media import write_video
    from s2vdata.synth import render

    if path.exists():
        return
    scene = render("hand", seed=seed, seconds=seconds, width=width, height=height)
    write_video(path, scene.frames(), scene.audio, fps=scene.fps, sample_rate=scene.sample_rate)


BARE = r"""
import sys, time, av, numpy as np
t0 = time.perf_counter()
for path in sys.argv[1:]:
    with av.open(path) as c:
        v = c.streams.video[0]; v.thread_type = "AUTO"
        for f in c.decode(v):
            w, h = f.width, f.height; s = min(w, h)
            img = f.to_ndarray(format="rgb24", width=round(w * 286 / s), height=round(h * 286 / s), interpolation="AREA")
            y, x = (img.shape[0] - 286) // 2, (img.shape[1] - 286) // 2
            img = np.ascontiguousarray(img[y:y + 286, x:x + 286])
    with av.open(path) as c:
        r = av.AudioResampler(format="flt", layout="mono", rate=44100)
        for f in c.decode(c.streams.audio[0]):
            for o in r.resample(f):
                o.to_ndarray()
print(time.perf_counter() - t0)
"""


def tree_rss(pid: int) -> int:
    """Returns the resident memory (bytes) of a process and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_measured(cmd: list[str], *, cwd: Path) -> tuple[float, int, str]:
    """Returns (wall seconds, peak tree RSS bytes, stdout) of a command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    done = threading.Event()

    def poll():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.05)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd} exited {proc.returncode}")
    return time.perf_counter() - t0, peak, out


def build_once(sources: list[Path], work: Path, *, jobs: int, target: str = "hand") -> tuple[float, int, dict]:
    """Returns (seconds, peak RSS, build counts) of a fresh build of these sources."""
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    exe = [sys.executable, "-m", "s2vdata.cli"]
    subprocess.run(exe + ["ingest", *map(str, sources), "--target", target], cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    secs, peak, _ = run_measured(exe + ["build", "--target", target, "--jobs", str(jobs)], cwd=work)
    counts = json.loads((work / "manifests" / f"{target}.build.json").read_text())["counts"]
    return secs, peak, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--quick", action="store_true", help="short sources (smoke run)")
    ap.add_argument("--no-memory", action="store_true", help="skip the 1 vs 12 minute memory comparison")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    minute = 15.0 if args.quick else 60.0
    sources = [out / f"src-{i}.mp4" for i in range(2 if args.quick else 4)]
    for i, p in enumerate(sources):
        make_source(p, seconds=minute, seed=i)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
              "sources": f"{len(sources)} x {minute:g} s 1280x720 30 fps H.264 + AAC"}
    bare, bare_peak, _ = run_measured([sys.executable, "-c", BARE, *map(str, sources)], cwd=out)
    result["bare_decode_s"] = round(bare, 2)
    result["bare_decode_peak_mib"] = round(bare_peak / 2**20)
    for jobs in (1, 2):
        secs, peak, counts = build_once(sources, out / f"work-j{jobs}", jobs=jobs)
        result[f"build_j{jobs}_s"] = round(secs, 2)
        result[f"build_j{jobs}_peak_mib"] = round(peak / 2**20)
        result[f"build_j{jobs}_clips"] = counts["clips"]
        result[f"ratio_j{jobs}_vs_bare"] = round(secs / bare, 2)
    if not args.no_memory:
        short = out / "mem-1min.mp4"
        long = out / "mem-12min.mp4"
        make_source(short, seconds=minute, seed=10)
        make_source(long, seconds=minute * 12, seed=10)
        for name, src in (("1min", short), ("12min", long)):
            secs, peak, counts = build_once([src], out / f"work-{name}", jobs=1)
            result[f"memory_{name}_peak_mib"] = round(peak / 2**20)
            result[f"memory_{name}_s"] = round(secs, 2)
        result["memory_ratio_12_vs_1"] = round(result["memory_12min_peak_mib"] / result["memory_1min_peak_mib"], 3)
    print(json.dumps(result, indent=2))
    (out / "build.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
