"""Target presets: per-target check thresholds, shipped and user-defined (TOML)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

DEFAULT_TARGETS_FILE = Path(os.environ.get("S2V_TARGETS", "s2v-targets.toml"))


@dataclass(frozen=True)
class Target:
    """A named preset: the thresholds every window of this target must meet."""

    name: str
    description: str = ""
    audio_db_min: float = -50.0  # window RMS level in dBFS; below is silent
    motion_min: float = 0.002  # mean abs frame difference (0..1 grey); below is still
    scene_cut_max: float = 0.35  # largest histogram jump between consecutive frames
    camera_shift_max: float = 0.3  # global motion, px per frame at 286 px
    av_sync_min: float = 0.3  # peak correlation of onset envelope and motion energy
    av_lag_max_frames: int = 15  # lags searched either way (0.5 s)
    unrelated_audio_max: float = 0.5  # share of onset energy with no motion near it


SHIPPED: dict[str, Target] = {
    "mouth": Target("mouth", "a mouth opening with spoken vowels"),
    "hand": Target("hand", "hands meeting on a clap"),
    "fireworks": Target("fireworks", "a burst at the bang, after a rise"),
    "sea": Target("sea", "foam following the roar of waves"),
}


def load_targets(path: Path | None = None) -> dict[str, Target]:
    """Returns the shipped presets updated with the user's TOML file (if any).

    The file has one table per target: `[targets.NAME]` with any Target field;
    a table with `base = "hand"` starts from that preset.
    """
    targets = dict(SHIPPED)
    if path is None:
        path = DEFAULT_TARGETS_FILE if DEFAULT_TARGETS_FILE.exists() else None
    if path is None:
        return targets
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"cannot read targets file {path}: {e}") from e
    known = {f.name for f in fields(Target)}
    for name, table in doc.get("targets", {}).items():
        table = dict(table)
        base = targets.get(table.pop("base", name), Target(name))
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"{path}: target {name!r} has unknown settings {sorted(unknown)}; known: {sorted(known - {'name'})}")
        targets[name] = replace(base, name=name, **table)
    return targets


def get_target(name: str, path: Path | None = None) -> Target:
    """Returns the preset called `name`, or raises ValueError listing the known ones."""
    targets = load_targets(path)
    if name not in targets:
        raise ValueError(f"unknown target {name!r}: known targets are {', '.join(sorted(targets))} (add your own with --targets FILE)")
    return targets[name]
