"""Re-read every shard of a manifest and check each clip against its row and the clip contract."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable

from s2vdata.config import CLIP, ClipSpec
from s2vdata.manifest import clip_sha256, read_manifest
from s2vdata.media import MediaError, decode_clip_audio, decode_clip_video
from s2vdata.shards import read_members


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
        frames = decode_clip_video(parts["mp4"])
        audio, rate = decode_clip_audio(parts["flac"])
    except MediaError as e:
        return e.reason
    if frames.shape != (clip.frames, clip.size, clip.size, 3):
        return f"video is {frames.shape}, expected ({clip.frames}, {clip.size}, {clip.size}, 3)"
    if rate != clip.sample_rate or audio.shape != (clip.samples,):
        return f"audio is {audio.shape} at {rate} Hz, expected ({clip.samples},) at {clip.sample_rate} Hz"
    return None


def verify_manifest(manifest: Path, *, on_clip: Callable[[], None] | None = None,
                    on_total: Callable[[int], None] | None = None) -> tuple[list[tuple[str, str]], int]:
    """Returns ([(clip_id, problem)], clips checked) for every row of a manifest."""
    manifest = Path(manifest)
    df = read_manifest(manifest)
    rows = df.to_dict("records")
    if on_total:
        on_total(len(rows))
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_shard[r["shard"]].append(r)
    problems = []
    for shard, shard_rows in by_shard.items():
        path = manifest.parent / shard
        try:
            members = read_members(path, {r["key"] for r in shard_rows}) if path.exists() else None
        except (OSError, EOFError) as e:
            members = None
            reason = f"shard {shard} unreadable: {e}"
        else:
            reason = f"shard {shard} is missing"
        for r in shard_rows:
            if members is None:
                problems.append((r["clip_id"], reason))
            else:
                problem = check_clip(members.get(r["key"], {}), r) if r["key"] in members else f"not in shard {shard}"
                if problem:
                    problems.append((r["clip_id"], problem))
            if on_clip:
                on_clip()
    return problems, len(rows)
