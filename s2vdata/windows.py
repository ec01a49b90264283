"""Plan and select the 4-second windows of a source (pure functions)."""

from __future__ import annotations

import hashlib

import numpy as np

from s2vdata.checks import CheckResult, decide
from s2vdata.config import BuildSettings
from s2vdata.targets import Target


def stride_slots(settings: BuildSettings) -> int:
    """Returns the window stride in grid slots; raises ValueError if it is not a positive multiple of 1/fps."""
    fps = settings.clip.fps
    slots = round(settings.stride_s * fps)
    if slots <= 0 or abs(slots - settings.stride_s * fps) > 1e-6:
        raise ValueError(f"--stride {settings.stride_s} must be a positive multiple of 1/{fps} s")
    return slots


def seeded_rng(seed: int, key: str) -> np.random.Generator:
    """Returns a generator seeded by (seed, key): the same for the same source, whatever ran before."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def judge(windows: list[dict], target: Target) -> list[list[CheckResult]]:
    """Returns, per measured window, the checks it failed (empty list: it passes)."""
    out = []
    for w in windows:
        failed = [r for r in decide(w["scores"], target) if not r.passed]
        errors = w["scores"].get("decode_errors", 0.0)
        if errors:
            failed.insert(0, CheckResult("decode", False, errors, 0.0, "the decoder skipped damaged data in this window"))
        gap = w["scores"].get("audio_gap_ms", 0.0)
        if gap > target.audio_gap_max_ms:
            failed.insert(
                0,
                CheckResult(
                    "audio_gap",
                    False,
                    gap,
                    target.audio_gap_max_ms,
                    "the sound has holes or overlaps here (silence fills them, so timing holds, but sound is missing)",
                ),
            )
        out.append(failed)
    return out


def select(windows: list[dict], failures: list[list[CheckResult]], *, source_id: str, settings: BuildSettings) -> list[int]:
    """Returns the indices of the windows kept: all that pass, or a seeded random K of them."""
    passing = [i for i, f in enumerate(failures) if not f]
    k = settings.max_clips_per_source
    if k and len(passing) > k:
        rng = seeded_rng(settings.seed, source_id)
        passing = sorted(rng.choice(passing, size=k, replace=False).tolist())
    return passing


def split_of(group_id: str, shares: tuple[float, float, float]) -> str:
    """Returns train, val or test for a source group, from a hash of its id (stable as the dataset grows)."""
    u = int(hashlib.sha256(group_id.encode()).hexdigest()[:12], 16) / float(1 << 48)
    if u < shares[0]:
        return "train"
    if u < shares[0] + shares[1]:
        return "val"
    return "test"
