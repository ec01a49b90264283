"""Orchestration: sources -> windows -> checks -> clips -> shards -> manifest.

Two phases. Per source (in any process or machine): decode once on the
presentation timeline, measure every window, cut the kept ones, and leave
in `data/work/<target>/` a sidecar `<source_id>.json` (facts and scores of
every window) and a part `<source_id>.clips.tar` (the cut clips). Then the
driver commits, in registry order: near-duplicate groups, splits, one shard
per source with the manifest rows in it, the manifest, the rejects file.

Every file is written atomically, and each phase skips what is already
done, so a killed build re-run finishes the job and redoes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tarfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from s2vdata import __version__, checks
from s2vdata.atomic import write_text
from s2vdata.config import BuildSettings
from s2vdata.manifest import clip_sha256, write_manifest, write_rejects
from s2vdata.media import DECODE_VERSION, GridReader, MediaError, encode_clip, probe
from s2vdata.registry import Registry
from s2vdata.shards import ShardWriter, index_members, read_sample
from s2vdata.targets import Target
from s2vdata.windows import judge, select, split_of, stride_slots

log = logging.getLogger(__name__)

SHEET_FRAMES = (0, 20, 40, 60, 80, 100)  # the paper's Figure 2: every 20 frames
SHEET_SIZE = 72
FINGERPRINT_SLOTS = 300  # near-duplicates are told apart by their first 10 s


@dataclass(frozen=True)
class SourceJob:
    """The work on one source: everything a worker needs, as plain values."""

    source_id: str
    origin: str
    path: str  # absolute path of the source file
    work_dir: str  # data/work/<target>
    shard: str  # the source's shard, whose clips a re-run may reuse
    target: Target
    settings: BuildSettings


@dataclass
class SourceOutcome:
    """What the worker decided for one source."""

    source_id: str
    status: str  # "decided" or "failed" (an internal error: retried by the next build)
    windows: int = 0
    kept: int = 0
    cut: int = 0  # clips encoded in this run
    reason: str = ""
    seconds: float = 0.0


def measure_key(settings: BuildSettings) -> dict:
    """Returns what the stored measures depend on: if any of it changes, windows are measured again."""
    return {"stride_slots": stride_slots(settings), "clip": asdict(settings.clip), "checks": checks.VERSION,
            "decode": DECODE_VERSION}


def clip_key(source_id: str, start_slot: int) -> str:
    """Returns the clip id and shard key of a window: no dots, sorts by time within a source."""
    return f"{source_id}_{start_slot:07d}"


def sidecar_path(work_dir: Path, source_id: str) -> Path:
    """Returns the path of a source's sidecar (its measures)."""
    return Path(work_dir) / f"{source_id}.json"


def part_path(work_dir: Path, source_id: str) -> Path:
    """Returns the path of a source's part tar (clips cut but not yet committed to its shard)."""
    return Path(work_dir) / f"{source_id}.clips.tar"


def _sheet(frames: np.ndarray) -> np.ndarray:
    """Returns a contact sheet of the paper's Figure 2 frames (every 20), small, side by side."""
    tiles = [cv2.resize(frames[i], (SHEET_SIZE, SHEET_SIZE), interpolation=cv2.INTER_AREA) for i in SHEET_FRAMES if i < len(frames)]
    return np.concatenate(tiles, axis=1)


def _source_reject(job: SourceJob, *, check: str, value, threshold, reason: str, facts: dict | None = None) -> dict:
    return {"source_id": job.source_id, "key": measure_key(job.settings), "facts": facts or {},
            "rejected": {"check": check, "value": value, "threshold": threshold, "reason": reason}, "windows": []}


def _preflight(job: SourceJob) -> tuple[dict, dict | None]:
    """Returns (facts, None) if the source can be cut, else (facts, the sidecar of its rejection)."""
    clip = job.settings.clip
    try:
        facts = probe(job.path)
    except MediaError as e:
        return {}, _source_reject(job, check="decode", value="", threshold="", reason=f"unreadable: {e.reason}")
    if not facts["has_video"]:
        return facts, _source_reject(job, check="streams", value="no video", threshold="video+audio", facts=facts,
                                     reason="no video stream: only a video with sound can be cut into clips")
    if not facts["has_audio"]:
        return facts, _source_reject(job, check="streams", value="no audio", threshold="video+audio", facts=facts,
                                     reason="no audio stream: the sound conditions need one; drop it or re-fetch with audio")
    short = min(facts["width"], facts["height"])
    if short < clip.size:
        return facts, _source_reject(job, check="size", value=short, threshold=clip.size, facts=facts,
                                     reason=f"short side {short} px < {clip.size} px: clips are never upscaled")
    return facts, None


def _scan(job: SourceJob, *, cut: Callable[[dict], bool] | None, sink: ShardWriter, only: set[int] | None = None) -> tuple[list[dict], int, dict]:
    """Returns (window measures, clips cut, decode notes) from one streaming pass over a source.

    `only`: if given, measure nothing and cut just these start slots (a second pass).
    `cut(window)`: decides from a window's measures whether to encode it now.
    Each clip cut goes to `sink` as soon as it is encoded, so memory does not
    grow with the length of the source.
    """
    clip = job.settings.clip
    n, spf, size = clip.frames, clip.samples_per_frame, clip.size
    stride = stride_slots(job.settings)
    windows: list[dict] = []
    notes: dict = {}

    def encode(start: int, frames: np.ndarray, audio: np.ndarray) -> None:
        mp4, flac = encode_clip(frames, audio, clip=clip)
        sink.add(clip_key(job.source_id, start), {"mp4": mp4, "flac": flac})

    # windows being filled: start slot -> (frames, audio); overlapping strides fill several at once
    filling: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    spare: list[tuple[np.ndarray, np.ndarray]] = []
    with GridReader(job.path, clip=clip) as reader:
        first = next_start = reader.first_slot
        notes["first_slot"] = first
        last = first - 1
        fp_frames, fp_audio = [], []
        for slot in reader.slots():
            k = last = slot.index
            if only is None and k - first < FINGERPRINT_SLOTS:
                fp_audio.append(slot.audio)
                if (k - first) % clip.fps == 0:
                    fp_frames.append(slot.frame)
            if only is not None and k >= max(only, default=-1) + n:
                break
            if k == next_start:
                if only is None or k in only:
                    filling[k] = spare.pop() if spare else (np.empty((n, size, size, 3), np.uint8), np.empty(n * spf, np.float32))
                next_start += stride
            for start in list(filling):
                frames, audio = filling[start]
                i = k - start
                frames[i] = slot.frame
                audio[i * spf:(i + 1) * spf] = slot.audio
                if i < n - 1:
                    continue
                if only is None:
                    m = checks.measure_window(frames, audio, clip=clip)
                    t0, t1 = start / clip.fps, (start + n) / clip.fps
                    # a skipped packet damages what follows it until the next keyframe: look back a little
                    m["scores"]["decode_errors"] = float(sum(t0 - 1.0 <= t < t1 for t in reader.error_times))
                    m["scores"]["audio_gap_ms"] = 1000.0 * sum(abs(d) for t, d in reader.audio_gaps if t0 <= t < t1)
                    window = {"start_slot": start, "start_s": start / clip.fps, "sheet": None, **m, "_sheet": _sheet(frames)}
                    windows.append(window)
                    if cut is not None and cut(window):
                        encode(start, frames, audio)
                else:
                    encode(start, frames, audio)
                spare.append(filling.pop(start))
        notes["end_slot"] = last + 1
        notes["decode_error"] = reader.error
    if only is None and fp_frames:
        notes["fingerprint"] = _fingerprint(fp_frames, np.concatenate(fp_audio))
    return windows, sink.count, notes


def _fingerprint(frames: list[np.ndarray], audio: np.ndarray) -> dict | None:
    """Returns the near-duplicate fingerprint of a source's first seconds, if the dedup module is there."""
    try:
        from s2vdata import dedup
    except ImportError:
        return None
    return dedup.fingerprint(frames, audio)


def _locate(job: SourceJob, keys: set[str]) -> dict[str, tuple[Path, dict]]:
    """Returns where the clips already cut for these keys lie: key -> (tar, its index entry), part tar first."""
    found: dict[str, tuple[Path, dict]] = {}
    for path in (part_path(Path(job.work_dir), job.source_id), Path(job.shard)):
        if path.exists() and len(found) < len(keys):
            try:
                index = index_members(path)
            except (OSError, EOFError, tarfile.TarError) as e:
                log.warning("%s: unreadable, cutting again: %s", path, e)
                continue
            for k in keys - set(found):
                entry = {ext: v for ext, v in index.get(k, {}).items() if ext in ("mp4", "flac")}
                if len(entry) == 2:
                    found[k] = (path, entry)
    return found


def process_source(job: SourceJob) -> SourceOutcome:
    """Returns what was decided for one source, leaving its sidecar and part tar in the work folder.

    Measures are reused from the sidecar when they exist for the same
    settings; clips are reused from the part tar or the committed shard; the
    source is decoded only when measures or kept clips are missing.
    """
    t0 = time.perf_counter()
    work = Path(job.work_dir)
    side = sidecar_path(work, job.source_id)
    key = measure_key(job.settings)
    sidecar = None
    if side.exists():
        try:
            sidecar = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            sidecar = None
        if sidecar is not None and sidecar.get("key") != key:
            sidecar = None
    cut_now = 0
    if sidecar is None:
        facts, rejected = _preflight(job)
        if rejected is not None:
            write_text(side, json.dumps(rejected))
            return SourceOutcome(job.source_id, "decided", reason=rejected["rejected"]["check"], seconds=time.perf_counter() - t0)
        def cut(window: dict) -> bool:
            # with max-clips-per-source the kept set is known only at the end: cut in a second pass
            return not job.settings.max_clips_per_source and not judge([window], job.target)[0]

        part = part_path(work, job.source_id)
        try:
            with ShardWriter(part) as sink:
                windows, cut_now, notes = _scan(job, cut=cut, sink=sink)
        except MediaError as e:
            rejected = _source_reject(job, check="decode", value="", threshold="", reason=f"unreadable: {e.reason}", facts=facts)
            write_text(side, json.dumps(rejected))
            return SourceOutcome(job.source_id, "decided", reason="decode", seconds=time.perf_counter() - t0)
        sheets_dir = work / f"{job.source_id}.sheets"
        sheets_dir.mkdir(parents=True, exist_ok=True)
        for w in windows:
            sheet = w.pop("_sheet")
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
            rel = f"{job.source_id}.sheets/{w['start_slot']:07d}.jpg"
            (work / rel).write_bytes(jpg.tobytes())
            w["sheet"] = rel
        if not cut_now:
            part.unlink(missing_ok=True)
        sidecar = {"source_id": job.source_id, "key": key, "facts": facts, "notes": notes, "rejected": None, "windows": windows}
        if not windows:
            usable = max(0, notes["end_slot"] - notes["first_slot"]) / job.settings.clip.fps
            if notes.get("decode_error"):
                sidecar["rejected"] = {"check": "decode", "value": round(usable, 3), "threshold": job.settings.clip.seconds,
                                       "reason": f"{notes['decode_error']} before a whole window was read"}
            else:
                sidecar["rejected"] = {"check": "duration", "value": round(usable, 3), "threshold": job.settings.clip.seconds,
                                       "reason": f"only {usable:.2f} s with both picture and sound: a clip needs {job.settings.clip.seconds:g} s"}
        write_text(side, json.dumps(sidecar))
    windows = sidecar["windows"]
    if sidecar.get("rejected") or not windows:
        return SourceOutcome(job.source_id, "decided", windows=len(windows), cut=cut_now,
                             reason=(sidecar.get("rejected") or {}).get("check", ""), seconds=time.perf_counter() - t0)
    kept = select(windows, judge(windows, job.target), source_id=job.source_id, settings=job.settings)
    wanted = {clip_key(job.source_id, windows[i]["start_slot"]): windows[i]["start_slot"] for i in kept}
    have = _locate(job, set(wanted))
    missing = {slot for k, slot in wanted.items() if k not in have}
    if missing:
        recut = work / f"{job.source_id}.recut.tar"
        with ShardWriter(recut) as sink:
            _, n_cut, _ = _scan(job, cut=None, sink=sink, only=missing)
        cut_now += n_cut
        index = index_members(recut)
        have.update({k: (recut, index[k]) for k in wanted if k in index})
        # the part holds every kept clip, in time order, one clip in memory at a time
        with ShardWriter(part_path(work, job.source_id)) as part:
            for k in sorted(wanted, key=wanted.get):
                if k in have:
                    part.add(k, read_sample(*have[k]))
        recut.unlink(missing_ok=True)
    return SourceOutcome(job.source_id, "decided", windows=len(windows), kept=len(kept), cut=cut_now, seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- commit


@dataclass
class BuildReport:
    """What a build did: counts for the summary table and build.json."""

    target: str
    sources: int = 0
    decided: int = 0
    failed: int = 0
    clips: int = 0
    cut: int = 0
    windows: int = 0
    rejected_windows: Counter = field(default_factory=Counter)  # by check
    rejected_sources: Counter = field(default_factory=Counter)  # by check
    failures: dict = field(default_factory=dict)  # source_id -> reason
    splits: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    manifest: str = ""


def _group_sources(sidecars: dict[str, dict], order: list[str]) -> dict[str, str]:
    """Returns source_id -> group id (first source of its near-duplicate group)."""
    try:
        from s2vdata import dedup
    except ImportError:
        return {s: s for s in order}
    fps = {s: sidecars[s]["notes"]["fingerprint"] for s in order if (sidecars[s].get("notes") or {}).get("fingerprint")}
    groups = dedup.group(fps, [s for s in order if s in fps]) if fps else {}
    return {s: groups.get(s, s) for s in order}


def _versions() -> dict:
    import av
    return {"s2v": __version__, "python": platform.python_version(), "av": av.__version__,
            "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
            "numpy": np.__version__, "opencv": cv2.__version__}


def _row(job: SourceJob, w: dict, *, source: dict, group: str, split: str, shard_rel: str, sha: str, clip) -> dict:
    key = clip_key(job.source_id, w["start_slot"])
    row = {
        "clip_id": key, "target": job.target.name, "source_id": job.source_id, "origin": source.get("origin", ""),
        "start_s": w["start_s"], "duration_s": clip.seconds, "frames": clip.frames, "fps": clip.fps,
        "sample_rate": clip.sample_rate, "size": clip.size, "shard": shard_rel, "key": key, "split": split,
        "sha256": sha, "license": source.get("license", ""), "webpage_url": source.get("webpage_url", ""), "group_id": group,
    }
    row.update({k: v for k, v in w["scores"].items()})
    return row


def commit(*, jobs: list[SourceJob], sources: dict[str, dict], manifests_dir: Path, report: BuildReport,
           extra_rejects: list[dict]) -> None:
    """Writes the shards, manifest and rejects of a build from the sidecars and parts the workers left."""
    manifests_dir = Path(manifests_dir)
    target = report.target
    sidecars = {}
    for job in jobs:
        side = sidecar_path(Path(job.work_dir), job.source_id)
        if side.exists():
            sidecars[job.source_id] = json.loads(side.read_text())
    order = [j.source_id for j in jobs if j.source_id in sidecars]
    groups = _group_sources(sidecars, order)
    rejects = list(extra_rejects)
    plans = []  # (job, rows, samples-loader) per source with kept clips
    for job in jobs:
        side = sidecars.get(job.source_id)
        if side is None:
            continue
        src = sources[job.source_id]
        if side.get("rejected"):
            r = side["rejected"]
            rejects.append({"source_id": job.source_id, "origin": src.get("origin", ""), "start_s": "",
                            "check": r["check"], "value": r["value"], "threshold": r["threshold"], "reason": r["reason"]})
            report.rejected_sources[r["check"]] += 1
        windows = side["windows"]
        failures = judge(windows, job.target)
        kept = select(windows, failures, source_id=job.source_id, settings=job.settings)
        report.windows += len(windows)
        for w, fails in zip(windows, failures):
            for f in fails:
                rejects.append({"source_id": job.source_id, "origin": src.get("origin", ""), "start_s": w["start_s"],
                                "check": f.check, "value": f.value, "threshold": f.threshold, "reason": f.reason})
            if fails:
                report.rejected_windows[fails[0].check] += 1
        passing = [i for i, f in enumerate(failures) if not f]
        for i in sorted(set(passing) - set(kept)):
            rejects.append({"source_id": job.source_id, "origin": src.get("origin", ""), "start_s": windows[i]["start_s"],
                            "check": "max_clips_per_source", "value": len(passing), "threshold": job.settings.max_clips_per_source,
                            "reason": "passed every check; not among the random K kept for this source"})
            report.rejected_windows["max_clips_per_source"] += 1
        plans.append((job, [windows[i] for i in kept], src))
    manifests_dir.mkdir(parents=True, exist_ok=True)
    manifest = manifests_dir / f"{target}.csv"
    all_rows: list[dict] = []
    changed: list[tuple[SourceJob, list[dict], dict]] = []
    for job, kept_windows, src in plans:
        shard = Path(job.shard)
        shard_rel = os.path.relpath(shard, manifests_dir)
        group = groups.get(job.source_id, job.source_id)
        split = split_of(group, job.settings.split)
        keys = {clip_key(job.source_id, w["start_slot"]) for w in kept_windows}
        rows_file = shard.with_suffix(".rows.json")
        committed = json.loads(rows_file.read_text()) if rows_file.exists() and shard.exists() else None
        if committed is not None and {r["key"] for r in committed["rows"]} == keys and committed.get("split") == split \
                and committed.get("group") == group and committed.get("scores_digest") == _scores_digest(kept_windows):
            rows = committed["rows"]
        else:
            rows = None
        if rows is None:
            changed.append((job, kept_windows, {"src": src, "group": group, "split": split, "shard_rel": shard_rel, "keys": keys}))
            continue
        all_rows.extend(rows)
    if changed:
        # the manifest must never point at a shard while it is being replaced: write it without them first
        write_manifest(manifest, all_rows)
    for job, kept_windows, info in changed:
        shard = Path(job.shard)
        rows_file = shard.with_suffix(".rows.json")
        located = _locate(job, info["keys"])
        missing = info["keys"] - set(located)
        if missing:
            report.failures[job.source_id] = f"clips missing after the cut: {sorted(missing)[:3]}"
            report.failed += 1
            continue
        rows = []
        if kept_windows:
            # one clip in memory at a time, whatever the length of the source
            with ShardWriter(shard) as writer:
                for w in kept_windows:
                    key = clip_key(job.source_id, w["start_slot"])
                    parts = read_sample(*located[key])
                    row = _row(job, w, source=info["src"], group=info["group"], split=info["split"], shard_rel=info["shard_rel"],
                               sha=clip_sha256(parts["mp4"], parts["flac"]), clip=job.settings.clip)
                    rows.append(row)
                    writer.add(key, {**parts, "json": json.dumps(row, sort_keys=True).encode()})
        if rows:
            write_text(rows_file, json.dumps({"rows": rows, "split": info["split"], "group": info["group"],
                                              "scores_digest": _scores_digest(kept_windows)}))
        else:
            rows_file.unlink(missing_ok=True)
            shard.unlink(missing_ok=True)
        part_path(Path(job.work_dir), job.source_id).unlink(missing_ok=True)
        all_rows.extend(rows)
    position = {j.source_id: i for i, j in enumerate(jobs)}
    all_rows.sort(key=lambda r: (position[r["source_id"]], r["start_s"]))
    write_manifest(manifest, all_rows)
    rejects.sort(key=lambda r: (position.get(r["source_id"], -1), str(r["start_s"]), r["check"]))
    write_rejects(manifests_dir / f"{target}.rejects.csv", rejects)
    report.clips = len(all_rows)
    report.splits = Counter(r["split"] for r in all_rows)
    report.manifest = str(manifest)


def _scores_digest(windows: list[dict]) -> str:
    """Returns a short digest of the windows' scores: a committed shard whose scores changed is rewritten."""
    return hashlib.sha256(json.dumps([w["scores"] for w in windows], sort_keys=True).encode()).hexdigest()[:16]


def plan_jobs(*, target: Target, data_dir: Path, settings: BuildSettings) -> tuple[list[SourceJob], dict[str, dict], list[dict]]:
    """Returns (jobs, registry rows by source_id, rejects of sources that could never be read) for a target."""
    data_dir = Path(data_dir).resolve()
    rows = [r for r in Registry(data_dir).rows() if r["target"] == target.name]
    work = data_dir / "work" / target.name
    shards = data_dir / "shards" / target.name
    jobs, rejects = [], []
    for ordinal, r in enumerate(rows):
        if r["status"] != "ok" or not r["path"]:
            rejects.append({"source_id": r["source_id"], "origin": r["origin"], "start_s": "", "check": "decode",
                            "value": "", "threshold": "", "reason": f"unreadable: {r['reason'] or r['status']}"})
            continue
        jobs.append(SourceJob(source_id=r["source_id"], origin=r["origin"], path=str(data_dir / r["path"]), work_dir=str(work),
                              shard=str(shards / f"{target.name}-{ordinal:06d}.tar"), target=target, settings=settings))
    return jobs, {r["source_id"]: r for r in rows}, rejects


def build(
    *,
    target: Target,
    data_dir: Path,
    manifests_dir: Path,
    settings: BuildSettings,
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    on_source: Callable[[SourceOutcome], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> BuildReport:
    """Returns the report of building a target's clips, shards and manifest from its registered sources."""
    from s2vdata.executors import run_jobs

    t0 = time.perf_counter()
    stride_slots(settings)
    work_jobs, sources, rejects = plan_jobs(target=target, data_dir=data_dir, settings=settings)
    report = BuildReport(target=target.name, sources=len(sources))
    report.rejected_sources.update(r["check"] for r in rejects)
    if on_start:
        on_start(len(work_jobs))
    for outcome in run_jobs(work_jobs, jobs=jobs, executor=executor, ray_address=ray_address):
        if outcome.status == "decided":
            report.decided += 1
        else:
            report.failed += 1
            report.failures[outcome.source_id] = outcome.reason
        report.cut += outcome.cut
        if on_source:
            on_source(outcome)
    report.decided += len(rejects)
    commit(jobs=work_jobs, sources=sources, manifests_dir=manifests_dir, report=report, extra_rejects=rejects)
    report.seconds = time.perf_counter() - t0
    info = {
        "target": asdict(target), "settings": asdict(settings), "versions": _versions(),
        "counts": {"sources": report.sources, "decided": report.decided, "failed": report.failed, "clips": report.clips,
                   "windows": report.windows, "cut_this_run": report.cut, "splits": dict(report.splits),
                   "rejected_windows": dict(report.rejected_windows), "rejected_sources": dict(report.rejected_sources),
                   "failures": report.failures},
        "seconds": round(report.seconds, 3),
    }
    write_text(Path(manifests_dir) / f"{target.name}.build.json", json.dumps(info, indent=2, sort_keys=True))
    return report
