"""Plain check "no scene cut inside the window": the largest jump of the colour histogram between frames.

A cut swaps the whole picture between two frames: the colour histogram jumps
at once and the coarse picture changes everywhere. A moving foreground, a
firework or a wave changes part of the picture and does so over several
frames, so the score is the jump over the window's typical frame-to-frame
change, on a picture coarse enough that motion within a region does not count.
"""

from __future__ import annotations

import cv2
import numpy as np

_THUMB = 32  # side of the colour thumbnail the histograms are taken on
_LEVELS = 4  # histogram levels per RGB channel: 64 bins
_COARSE = 8  # side of the grey thumbnail for the structure change


def _histograms(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (normalised colour histograms (T, 64), coarse grey thumbnails (T, 8, 8) in [0, 1])."""
    t = len(frames)
    hists = np.zeros((t, _LEVELS**3), dtype=np.float32)
    coarse = np.zeros((t, _COARSE, _COARSE), dtype=np.float32)
    for i, f in enumerate(frames):
        small = cv2.resize(np.ascontiguousarray(f), (_THUMB, _THUMB), interpolation=cv2.INTER_AREA)
        q = (small.astype(np.int32) * _LEVELS) // 256
        codes = (q[..., 0] * _LEVELS + q[..., 1]) * _LEVELS + q[..., 2]
        hists[i] = np.bincount(codes.ravel(), minlength=_LEVELS**3) / codes.size
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        coarse[i] = cv2.resize(grey, (_COARSE, _COARSE), interpolation=cv2.INTER_AREA) / 255.0
    return hists, coarse


def cut_curve(frames: np.ndarray) -> np.ndarray:
    """Returns the cut strength at each frame boundary, shape (T,), [0] = 0, in 0..1.

    frames: (T, H, W, 3) uint8 RGB. Boundary i (between frames i-1 and i) is
    the smaller of the histogram change (half the L1 distance) and the coarse
    picture change (mean |difference| of 8x8 grey thumbnails, scaled x4 and capped at 1):
    a cut needs both, a flash or a brightening burst only moves one.
    """
    if len(frames) < 2:
        return np.zeros(len(frames), dtype=np.float32)
    hists, coarse = _histograms(frames)
    hist_jump = 0.5 * np.abs(np.diff(hists, axis=0)).sum(axis=1)
    coarse_jump = np.minimum(1.0, 4.0 * np.abs(np.diff(coarse, axis=0)).mean(axis=(1, 2)))
    return np.concatenate([[0.0], np.minimum(hist_jump, coarse_jump)]).astype(np.float32)


def scene_cut(frames: np.ndarray) -> tuple[float, np.ndarray]:
    """Returns (scene_cut score, per-frame cut curve): the largest boundary jump above the window's median jump."""
    curve = cut_curve(frames)
    if len(curve) < 2:
        return 0.0, curve
    jumps = curve[1:]
    return float(jumps.max() - np.median(jumps)), curve
