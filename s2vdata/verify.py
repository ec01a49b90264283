"""Re-read every shard of a manifest and check each clip against its row and the clip contract."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable

from s2vdata.clips import ClipError, decode_clip, iter_shard
from s2vdata.config import CLIP, ClipSpec
from s2vdata.manifest import clip_sha256, read_manifest
from s2vdata.storage import Location


def check_clip(parts: dict[str, bytes], row: dict, *, clip: ClipSpec = CLIP) -> str | None:
    """Returns what is wrong with one clip (None if nothing): hash, members, frames, size, samples, rate."""
    missing = [ext for ext in ("mp4", "flac", "json") if ext not in parts]
    if missing:
        return f"missing {', '.join(missing)} in the shard"
    sha = clip_sha256(parts["mp4"], parts["flac"])
    if sha != row["sha256"]:
        return f"sha256 differs: manifest {row['sha256'][:12]}..., shard {sha[:12]}..."
    try:
        meta = json.loads(parts["json"])
    except json.JSONDecodeError:
        return "json member is not JSON"
    if meta.get("clip_id") != row["clip_id"] or meta.get("sha256") != row["sha256"]:
        return "json member does not match the manifest row"
    try:
        decode_clip(parts, name=row["clip_id"], clip=clip)
    except ClipError as e:
        return e.reason
    return None


def verify_manifest(manifest: Location | Path | str, *, on_clip: Callable[[], None] | None = None,
                    on_total: Callable[[int], None] | None = None) -> tuple[list[tuple[str, str]], int]:
    """Returns ([(clip_id, problem)], clips checked) for every row of a manifest.

    A shard that is missing or damaged (its tar unreadable at any point) is
    reported for every clip it should hold that was not checked before the damage.
    """
    manifest = Location(manifest)
    df = read_manifest(manifest)
    rows = df.to_dict("records")
    if on_total:
        on_total(len(rows))
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_shard[r["shard"]].append(r)
    problems = []
    for shard, shard_rows in by_shard.items():
        wanted = {r["key"]: r for r in shard_rows}
        checked: set[str] = set()
        broken = None
        try:
            for key, parts in iter_shard(manifest.parent.resolve(shard)):
                row = wanted.get(key)
                if row is None or key in checked:
                    continue
                problem = check_clip(parts, row)
                if problem:
                    problems.append((row["clip_id"], problem))
                checked.add(key)
                if on_clip:
                    on_clip()
        except ClipError as e:
            broken = f"shard {shard}: {e.reason}"
        for r in shard_rows:
            if r["key"] in checked:
                continue
            problems.append((r["clip_id"], broken or f"not in shard {shard}"))
            if on_clip:
                on_clip()
    return problems, len(rows)
