"""Time `s2vdata build` against a bare FFmpeg decode of the same sources, and its peak memory.

The bare decode is the physical limit: the FFmpeg command line decodes each
source and does only what a clip needs from it (the 30 fps grid, the centre
square, an area scale to 286 px, the sound resampled to 44.1 kHz mono), into
a null sink, as many files at once as the build has jobs. Both run in the
same session, on the same files.

    python benchmarks/build.py mix          # 13 mixed short sources (frame rates, VFR, containers, rotation, late streams)
    python benchmarks/build.py vggsound     # 100 ten-second sources, as VGGSound's
    python benchmarks/build.py uniform      # 4 x 60 s of 720p
    python benchmarks/build.py memory       # peak memory, 1 min vs 12 min of 720p, at 44.1, 48 and 22.05 kHz
    python benchmarks/build.py memory --hours 2   # ... and a 2-hour source (FFmpeg's lavfi sources)

Sources are made once in --out and reused; results go to --out/<what>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ffmpeg_exe() -> str:
    """Returns the ffmpeg command: the one on PATH, else imageio-ffmpeg's."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# ----------------------------------------------------------------------------- sources


def lavfi_source(
    path: Path,
    *,
    seconds: float,
    size: str = "1280x720",
    rate: str = "30",
    audio_rate: int = 48_000,
    vcodec: str = "libx264",
    acodec: str = "aac",
    video_start: float = 0.0,
    audio_start: float = 0.0,
    vfr: bool = False,
    seed: int = 0,
) -> None:
    """Writes an FFmpeg test-pattern source (testsrc2, beeps over a tone), unless it exists; `seed` tints it and sets the tone."""
    if path.exists():
        return
    vf = [f"hue=h={seed * 37 % 360}"] if seed else []
    vf += ["select='not(eq(mod(n\\,7)\\,3))',setpts=N/FRAME_RATE/TB+0.004*sin(N)/TB"] if vfr else []
    if video_start:
        vf.append(f"setpts=PTS+{video_start}/TB")
    af = [f"adelay={int(audio_start * 1000)}:all=1"] if audio_start else []
    cmd = [
        ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={440 + 13 * seed}:beep_factor=4:sample_rate={audio_rate}:duration={seconds}",
    ]
    if vf:
        cmd += ["-vf", ",".join(vf)]
    if af:
        cmd += ["-af", ",".join(af)]
    if vfr:
        cmd += ["-fps_mode", "vfr"]
    cmd += ["-c:v", vcodec, "-pix_fmt", "yuv420p"]
    cmd += ["-preset", "veryfast"] if vcodec == "libx264" else ["-b:v", "1M"] if vcodec.startswith("libvpx") else []
    cmd += ["-c:a", acodec, "-shortest", str(path)]
    subprocess.run(cmd, check=True)


def scene_source(
    path: Path,
    *,
    seconds: float,
    width: int,
    height: int,
    fps: float = 30.0,
    sample_rate: int = 44_100,
    seed: int = 0,
    rotation: int = 0,
) -> None:
    """Writes a synthetic hand-clap scene (the project's own generator; its windows are kept and cut), unless it exists."""
    from s2vdata.media import write_video
    from s2vdata.synth import render

    if path.exists():
        return
    scene = render("hand", seed=seed, seconds=seconds, width=width, height=height, fps=fps, sample_rate=sample_rate)
    write_video(path, scene.frames(), scene.audio, fps=scene.fps, sample_rate=scene.sample_rate, rotation=rotation)


def make_mix(out: Path) -> list[Path]:
    """Returns 13 sources of 12-20 s as the web has them: 25/29.97/30/60 fps and VFR, MP4/WebM/MKV, portrait,
    rotated, late streams, 44.1/48 kHz; test patterns, and hand-clap scenes whose windows are kept."""
    d = out / "mix"
    d.mkdir(parents=True, exist_ok=True)
    specs = [
        ("a-720p30.mp4", dict(seconds=15, size="1280x720", rate="30")),
        ("b-720p25-44k.mp4", dict(seconds=12, size="1280x720", rate="25", audio_rate=44_100)),
        ("c-1080p2997.mp4", dict(seconds=20, size="1920x1080", rate="30000/1001")),
        ("d-720p60.mp4", dict(seconds=16, size="1280x720", rate="60")),
        ("e-480p30.webm", dict(seconds=14, size="854x480", rate="30", vcodec="libvpx", acodec="libopus")),
        ("f-720p-vfr.mp4", dict(seconds=15, size="1280x720", rate="30", vfr=True)),
        ("g-720p25.mkv", dict(seconds=20, size="1280x720", rate="25")),
        ("h-360p30-vp9.webm", dict(seconds=13, size="640x360", rate="30", vcodec="libvpx-vp9", acodec="libopus")),
        ("i-late-audio.mp4", dict(seconds=17, size="1280x720", rate="30", audio_start=0.5)),
        ("j-late-video.mkv", dict(seconds=15, size="1280x720", rate="30000/1001", video_start=0.3)),
        ("k-540p60-pcm.mkv", dict(seconds=19, size="960x540", rate="60", acodec="pcm_s16le")),
    ]
    paths = []
    for name, kw in specs:
        lavfi_source(d / name, **kw)
        paths.append(d / name)
    scene_source(d / "l-portrait.mp4", seconds=18, width=720, height=1280, seed=1, sample_rate=48_000)
    scene_source(d / "m-phone-rot90.mp4", seconds=12, width=1280, height=720, seed=2, rotation=90)
    return paths + [d / "l-portrait.mp4", d / "m-phone-rot90.mp4"]


def make_vggsound(out: Path, *, count: int = 100) -> list[Path]:
    """Returns `count` ten-second sources as VGGSound's: 360p and 480p, 30/25 fps, 44.1 or 48 kHz, a quarter of them scenes."""
    d = out / "vggsound"
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = d / f"v{i:03d}.mp4"
        if i % 4 == 0:
            scene_source(p, seconds=10, width=640, height=360, seed=100 + i)
        else:
            lavfi_source(
                p,
                seconds=10,
                size=("640x360", "854x480")[i % 2],
                rate=("30", "25")[i % 3 == 0],
                audio_rate=(48_000, 44_100)[i % 2],
                seed=i,
            )
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- measuring


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


def run_measured(cmd: list[str], *, cwd: Path) -> tuple[float, int]:
    """Returns (wall seconds, peak tree RSS bytes) of a command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def poll():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.05)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    proc.wait()
    done.set()
    th.join()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd} exited {proc.returncode}")
    return time.perf_counter() - t0, peak


BARE_FILTER = "fps=30,crop='min(iw,ih)':'min(iw,ih)',scale=286:286:flags=area"


def children_cpu() -> float:
    """Returns the CPU seconds (user + system) of this process's finished children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bare_decode(files: list[Path], *, jobs: int, one_thread: bool = False) -> float:
    """Returns the wall time of the bare FFmpeg decode of the files, `jobs` files at a time (`one_thread`: its decoder
    and filters on one thread each, as a build worker's when it runs one worker per core)."""
    threads = ["-threads", "1", "-filter_threads", "1"] if one_thread else []

    def one(path: Path) -> None:
        subprocess.run(
            [
                ffmpeg_exe(),
                "-v",
                "error",
                *threads,
                "-i",
                str(path),
                "-vf",
                BARE_FILTER,
                "-af",
                "aresample=44100,aformat=sample_fmts=flt:channel_layouts=mono",
                "-f",
                "null",
                "-",
            ],
            check=True,
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - t0


def build_once(sources: list[Path], work: Path, *, jobs: int, target: str = "hand") -> tuple[float, int, dict]:
    """Returns (seconds, peak RSS, build counts) of a fresh build of these sources."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    exe = [sys.executable, "-m", "s2vdata.cli"]
    subprocess.run(
        exe + ["ingest", *map(str, sources), "--target", target],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cpu = children_cpu()
    secs, peak = run_measured(exe + ["build", "--target", target, "--jobs", str(jobs)], cwd=work)
    counts = json.loads((work / "manifests" / f"{target}.build.json").read_text())["counts"]
    counts["cpu_s"] = children_cpu() - cpu
    return secs, peak, counts


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def speed(name: str, sources: list[Path], out: Path, *, jobs: int, repeats: int) -> dict:
    """Returns the build and bare decode times of a set of sources, alternated `repeats` times (best of each)."""
    result = {"sources": len(sources), "jobs": jobs, "runs": []}
    for _ in range(repeats):
        cpu0 = children_cpu()
        bare = bare_decode(sources, jobs=jobs)
        cpu1 = children_cpu()
        secs, peak, counts = build_once(sources, out / f"work-{name}", jobs=jobs)
        # CPU seconds tell work from waiting on a shared machine (where wall times favour FFmpeg's many threads)
        result["runs"].append(
            {
                "bare_s": round(bare, 2),
                "build_s": round(secs, 2),
                "bare_cpu_s": round(cpu1 - cpu0, 2),
                "build_cpu_s": round(counts["cpu_s"], 2),
                "load": loadavg(),
            }
        )
        result.update(clips=counts["clips"], windows=counts["windows"], peak_mib=round(peak / 2**20))
    result["bare_s"] = min(r["bare_s"] for r in result["runs"])
    result["build_s"] = min(r["build_s"] for r in result["runs"])
    result["ratio"] = round(result["build_s"] / result["bare_s"], 2)
    result["cpu_ratio"] = round(min(r["build_cpu_s"] for r in result["runs"]) / min(r["bare_cpu_s"] for r in result["runs"]), 2)
    return result


def memory(out: Path, *, hours: float, rates: tuple[int, ...] = (48_000, 44_100, 22_050)) -> dict:
    """Returns the peak memory of one-source builds (--jobs 1), short against long, at three sample rates."""
    d = out / "memory"
    d.mkdir(parents=True, exist_ok=True)
    result = {}
    lengths = [("1min", 60.0), ("12min", 720.0)] + ([(f"{hours:g}h", hours * 3600.0)] if hours else [])
    for rate in rates:
        for name, seconds in lengths:
            src = d / f"{name}-{rate}.mp4"
            lavfi_source(src, seconds=seconds, size="1280x720", rate="30", audio_rate=rate)
            secs, peak, counts = build_once([src], out / "work-memory", jobs=1)
            result[f"{rate}_{name}"] = {
                "peak_mib": round(peak / 2**20),
                "s": round(secs, 1),
                "windows": counts["windows"],
                "s_per_min": round(secs / (seconds / 60), 2),
                "load": loadavg(),
            }
        base = result[f"{rate}_1min"]["peak_mib"]
        for name, _ in lengths[1:]:
            result[f"{rate}_{name}"]["ratio_to_1min"] = round(result[f"{rate}_{name}"]["peak_mib"] / base, 3)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["mix", "vggsound", "uniform", "memory"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="alternate bare decode and build this many times; best of each")
    ap.add_argument("--hours", type=float, default=0.0, help="memory: also a source this many hours long")
    ap.add_argument("--rates", default="48000,44100,22050", help="memory: the sound's sample rates, comma-separated")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    if args.what == "mix":
        info.update(speed("mix", make_mix(out), out, jobs=args.jobs, repeats=args.repeats))
    elif args.what == "vggsound":
        info.update(speed("vggsound", make_vggsound(out), out, jobs=args.jobs, repeats=args.repeats))
    elif args.what == "uniform":
        sources = [out / "uniform" / f"src-{i}.mp4" for i in range(4)]
        (out / "uniform").mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(sources):
            scene_source(p, seconds=60, width=1280, height=720, seed=i)
        info.update(speed("uniform", sources, out, jobs=args.jobs, repeats=args.repeats))
    else:
        rates = tuple(int(r) for r in args.rates.split(","))
        # a run of some rates keeps the other rates' earlier results (each entry has its own load; the date is this run's)
        old = out / "memory.json"
        info = {**(json.loads(old.read_text()) if old.exists() else {}), **info, **memory(out, hours=args.hours, rates=rates)}
    print(json.dumps(info, indent=2))
    (out / f"{args.what}.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
