"""The commit: from the sidecars and parts the workers left, the shards, the manifest and the rejects file.

Runs on the driver, after every worker is done, in registry order, so the
result does not depend on where or in which order the workers ran:

1. read each source's sidecar, if it was measured under this build's key;
2. group near-duplicate sources and give each source its split (a source
   whose clips are in the manifest already keeps its split, see
   docs/data-format.md);
3. judge every window against the target and list the rejections;
4. pack the kept clips into shards and write the shards whose content
   changed, then the manifest and the rejects.

Shards (docs/data-format.md): a source's clips always lie in one shard, and
a source keeps its shard once it has one. New sources are packed, in registry
order, into the last shard while it stays under the shard size, then into a
new one (`--shard-size 0`: a shard per source). So a rebuild after adding
sources or changing a threshold rewrites only the shards whose clips changed,
and the same inputs give the same shards. Each shard has a record beside it
(`<shard>.rows.json`: its sources, their rows, its size), the commit's
memory of what it wrote; a record that does not match its shard's size is
not trusted.

The manifest never names a clip that a shard being rewritten may lose: it is
written first with the rows that stay the same, and whole at the end.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field

from s2vdata import dedup
from s2vdata.jobs import SourceJob
from s2vdata.manifest import clip_sha256, read_manifest, write_manifest, write_rejects
from s2vdata.shards import ShardWriter, index_members, read_sample
from s2vdata.storage import Location
from s2vdata.windows import judge, select, split_of
from s2vdata.worker import clip_key, measure_key, part_path, read_sidecar, sidecar_path

RECORD_VERSION = 2
# tar framing per member (a 512-byte header, data padded to 512), for the shard size estimate
_TAR_BLOCK = 512


@dataclass
class CommitResult:
    """What the commit wrote: counts for the summary table and build.json."""

    manifest: Location
    clips: int = 0
    windows: int = 0
    shards: int = 0
    shards_written: int = 0
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

    @property
    def sid(self) -> str:
        return self.job.source_id

    @property
    def keys(self) -> list[str]:
        return [clip_key(self.sid, w["start_slot"]) for w in self.kept]

    def plan(self) -> dict:
        """Returns what the source's committed rows must match to be kept as they are."""
        return {"keys": self.keys, "split": self.split, "group": self.group, "scores_digest": _scores_digest(self.kept)}


def shard_folder(data_dir: Location, target: str) -> Location:
    """Returns the folder of a target's shards."""
    return data_dir / "shards" / target


def record_path(shard: Location) -> Location:
    """Returns where the commit's record of a shard lies."""
    return shard.with_suffix(".rows.json")


def read_records(folder: Location) -> dict[str, dict]:
    """Returns shard name -> its record, for every shard record in a folder (records of another version are left out)."""
    out = {}
    for loc in folder.glob("*.rows.json"):
        try:
            record = json.loads(loc.read_bytes())
        except (OSError, ValueError):
            continue
        if record.get("version") == RECORD_VERSION:
            out[loc.name[: -len(".rows.json")] + ".tar"] = record
    return out


def commit(*, jobs: list[SourceJob], sources: dict[str, dict], data_dir: Location, manifests_dir: Location, target: str,
           source_rejects: list[dict], failed: dict[str, str]) -> CommitResult:
    """Returns what was written: shards, manifest and rejects of a build, from the sidecars and parts its workers left.

    `source_rejects`: rows of sources rejected before any work (never
    readable); `failed`: source_id -> reason of the workers that failed in
    this run (their sidecar is used only if it is current).
    """
    manifest = manifests_dir / f"{target}.csv"
    result = CommitResult(manifest=manifest)
    todo = _current(jobs, sources, failed=failed, result=result)
    _assign_splits(todo, published=_published_splits(manifest))
    rejects = list(source_rejects)
    for src in todo:
        rejects += _judge(src, result=result)
    position = {j.source_id: i for i, j in enumerate(jobs)}
    packer = _Packer(shard_folder(data_dir, target), target=target, shard_bytes=jobs[0].settings.shard_bytes if jobs else 0)
    rows = packer.write(todo, manifest=manifest, result=result)
    rows.sort(key=lambda r: (position[r["source_id"]], r["start_s"]))
    write_manifest(manifest, rows)
    packer.remove_unused(todo)
    rejects.sort(key=lambda r: (position.get(r["source_id"], -1), str(r["start_s"]), r["check"]))
    write_rejects(manifests_dir / f"{target}.rejects.csv", rejects)
    result.clips = len(rows)
    result.splits = Counter(r["split"] for r in rows)
    return result


def _current(jobs: list[SourceJob], sources: dict[str, dict], *, failed: dict[str, str], result: CommitResult) -> list[_Source]:
    """Returns the sources whose sidecar holds this build's measures; the others are failures with their reason."""
    out = []
    for job in jobs:
        sidecar = read_sidecar(sidecar_path(job))
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


def _published_splits(manifest: Location) -> dict[str, str]:
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
    order = [s.sid for s in todo]
    fingerprints = {s.sid: s.sidecar["notes"]["fingerprint"] for s in todo if (s.sidecar.get("notes") or {}).get("fingerprint")}
    groups = dedup.group(fingerprints, [s for s in order if s in fingerprints]) if fingerprints else {}
    group_split: dict[str, str] = {}
    for s in todo:
        s.group = groups.get(s.sid, s.sid)
        if s.sid in published and s.group not in group_split:
            group_split[s.group] = published[s.sid]
    for s in todo:
        s.split = published.get(s.sid) or group_split.get(s.group) or split_of(s.group, s.job.settings.split)


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


class _Packer:
    """Keeps each source's clips in one shard, packs new sources after the others, writes the shards that change."""

    def __init__(self, folder: Location, *, target: str, shard_bytes: int):
        self.folder, self.target, self.shard_bytes = folder, target, shard_bytes
        # trusted records: what each shard holds, as the last commit wrote it
        self.records = {name: r for name, r in read_records(folder).items() if self._matches(name, r)}
        self.used: set[str] = set()
        self._indexes: dict[str, dict] = {}

    def _shard(self, name: str) -> Location:
        return self.folder / name

    def _matches(self, name: str, record: dict) -> bool:
        try:
            return self._shard(name).size() == record.get("bytes")
        except OSError:
            return False

    def write(self, todo: list[_Source], *, manifest: Location, result: CommitResult) -> list[dict]:
        """Returns the manifest rows of every kept clip, after writing the shards whose clips changed."""
        holding = {s["source_id"]: name for name, r in self.records.items() for s in r["sources"]}
        committed = {s["source_id"]: s for r in self.records.values() for s in r["sources"]}
        with_clips = [s for s in todo if s.kept]
        folder_rel = self.folder.relative_to_folder(manifest.parent)
        unchanged = {s.sid for s in with_clips if s.sid in committed and committed[s.sid]["plan"] == s.plan()
                     and committed[s.sid]["rows"][0]["shard"].startswith(folder_rel)}
        # where each source goes: where it is, or packed after the last shard
        assignment: dict[str, list[_Source]] = {}
        for s in with_clips:
            if s.sid in holding:
                assignment.setdefault(holding[s.sid], []).append(s)
        self._pack([s for s in with_clips if s.sid not in holding], assignment=assignment, committed=committed)
        changed = sorted(name for name, members in assignment.items()
                         if name not in self.records
                         or [m.sid for m in members] != [x["source_id"] for x in self.records[name]["sources"]]
                         or any(m.sid not in unchanged for m in members))
        rows = [row for s in with_clips if s.sid in unchanged for row in committed[s.sid]["rows"]]
        if changed:
            # the clips of unchanged sources are in the old shards and stay in the new ones: only they are named meanwhile
            write_manifest(manifest, rows)
        for name in changed:
            written = self._write_shard(name, assignment[name], manifest=manifest, result=result)
            if written is not None:
                rows += [row for m in assignment[name] if m.sid not in unchanged for row in written[m.sid]]
                result.shards_written += 1
        self.used = set(assignment)
        result.shards = len(assignment)
        return rows

    def _pack(self, fresh: list[_Source], *, assignment: dict[str, list[_Source]], committed: dict[str, dict]) -> None:
        """Assigns new sources to shards, in registry order: the last shard while it stays under the size, else a new one."""
        numbers = [int(n[len(self.target) + 1:].split(".")[0]) for n in set(self.records) | set(assignment)]
        last = max(numbers, default=-1)
        name = f"{self.target}-{last:06d}.tar" if last >= 0 else None
        size = sum(committed[m.sid]["bytes"] if m.sid in committed else self._estimate(m) for m in assignment.get(name, []))
        for s in fresh:
            need = self._estimate(s)
            if name is None or self.shard_bytes <= 0 or size + need > self.shard_bytes:
                last += 1
                name, size = f"{self.target}-{last:06d}.tar", 0
            assignment.setdefault(name, []).append(s)
            size += need

    def _estimate(self, s: _Source) -> int:
        """Returns the size of a source's clips in a shard, from their parts (as `_clip_bytes` counts it)."""
        return sum(_clip_bytes(n for _, n in entry.values()) for _, entry in self._locate(s, shard=None).values())

    def _index(self, loc: Location) -> dict:
        """Returns a tar's member index, read once per commit."""
        if loc.url not in self._indexes:
            try:
                self._indexes[loc.url] = index_members(loc) if loc.exists() else {}
            except (OSError, EOFError, tarfile.TarError):
                self._indexes[loc.url] = {}
        return self._indexes[loc.url]

    def _locate(self, s: _Source, *, shard: Location | None) -> dict[str, tuple[Location, dict]]:
        """Returns key -> (tar, index entry) of a source's kept clips: in its part, else in the shard that held them."""
        found = {}
        for loc in [part_path(s.job)] + ([shard] if shard is not None else []):
            index = self._index(loc)
            for key in s.keys:
                entry = {ext: v for ext, v in index.get(key, {}).items() if ext in ("mp4", "flac")}
                if key not in found and len(entry) == 2:
                    found[key] = (loc, entry)
        return found

    def _write_shard(self, name: str, members: list[_Source], *, manifest: Location,
                     result: CommitResult) -> dict[str, list[dict]] | None:
        """Returns source_id -> rows after writing one shard from its sources' clips (None if some clips are missing)."""
        shard = self._shard(name)
        located = {}
        for m in members:
            found = self._locate(m, shard=shard)
            missing = set(m.keys) - set(found)
            if missing:
                result.failures[m.sid] = f"clips missing after the cut: {sorted(missing)[:3]}"
                return None
            located.update(found)
        rows: dict[str, list[dict]] = {}
        sizes: dict[str, int] = {}
        shard_rel = shard.relative_to_folder(manifest.parent)
        # one clip in memory at a time, whatever the size of the shard
        with ShardWriter(shard) as writer:
            for m in members:
                rows[m.sid], sizes[m.sid] = [], 0
                for w in m.kept:
                    key = clip_key(m.sid, w["start_slot"])
                    parts = read_sample(*located[key])
                    row = _row(m, w, shard_rel=shard_rel, sha=clip_sha256(parts["mp4"], parts["flac"]))
                    rows[m.sid].append(row)
                    writer.add(key, {**parts, "json": json.dumps(row, sort_keys=True).encode()})
                    sizes[m.sid] += _clip_bytes([len(parts["mp4"]), len(parts["flac"])])
        record = {"version": RECORD_VERSION, "bytes": shard.size(),
                  "sources": [{"source_id": m.sid, "plan": m.plan(), "bytes": sizes[m.sid], "rows": rows[m.sid]} for m in members]}
        record_path(shard).write_text(json.dumps(record))
        self._indexes.pop(shard.url, None)
        return rows

    def remove_unused(self, todo: list[_Source]) -> None:
        """Deletes what the manifest no longer needs: shards (and records) no source holds, and parts now in shards."""
        for loc in self.folder.glob(f"{self.target}-*.tar"):
            if loc.name not in self.used:
                record_path(loc).unlink(missing_ok=True)
                loc.unlink(missing_ok=True)
        plans = {x["source_id"]: x["plan"] for r in read_records(self.folder).values() for x in r["sources"]}
        done = {s.sid for s in todo if s.kept and plans.get(s.sid) == s.plan()}
        if todo:
            work = todo[0].job.at(todo[0].job.work_dir)
            for loc in work.glob("*.clips.tar"):
                if loc.name[: -len(".clips.tar")] in done:
                    loc.unlink(missing_ok=True)


def _clip_bytes(sizes) -> int:
    """Returns what a clip's mp4 and flac take in a tar (a header each, data padded to a block): the packing's measure."""
    return sum(_TAR_BLOCK + -(-n // _TAR_BLOCK) * _TAR_BLOCK for n in sizes)


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
