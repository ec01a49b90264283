"""The commit: from the sidecars and parts the workers left, the shards, the manifest and the rejects file.

Runs on the driver, after every worker is done, in registry order, so the
result does not depend on where or in which order the workers ran:

1. read each source's sidecar, if it was measured under this build's key;
2. group near-duplicate sources and give each source its split (a source
   whose clips are in the manifest already keeps its split, see
   docs/data-format.md);
3. judge every window against the target and list the rejections;
4. write each source's shard from its part (or keep it, if its rows did not
   change), then the manifest and the rejects.

The manifest never names a shard that is being rewritten: it is written
without those sources first, and whole at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from s2vdata import dedup
from s2vdata.atomic import write_text
from s2vdata.jobs import SourceJob
from s2vdata.manifest import clip_sha256, read_manifest, write_manifest, write_rejects
from s2vdata.shards import ShardWriter, read_sample
from s2vdata.windows import judge, select, split_of
from s2vdata.worker import clip_key, locate_clips, measure_key, part_path, read_sidecar, sidecar_path


@dataclass
class CommitResult:
    """What the commit wrote: counts for the summary table and build.json."""

    manifest: Path
    clips: int = 0
    windows: int = 0
    splits: Counter = field(default_factory=Counter)
    rejected_windows: Counter = field(default_factory=Counter)  # by the first check failed
    rejected_sources: Counter = field(default_factory=Counter)  # by check
    failures: dict = field(default_factory=dict)  # source_id -> why it could not be committed


@dataclass
class _Source:
    """One source on its way into the manifest."""

    job: SourceJob
    registry_row: dict
    sidecar: dict
    kept: list[dict] = field(default_factory=list)  # the kept windows
    group: str = ""
    split: str = ""


def commit(*, jobs: list[SourceJob], sources: dict[str, dict], manifests_dir: Path, target: str,
           source_rejects: list[dict], failed: dict[str, str]) -> CommitResult:
    """Returns what was written: shards, manifest and rejects of a build, from the sidecars and parts its workers left.

    `source_rejects`: rows of sources rejected before any work (never
    readable); `failed`: source_id -> reason of the workers that failed in
    this run (their sidecar is used only if it is current).
    """
    manifests_dir = Path(manifests_dir)
    manifest = manifests_dir / f"{target}.csv"
    result = CommitResult(manifest=manifest)
    todo = _current(jobs, sources, failed=failed, result=result)
    _assign_splits(todo, published=_published_splits(manifest))
    rejects = list(source_rejects)
    for src in todo:
        rejects += _judge(src, result=result)
    rows = _write_shards(todo, manifest=manifest, result=result)
    position = {j.source_id: i for i, j in enumerate(jobs)}
    rows.sort(key=lambda r: (position[r["source_id"]], r["start_s"]))
    write_manifest(manifest, rows)
    rejects.sort(key=lambda r: (position.get(r["source_id"], -1), str(r["start_s"]), r["check"]))
    write_rejects(manifests_dir / f"{target}.rejects.csv", rejects)
    result.clips = len(rows)
    result.splits = Counter(r["split"] for r in rows)
    return result


def _current(jobs: list[SourceJob], sources: dict[str, dict], *, failed: dict[str, str], result: CommitResult) -> list[_Source]:
    """Returns the sources whose sidecar holds this build's measures; the others are failures with their reason."""
    out = []
    for job in jobs:
        sidecar = read_sidecar(sidecar_path(job.work_dir, job.source_id))
        if sidecar is None or sidecar.get("key") != measure_key(job.settings):
            if job.source_id not in failed:
                what = "no measures" if sidecar is None else "measures taken under other settings or another checks version"
                result.failures[job.source_id] = f"{what} after its worker finished: build again"
            elif sidecar is not None:
                # never commit what was measured under other settings: the source waits for its worker
                result.failures[job.source_id] = f"{failed[job.source_id]} (its stored measures are from other settings: not used)"
            continue
        out.append(_Source(job=job, registry_row=sources[job.source_id], sidecar=sidecar))
    return out


def _published_splits(manifest: Path) -> dict[str, str]:
    """Returns source_id -> split of the sources whose clips the current manifest holds (empty if there is none)."""
    try:
        df = read_manifest(manifest)
    except (FileNotFoundError, ValueError):
        return {}
    return dict(zip(df["source_id"], df["split"]))


def _assign_splits(todo: list[_Source], *, published: dict[str, str]) -> None:
    """Sets each source's near-duplicate group and split.

    A group is named by its first source in registry order. A source whose
    clips are published keeps its split whatever its group becomes (a new
    source may join two groups); a new source takes the split of the first
    published source of its group, or else the split its group's name hashes to.
    """
    order = [s.job.source_id for s in todo]
    fingerprints = {s.job.source_id: s.sidecar["notes"]["fingerprint"] for s in todo
                    if (s.sidecar.get("notes") or {}).get("fingerprint")}
    groups = dedup.group(fingerprints, [s for s in order if s in fingerprints]) if fingerprints else {}
    group_split: dict[str, str] = {}
    for s in todo:
        sid = s.job.source_id
        s.group = groups.get(sid, sid)
        if sid in published and s.group not in group_split:
            group_split[s.group] = published[sid]
    for s in todo:
        sid = s.job.source_id
        s.split = published.get(sid) or group_split.get(s.group) or split_of(s.group, s.job.settings.split)


def _judge(src: _Source, *, result: CommitResult) -> list[dict]:
    """Returns the rejects rows of a source (the whole source, or each rejected window) and sets its kept windows."""
    job, side, origin = src.job, src.sidecar, src.registry_row.get("origin", "")
    rejects = []
    if side.get("rejected"):
        r = side["rejected"]
        rejects.append({"source_id": job.source_id, "origin": origin, "start_s": "", "check": r["check"], "value": r["value"],
                        "threshold": r["threshold"], "reason": r["reason"]})
        result.rejected_sources[r["check"]] += 1
    windows = side["windows"]
    failures = judge(windows, job.target)
    kept = select(windows, failures, source_id=job.source_id, settings=job.settings)
    result.windows += len(windows)
    for w, fails in zip(windows, failures):
        rejects += [{"source_id": job.source_id, "origin": origin, "start_s": w["start_s"], "check": f.check, "value": f.value,
                     "threshold": f.threshold, "reason": f.reason} for f in fails]
        if fails:
            result.rejected_windows[fails[0].check] += 1
    passing = [i for i, f in enumerate(failures) if not f]
    for i in sorted(set(passing) - set(kept)):
        rejects.append({"source_id": job.source_id, "origin": origin, "start_s": windows[i]["start_s"],
                        "check": "max_clips_per_source", "value": len(passing), "threshold": job.settings.max_clips_per_source,
                        "reason": "passed every check; not among the random K kept for this source"})
        result.rejected_windows["max_clips_per_source"] += 1
    src.kept = [windows[i] for i in kept]
    return rejects


def _write_shards(todo: list[_Source], *, manifest: Path, result: CommitResult) -> list[dict]:
    """Returns the manifest rows of every source, after writing the shards whose rows changed."""
    rows: list[dict] = []
    changed: list[_Source] = []
    for src in todo:
        committed = _committed_rows(src)
        if committed is None:
            changed.append(src)
        else:
            rows += committed
    if changed:
        # the manifest must never point at a shard while it is being replaced: write it without them first
        write_manifest(manifest, rows)
    for src in changed:
        written = _write_shard(src, manifest_dir=manifest.parent, result=result)
        if written is not None:
            rows += written
    return rows


def _rows_path(src: _Source) -> Path:
    return Path(src.job.shard).with_suffix(".rows.json")


def _committed_rows(src: _Source) -> list[dict] | None:
    """Returns the rows of a source's committed shard if they are what this build would write, else None."""
    shard, rows_file = Path(src.job.shard), _rows_path(src)
    if not (rows_file.exists() and shard.exists()):
        return None
    committed = json.loads(rows_file.read_text())
    keys = {clip_key(src.job.source_id, w["start_slot"]) for w in src.kept}
    same = ({r["key"] for r in committed["rows"]} == keys and committed.get("split") == src.split
            and committed.get("group") == src.group and committed.get("scores_digest") == _scores_digest(src.kept))
    return committed["rows"] if same else None


def _write_shard(src: _Source, *, manifest_dir: Path, result: CommitResult) -> list[dict] | None:
    """Returns the rows of a source after writing its shard from the clips its worker cut (None if clips are missing)."""
    job = src.job
    shard, rows_file = Path(job.shard), _rows_path(src)
    keys = {clip_key(job.source_id, w["start_slot"]) for w in src.kept}
    located = locate_clips(job, keys)
    missing = keys - set(located)
    if missing:
        result.failures[job.source_id] = f"clips missing after the cut: {sorted(missing)[:3]}"
        return None
    rows = []
    if src.kept:
        shard_rel = os.path.relpath(shard, manifest_dir)
        # one clip in memory at a time, whatever the length of the source
        with ShardWriter(shard) as writer:
            for w in src.kept:
                key = clip_key(job.source_id, w["start_slot"])
                parts = read_sample(*located[key])
                row = _row(src, w, shard_rel=shard_rel, sha=clip_sha256(parts["mp4"], parts["flac"]))
                rows.append(row)
                writer.add(key, {**parts, "json": json.dumps(row, sort_keys=True).encode()})
        write_text(rows_file, json.dumps({"rows": rows, "split": src.split, "group": src.group,
                                          "scores_digest": _scores_digest(src.kept)}))
    else:
        rows_file.unlink(missing_ok=True)
        shard.unlink(missing_ok=True)
    part_path(job.work_dir, job.source_id).unlink(missing_ok=True)
    return rows


def _row(src: _Source, w: dict, *, shard_rel: str, sha: str) -> dict:
    """Returns the manifest row of one kept window."""
    job, clip = src.job, src.job.settings.clip
    key = clip_key(job.source_id, w["start_slot"])
    row = {
        "clip_id": key, "target": job.target.name, "source_id": job.source_id, "origin": src.registry_row.get("origin", ""),
        "start_s": w["start_s"], "duration_s": clip.seconds, "frames": clip.frames, "fps": clip.fps,
        "sample_rate": clip.sample_rate, "size": clip.size, "shard": shard_rel, "key": key, "split": src.split,
        "sha256": sha, "license": src.registry_row.get("license", ""), "webpage_url": src.registry_row.get("webpage_url", ""),
        "group_id": src.group,
    }
    row.update(w["scores"])
    return row


def _scores_digest(windows: list[dict]) -> str:
    """Returns a short digest of the windows' scores: a committed shard whose scores changed is rewritten."""
    return hashlib.sha256(json.dumps([w["scores"] for w in windows], sort_keys=True).encode()).hexdigest()[:16]
