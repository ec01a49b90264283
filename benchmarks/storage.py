"""Time a build against a bucket (a local S3 server, moto) against the same build on a local disk.

    python benchmarks/storage.py --count 8 --seconds 12

Both builds run in the same session on the same sources (the project's synthetic
hand scenes at 1280x720), `--jobs 2`; the script checks that the two manifests
are identical and counts the bytes that went to the bucket. A loopback server
measures the object-store path's own cost (every write a local file, then one
upload; every source downloaded once per pass), not a cloud's bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from build import scene_source  # benchmarks/build.py

    from s3server import make_bucket, s3_server

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "storage")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    src = args.out / "src"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        scene_source(src / f"s{i}.mp4", seconds=args.seconds, width=1280, height=720, seed=200 + i)
    exe = [sys.executable, "-m", "s2vdata.cli"]
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "sources": f"{args.count} x {args.seconds:g} s 1280x720 hand scenes",
        "jobs": args.jobs,
    }
    local = args.out / "local"
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir()

    def timed(command: list[str], *, cwd: Path = local, env: dict | None = None) -> float:
        """Returns the wall seconds of one s2vdata command (it fails the benchmark if it fails; its errors show)."""
        t0 = time.perf_counter()
        subprocess.run(exe + command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
        return round(time.perf_counter() - t0, 2)

    build = ["build", "--target", "hand", "--jobs", str(args.jobs)]
    timed(["ingest", str(src), "--target", "hand"])
    result["local_build_s"] = timed(build)
    with s3_server() as env:
        make_bucket(env, "bench")
        env = {**os.environ, **env}
        bucket = ["--data", "s3://bench/data", "--manifests", "s3://bench/manifests"]
        ingest = ["ingest", str(src), "--target", "hand", "--data", "s3://bench/data"]
        result["bucket_ingest_s"] = timed(ingest, cwd=args.out, env=env)
        result["bucket_build_s"] = timed(build + bucket, cwd=args.out, env=env)
        result["bucket_rebuild_s"] = timed(build + bucket, cwd=args.out, env=env)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        sizes = {p: fs.size(p) for p in fs.find("bench")}
        result["bucket_objects"] = len(sizes)
        result["bucket_mib"] = round(sum(sizes.values()) / 2**20, 1)
        result["manifests_identical"] = fs.cat_file("bench/manifests/hand.csv") == (local / "manifests" / "hand.csv").read_bytes()
    result["ratio_bucket_to_local"] = round(result["bucket_build_s"] / result["local_build_s"], 2)
    result["load"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
    (args.out / "storage.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
