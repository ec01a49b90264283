"""Condition 1, "the camera is fixed": global motion between frames, in px per frame at clip size.

Corners (Shi-Tomasi) tracked frame to frame with pyramidal Lucas-Kanade on
downscaled grey frames; a RANSAC fit of a similarity transform (shift, zoom,
rotation) keeps the motion most points share: the background's, so a
foreground that moves (hands, a burst) is an outlier, while a pan, a zoom or
shake moves every background point and is measured. A pair's shift is how far
the transform moves the frame's corners, so pan, zoom and rotation are read on
one scale.
"""

from __future__ import annotations

import cv2
import numpy as np

from s2vdata.checks.signals import shrink

# Longest side of the frames the tracker sees: 143 px (a 286 px clip halved) keeps
# sub-pixel precision on a 0.5 px/frame pan (0.25 px here) and costs ~25 ms per window.
TRACK_SIDE = 150
# Frames apart in a tracked pair: 2 halves the cost and doubles a slow pan's
# displacement; shake still reads at about half its amplitude, far above the threshold.
PAIR_STEP = 2
_GRID = 4  # corners are picked per cell of a 4x4 grid, so the background gets its share of them
_PER_CELL = 4  # corners per grid cell
_MAX_POINTS = _GRID * _GRID * _PER_CELL
_REDETECT_EVERY = 16  # frames; also whenever half the points were lost
_LEVELS = 2  # pyramid levels above the frame for Lucas-Kanade (one level fewer tracks a black frame as motion)
_MIN_POINTS = 6  # fewer tracked points than this: the pair is not measured
_RANSAC_PX = 0.3  # inlier distance at TRACK_SIDE: tighter than the slowest pan we must see
# A fixed camera is preferred when it explains nearly as many points as the best
# moving fit: large hands or a face can hold more corners than the background.
_FIXED_PREFERENCE = 0.5
# A camera that moves moves the whole view: a fit whose points span less than this share of
# the frame (width or height) is an object moving over a bare background (a clap before a
# plain wall), and tells nothing about the camera.
_MIN_SPREAD = 0.5
# With no pair measured, a window where at least this share of the pairs lost their tracked points
# (rather than having none to track) was not measured: it is not a fixed camera.
_LOST_SHARE = 0.5
# A point that moved less than this (px at TRACK_SIDE) did not move: well under the
# slowest pan we must see (0.5 px/frame at 286 px is 0.25 px here).
_STILL_PX = 0.07


def _corners(img: np.ndarray) -> np.ndarray | None:
    """Returns up to _PER_CELL strongest corners per grid cell, (N, 1, 2) float32, or None."""
    found = cv2.goodFeaturesToTrack(img, 400, 0.01, 4)
    if found is None:
        return None
    h, w = img.shape
    xy = found.reshape(-1, 2)
    cell = (np.minimum(xy[:, 1] * _GRID // h, _GRID - 1) * _GRID + np.minimum(xy[:, 0] * _GRID // w, _GRID - 1)).astype(int)
    # goodFeaturesToTrack returns the strongest first: keep the first few of each cell
    order = np.argsort(cell, kind="stable")
    sorted_cells = cell[order]
    first = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.empty(len(cell), dtype=int)
    rank[order] = np.arange(len(cell)) - first
    return np.ascontiguousarray(found[rank < _PER_CELL])


def _spread(points: np.ndarray, *, w: int, h: int) -> float:
    """Returns how much of the frame (0..1, the larger of width and height) these (N, 2) points span."""
    if len(points) < 2:
        return 0.0
    span = points.max(axis=0) - points.min(axis=0)
    return float(max(span[0] / w, span[1] / h))


def track_shifts(grey: np.ndarray, *, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Returns (camera motion per frame between frames i and i+step (i = 0, step, 2*step, ...) in px of `grey`, bare).

    `grey` is (T, h, w) uint8. One value per pair, divided by `step`; NaN
    where the pair cannot be measured. `bare` marks the unmeasured pairs
    whose background holds nothing to track (no corners, or only an object
    moving over a plain background): there a moving camera would look fixed
    too. The others lost their points or their fit: the camera may have
    moved too fast to follow.
    """
    t, h, w = grey.shape
    starts = list(range(0, t - step, step))
    out = np.full(len(starts), np.nan, dtype=np.float32)
    bare = np.zeros(len(starts), dtype=bool)
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float32)
    points = None
    for j, i in enumerate(starts):
        if points is None or len(points) < _MAX_POINTS // 2 or i % _REDETECT_EVERY < step:
            points = _corners(grey[i])
        if points is None or len(points) < _MIN_POINTS:
            points = None
            bare[j] = True
            continue
        moved, status, _ = cv2.calcOpticalFlowPyrLK(grey[i], grey[i + step], points, None, winSize=(9, 9), maxLevel=_LEVELS)
        ok = status[:, 0] == 1
        if np.count_nonzero(ok) < _MIN_POINTS:
            points = None
            continue
        src, dst = points[ok].reshape(-1, 2), moved[ok].reshape(-1, 2)
        diff = dst - src
        still = np.count_nonzero(diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1] <= _STILL_PX**2)
        points = dst.reshape(-1, 1, 2)
        if still >= _FIXED_PREFERENCE * len(src):
            # no fit can explain more points than were tracked: the fixed camera wins whatever RANSAC would find
            out[j] = 0.0
            continue
        fit, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=_RANSAC_PX)
        if fit is not None and still >= _FIXED_PREFERENCE * int(inliers.sum()):
            out[j] = 0.0
        elif fit is not None and _spread(src[inliers[:, 0] == 1], w=w, h=h) < _MIN_SPREAD:
            bare[j] = True  # only an object moved: the pair is not measured
        elif fit is not None:
            displaced = corners @ fit[:, :2].T + fit[:, 2]
            out[j] = float(np.sqrt(((displaced - corners) ** 2).sum(axis=1)).max()) / step
    return out, bare


def camera_shift(frames_grey: np.ndarray, *, scale: float = 1.0) -> tuple[float, np.ndarray]:
    """Returns (camera_shift score, per-frame shift curve (T,), [0] = 0), in px per frame times `scale`.

    `frames_grey` is (T, h, w), float in [0, 1] or uint8; `scale` converts its
    pixels to clip pixels (286 / w). The score is the median per-frame shift:
    a pan, a zoom or shake moves the view in most frames, while a foreground
    that fills the view for a few frames (a burst, hands close to the lens) does not count.
    Pairs without texture to track count as 0 in the curve and are left out of the score.
    With no pair measured, the score is 0.0 when most pairs hold nothing to
    track (a camera move would not show either; a flash may lose a pair's
    points), else NaN: the points of a textured view were lost pair after
    pair, the camera may have moved too fast to follow, and an unmeasured
    check fails.
    """
    g = np.asarray(frames_grey)
    if g.dtype != np.uint8:
        g = np.clip(g * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if len(g) < 2 or min(g.shape[1:]) < 16:
        return 0.0, np.zeros(len(g), np.float32)
    small = shrink(g, side=TRACK_SIDE)
    scale = scale * g.shape[2] / small.shape[2]
    step = PAIR_STEP if len(g) > 2 * PAIR_STEP else 1
    shifts, bare = track_shifts(small, step=step)
    shifts = shifts * scale
    # each pair's per-frame shift stands for the frames it spans
    curve = np.zeros(len(g), np.float32)
    for j, value in enumerate(np.nan_to_num(shifts, nan=0.0)):
        curve[j * step + 1 : (j + 1) * step + 1] = value
    measured = shifts[np.isfinite(shifts)]
    if len(measured) == 0:
        return (0.0 if bare.mean() > _LOST_SHARE else float("nan")), curve
    return float(np.median(measured)), curve
