"""The build driver: plan one job per source, run them on an executor, commit the result.

Two phases. Per source, in any process or machine (`worker.process_source`):
decode once on the presentation timeline, measure every window, cut the kept
ones, and leave a sidecar and a part tar in `data/work/<target>/`. Then the
driver commits, in registry order (`commit.commit`): near-duplicate groups,
splits, one shard per source, the manifest, the rejects file.

Every file is written atomically, and each phase skips what is already
done, so a killed build re-run finishes the job and redoes nothing.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from s2vdata import __version__
from s2vdata.checks import speech
from s2vdata.commit import commit, read_records, shard_folder
from s2vdata.config import BuildSettings
from s2vdata.executors import run_jobs
from s2vdata.jobs import SourceJob, SourceOutcome
from s2vdata.registry import Registry
from s2vdata.storage import Location
from s2vdata.targets import Target
from s2vdata.windows import stride_slots


@dataclass
class BuildReport:
    """What a build did: counts for the summary table and build.json."""

    target: str
    sources: int = 0
    done: int = 0  # sources whose work is finished: their windows kept or rejected, or the whole source rejected
    failed: int = 0  # sources whose work did not finish (retried by the next build)
    clips: int = 0
    cut: int = 0
    windows: int = 0
    rejected_windows: Counter = field(default_factory=Counter)  # by check
    rejected_sources: Counter = field(default_factory=Counter)  # by check
    failures: dict = field(default_factory=dict)  # source_id -> reason
    splits: Counter = field(default_factory=Counter)
    shards: int = 0  # shards the manifest names
    shards_written: int = 0  # shards written in this run (the others did not change)
    seconds: float = 0.0
    manifest: str = ""


def plan_jobs(
    *, target: Target, data_dir: Location | Path | str, settings: BuildSettings, storage: dict | None = None
) -> tuple[list[SourceJob], dict[str, dict], list[dict]]:
    """Returns (jobs, registry rows by source_id, rejects of sources that could never be read) for a target."""
    data = Location(data_dir, options=storage)
    registry = Registry(data)
    if not registry.path.exists():
        raise ValueError(
            f"{registry.path}: no sources registered here: add some with `s2vdata ingest`, `fetch` or `synth` "
            "(or point --data at your data folder)"
        )
    rows = [r for r in registry.rows() if r["target"] == target.name]
    work = data / "work" / target.name
    shards = shard_folder(data, target.name)
    # the shard that holds each source's committed clips, so a worker reuses them instead of cutting them again
    holding = {x["source_id"]: (shards / name).url for name, r in read_records(shards).items() for x in r["sources"]}
    jobs, rejects = [], []
    for r in rows:
        if r["status"] != "ok" or not r["path"]:
            rejects.append(
                {
                    "source_id": r["source_id"],
                    "origin": r["origin"],
                    "start_s": "",
                    "check": "decode",
                    "value": "",
                    "threshold": "",
                    "reason": f"unreadable: {r['reason'] or r['status']}",
                }
            )
            continue
        jobs.append(
            SourceJob(
                source_id=r["source_id"],
                origin=r["origin"],
                path=(data / r["path"]).url,
                work_dir=work.url,
                shard=holding.get(r["source_id"], ""),
                target=target,
                settings=settings,
                storage=data.options,
            )
        )
    return jobs, {r["source_id"]: r for r in rows}, rejects


def _cost(row: dict) -> float:
    """Returns a source's expected work, from its registry facts: decoded pixels, plus the windows' own share."""
    try:
        seconds, width, height = float(row["duration_s"]), float(row["width"]), float(row["height"])
        fps = min(float(row["fps"] or 30), 60.0)
    except (KeyError, TypeError, ValueError):
        return math.inf  # unknown: could be the longest
    # checks, sound and encoding cost about what decoding 640x480 at 30 fps does, per second of source
    return seconds * (width * height * fps / 30 + 640 * 480)


def longest_first(work: list[SourceJob], rows: dict[str, dict]) -> list[SourceJob]:
    """Returns the jobs in the order they should start: the most work first, so no long source runs alone at the end.

    Only the order of work changes: what is committed, and in which order, does not depend on it.
    """
    return sorted(work, key=lambda job: -_cost(rows.get(job.source_id, {})))


def build(
    *,
    target: Target,
    data_dir: Location | Path | str,
    manifests_dir: Location | Path | str,
    settings: BuildSettings,
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    storage: dict | None = None,
    on_source: Callable[[SourceOutcome], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> BuildReport:
    """Returns the report of building a target's clips, shards and manifest from its registered sources.

    `data_dir` and `manifests_dir` are local folders or object-store URLs;
    `storage` holds the storage options for both (credentials otherwise come
    from the environment).
    """
    t0 = time.perf_counter()
    stride_slots(settings)
    data, manifests = Location(data_dir, options=storage), Location(manifests_dir, options=storage)
    work_jobs, sources, rejects = plan_jobs(target=target, data_dir=data, settings=settings)
    # every window is judged for speech: a missing voice model stops the build here, not in every worker
    speech.ensure_model()
    report = BuildReport(target=target.name, sources=len(sources))
    if on_start:
        on_start(len(work_jobs))
    failed: dict[str, str] = {}
    for outcome in run_jobs(longest_first(work_jobs, sources), jobs=jobs, executor=executor, ray_address=ray_address):
        if outcome.status == "failed":
            failed[outcome.source_id] = outcome.reason
        report.cut += outcome.cut
        if on_source:
            on_source(outcome)
    result = commit(
        jobs=work_jobs,
        sources=sources,
        data_dir=data,
        manifests_dir=manifests,
        target=target.name,
        source_rejects=rejects,
        failed=failed,
    )
    report.failures = {**failed, **result.failures}
    report.failed = len(report.failures)
    report.done = report.sources - report.failed
    report.rejected_sources = Counter(r["check"] for r in rejects) + result.rejected_sources
    report.rejected_windows = result.rejected_windows
    report.windows, report.clips, report.splits = result.windows, result.clips, result.splits
    report.shards, report.shards_written = result.shards, result.shards_written
    report.manifest = str(result.manifest)
    report.seconds = time.perf_counter() - t0
    _write_build_json(manifests / f"{target.name}.build.json", target=target, settings=settings, report=report)
    return report


def _write_build_json(path: Location, *, target: Target, settings: BuildSettings, report: BuildReport) -> None:
    info = {
        "target": asdict(target),
        "settings": asdict(settings),
        "versions": _versions(),
        # "decided": sources whose work is done (kept or rejected); the name is kept for readers of earlier builds
        "counts": {
            "sources": report.sources,
            "decided": report.done,
            "failed": report.failed,
            "clips": report.clips,
            "windows": report.windows,
            "cut_this_run": report.cut,
            "splits": dict(report.splits),
            "shards": report.shards,
            "shards_written": report.shards_written,
            "rejected_windows": dict(report.rejected_windows),
            "rejected_sources": dict(report.rejected_sources),
            "failures": report.failures,
        },
        "seconds": round(report.seconds, 3),
    }
    path.write_text(json.dumps(info, indent=2, sort_keys=True))


def _versions() -> dict:
    import av

    return {
        "s2v": __version__,
        "python": platform.python_version(),
        "av": av.__version__,
        "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
