"""Target presets: per-target check thresholds, shipped and user-defined (TOML).

The shipped thresholds come from benchmarks/calibrate.py on the labelled
synthetic set (docs/checks.md has the numbers they reach). The targets differ
where their scenes do: sea sound is continuous and waves move everywhere,
fireworks boom long after the burst starts, a mouth moves little.

User targets live in a TOML file, `--targets FILE` or `s2v-targets.toml` in the
working directory (or the file named by $S2V_TARGETS):

    [targets.drums]
    base = "hand"            # start from a preset (optional)
    description = "a drummer seen from the front"
    av_sync_min = 0.4
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

DEFAULT_TARGETS_FILE = Path(os.environ.get("S2V_TARGETS", "s2v-targets.toml"))


@dataclass(frozen=True)
class Target:
    """A named preset: the thresholds every window of this target must meet."""

    name: str
    description: str = ""
    audio_db_min: float = -45.0  # loudness of the window's loud part (99th pct of per-frame RMS, dBFS); below is silent
    motion_min: float = 0.0003  # mean motion energy (mean |grey difference|, 0..1); below is still
    scene_cut_max: float = 0.25  # largest one-frame jump of colours or edge layout above its neighbours
    camera_shift_max: float = 0.25  # global motion, median px per frame at 286 px
    av_sync_min: float = 0.35  # peak correlation of onset envelope and motion energy
    av_lag_max_frames: int = 15  # |lag| of that peak, frames (0.5 s)
    unrelated_audio_max: float = 0.3  # share of onset energy with no motion near it, or of still frames under a tonal bed
    speech_max: float = 0.03  # share of the window's frames with a voice (silero-vad)
    speech_unexplained_max: float = 0.03  # share of the window's frames with a voice and nothing moving near them
    music_max: float = 0.03  # share of the window's frames with sustained tones that are not a voice
    audio_gap_max_ms: float = 250.0  # sound the stream's timestamps say is missing (holes) or repeated (overlaps), ms


SHIPPED: dict[str, Target] = {
    # a mouth's voice is its sound: only a voice while nothing moves counts, and its vowels hold tones
    "mouth": Target(
        "mouth",
        "a mouth opening with spoken vowels",
        av_sync_min=0.27,
        unrelated_audio_max=0.4,
        speech_max=1.0,
        speech_unexplained_max=0.08,
        music_max=1.0,
    ),
    "hand": Target("hand", "hands meeting on a clap", av_sync_min=0.3, unrelated_audio_max=0.25),
    "fireworks": Target("fireworks", "a burst at the bang, after a rise", av_sync_min=0.4),
    "sea": Target(
        "sea",
        "foam following the roar of waves",
        scene_cut_max=0.35,
        camera_shift_max=0.4,
        av_sync_min=0.28,
        unrelated_audio_max=0.35,
    ),
}

THRESHOLDS = tuple(f.name for f in fields(Target) if f.name not in ("name", "description"))


def load_targets(path: Path | None = None) -> dict[str, Target]:
    """Returns the shipped presets updated with the user's TOML file (if any).

    The file has one table per target: `[targets.NAME]` with any Target field;
    a table with `base = "hand"` starts from that preset. Raises ValueError
    naming the file and the problem.
    """
    targets = dict(SHIPPED)
    if path is None:
        path = DEFAULT_TARGETS_FILE if DEFAULT_TARGETS_FILE.exists() else None
    if path is None:
        return targets
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"cannot read targets file {path}: {e}") from e
    tables = doc.get("targets", {})
    if not isinstance(tables, dict):
        raise ValueError(f"{path}: `targets` must be tables like [targets.NAME]")
    known = {f.name: f for f in fields(Target)}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ValueError(f"{path}: targets.{name} must be a table ([targets.{name}])")
        table = dict(table)
        base_name = table.pop("base", name)
        if base_name not in targets and "base" in tables[name]:
            raise ValueError(
                f"{path}: target {name!r} has base {base_name!r}, which is not a known target: {', '.join(sorted(targets))}"
            )
        base = targets.get(base_name, Target(name))
        unknown = set(table) - set(known) | ({"name"} & set(table))
        if unknown:
            raise ValueError(
                f"{path}: target {name!r} has unknown settings {sorted(unknown)}; known: {sorted(set(known) - {'name'})}"
            )
        for key, value in table.items():
            want = int if key.endswith("_frames") else str if key == "description" else float
            ok = isinstance(value, str) if want is str else isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or (want is int and isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"{path}: target {name!r}: {key} = {value!r} must be {want.__name__}")
            table[key] = want(value)
        targets[name] = replace(base, name=name, **table)
    return targets


def get_target(name: str, path: Path | None = None) -> Target:
    """Returns the preset called `name`, or raises ValueError listing the known ones."""
    targets = load_targets(path)
    if name not in targets:
        raise ValueError(
            f"unknown target {name!r}: known targets are {', '.join(sorted(targets))} (add your own with --targets FILE)"
        )
    return targets[name]


def target_rows(path: Path | None = None) -> list[dict]:
    """Returns one dict per target (name, description and every threshold), shipped ones first."""
    return [asdict(t) for t in load_targets(path).values()]


def format_targets(path: Path | None = None) -> str:
    """Returns the presets as a plain-text table: one row per threshold, one column per target."""
    rows = target_rows(path)
    header = ["setting", *[r["name"] for r in rows]]
    lines = [[key, *[f"{r[key]:g}" if isinstance(r[key], float) else str(r[key]) for r in rows]] for key in THRESHOLDS]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    out += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines]
    out += ["", *[f"{r['name']}: {r['description']}" for r in rows]]
    return "\n".join(out)
