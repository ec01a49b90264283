"""Fetch N loopback URLs locally and on a local Ray instance: wall time, Ray's start-up, URLs per second, same rows or not.

    .venv/bin/python benchmarks/fetch_ray_vs_local.py --count 100 --jobs 4
    .venv/bin/python benchmarks/fetch_ray_vs_local.py --count 40 --jobs 4 --pause-ms 50 --bucket

Serves `count` distinct URLs of one small MP4 (about 150 KB) from the test
suite's loopback server (tests/fetchserver.py), then fetches the URL file
twice into fresh data folders: with the local executor (`jobs` threads) and
with `--executor ray` on a local Ray instance of 2 CPUs (`jobs` tasks at once
on the one node), and prints a table: wall time, Ray's start-up (timed
apart), URLs per second, and whether the two registries hold the same rows
(times aside). `--pause-ms` trickles each file in 64 KB pieces with that pause
between them (a remote site's pace instead of loopback's); `--bucket` fetches
into a bucket of a local S3 server (moto) instead of a local folder.
Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from s2vdata.fetch import FetchOptions, fetch_urls
from s2vdata.ray_executor import start_ray
from s2vdata.registry import Registry

from fetchserver import FetchServer, make_video


def rows(data) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "added_at"} for r in Registry(data).rows()]


def timed_fetch(urls: Path, *, data, executor: str, jobs: int) -> dict:
    """Returns the wall time and counts of one fetch of `urls` into `data`."""
    t0 = time.perf_counter()
    rep = fetch_urls(
        urls, data_dir=data, options=FetchOptions(target="hand", jobs=jobs, socket_timeout=10, retries=1), executor=executor
    )
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "ok": rep.ok, "failed": rep.failed, "urls_per_s": (rep.ok + rep.failed) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--pause-ms", type=float, default=0.0, help="pause between 64 KB pieces of a file (0: full speed)")
    ap.add_argument("--bucket", action="store_true", help="fetch into a local S3 server's bucket")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

    with tempfile.TemporaryDirectory(prefix="s2v-fetch-bench-") as tmp, FetchServer() as server:
        root = Path(tmp)
        video = make_video(root / "v.mp4", seconds=1.0)
        for i in range(args.count):
            server.add_file(f"v{i:05d}.mp4", video)
        if args.pause_ms:
            server.slow, server.slow_chunk, server.slow_pause_s = True, 64 * 1024, args.pause_ms / 1000
        urls = root / "urls.txt"
        urls.write_text("".join(server.url(f"/v/v{i:05d}.mp4") + "\n" for i in range(args.count)))

        stack = []
        if args.bucket:
            from s3server import make_bucket, s3_server

            server_cm = s3_server()
            env = server_cm.__enter__()
            stack.append(server_cm)
            os.environ.update(env)  # before Ray starts: its workers inherit it
            make_bucket(env, "bench")
            targets = {"local": "s3://bench/local", "ray": "s3://bench/ray"}
        else:
            targets = {"local": root / "local" / "data", "ray": root / "ray" / "data"}
        try:
            local = timed_fetch(urls, data=targets["local"], executor="local", jobs=args.jobs)
            t0 = time.perf_counter()
            start_ray(num_cpus=2)
            startup = time.perf_counter() - t0
            ray_run = timed_fetch(urls, data=targets["ray"], executor="ray", jobs=args.jobs)
            import ray

            ray.shutdown()
            same = rows(targets["local"]) == rows(targets["ray"])
        finally:
            for cm in stack:
                cm.__exit__(None, None, None)

    result = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores), load {os.getloadavg()[0]:.1f}",
        "date": time.strftime("%Y-%m-%d"),
        "count": args.count,
        "jobs": args.jobs,
        "pause_ms": args.pause_ms,
        "store": "bucket (moto)" if args.bucket else "local folder",
        "file_bytes": len(video),
        "local": local,
        "ray": ray_run,
        "ray_startup_s": startup,
        "same_rows": same,
    }
    print(
        f"{args.count} URLs of {len(video) / 1e3:.0f} KB into a {result['store']}, --jobs {args.jobs}, "
        f"pause {args.pause_ms:g} ms per 64 KB; {result['machine']}"
    )
    print(f"{'':8} {'wall s':>8} {'URLs/s':>8} {'ok':>5} {'failed':>6}")
    for name, r in (("local", local), ("ray", ray_run)):
        print(f"{name:8} {r['wall_s']:8.1f} {r['urls_per_s']:8.1f} {r['ok']:5d} {r['failed']:6d}")
    print(f"Ray start-up (apart): {startup:.1f} s; same rows: {'yes' if same else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
