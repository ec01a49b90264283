"""The window checks: pure functions from decoded frames and sound to scores, and the decision.

`measure_window` computes every score of one 4-second window (build stores them
in a sidecar, so changing a threshold re-decides without decoding again);
`decide` compares the scores with a target's thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2vdata.config import CLIP, ClipSpec
from s2vdata.targets import Target


@dataclass(frozen=True)
class CheckResult:
    """One check on one window: passed or not, with the value and threshold that decided it."""

    check: str
    passed: bool
    value: float
    threshold: float
    reason: str = ""


def measure_window(frames: np.ndarray, audio: np.ndarray, *, clip: ClipSpec = CLIP) -> dict:
    """Returns {"scores": {name: float}, "curves": {name: list[float]}} for one window.

    frames: (120, 286, 286, 3) uint8 RGB; audio: (176400,) float32 mono in [-1, 1].
    """
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-12)
    grey = frames.mean(axis=3, dtype=np.float32) / 255.0
    diff = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))
    scores = {"audio_db": 20 * np.log10(rms), "motion": float(diff.mean()) if len(diff) else 0.0}
    return {"scores": {k: float(v) for k, v in scores.items()}, "curves": {"motion_energy": [0.0, *diff.tolist()]}}


def decide(scores: dict[str, float], target: Target) -> list[CheckResult]:
    """Returns one CheckResult per check of `target`, in a fixed order."""
    results = [
        CheckResult("audio_db", scores["audio_db"] >= target.audio_db_min, scores["audio_db"], target.audio_db_min,
                    "silent: sound level below the threshold"),
        CheckResult("motion", scores["motion"] >= target.motion_min, scores["motion"], target.motion_min,
                    "still: nothing moves"),
    ]
    return results
