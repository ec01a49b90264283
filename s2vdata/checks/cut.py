"""Plain check "no scene cut inside the window": a jump in colours or layout that stands above its neighbours and lasts.

A cut swaps the picture between two frames, and the frames on either side of
it each look like their own neighbours. Three changes are measured between
frames: the colour histogram (a cut to a scene of other colours), the edge
layout (a cut to another view of similar colours, such as one night sky to
another) and the coarse layout (a cut between two scenes of the same colours
and few edges). At each frame boundary a change counts as a cut only

- as a spike: minus the larger change at the two neighbouring boundaries, so
  steady motion (hands, waves, a pan) that changes the picture in every frame
  does not count;
- when it lasts: every one of the 2-3 frames before the boundary differs from
  every one of the 2-3 frames after it, so a flash, a lightning strike or a
  one-frame glitch (after which the picture comes back) does not count.

Boundaries with fewer than two frames on either side cannot be judged and
score 0: a cut that leaves one frame of another scene at a window's edge is
not seen.
"""

from __future__ import annotations

import cv2
import numpy as np

_THUMB = 32  # side of the colour thumbnail the histograms are taken on
_LEVELS = 4  # histogram levels per RGB channel: 64 bins
_COARSE = 8  # side of the grey thumbnail for the layout change
_MIN_EDGES = 20  # edge pixels a frame needs for the edge measure (a flat frame has none)
_CONTEXT = 3  # frames each side compared across a boundary (at least 2 needed)
_CANDIDATE = 0.05  # spikes below this are not worth the full comparison


class _Features:
    """Per-frame colour histogram, coarse layout and edge maps of a window's distinct frames."""

    def __init__(self, frames: np.ndarray):
        t = len(frames)
        self.hists = np.zeros((t, _LEVELS**3), dtype=np.float32)
        self.coarse = np.zeros((t, _COARSE, _COARSE), dtype=np.float32)
        self.edges: list[np.ndarray] = []
        self.grown: list[np.ndarray] = []
        kernel = np.ones((3, 3), np.uint8)
        for i, f in enumerate(frames):
            f = np.ascontiguousarray(f)
            small = cv2.resize(f, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA)
            q = (small.astype(np.int32) * _LEVELS) // 256
            codes = (q[..., 0] * _LEVELS + q[..., 1]) * _LEVELS + q[..., 2]
            self.hists[i] = np.bincount(codes.ravel(), minlength=_LEVELS**3) / codes.size
            grey_small = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
            self.coarse[i] = cv2.resize(grey_small, (_COARSE, _COARSE), interpolation=cv2.INTER_AREA) / 255.0
            e = cv2.Canny(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), 40, 120)
            self.edges.append(e > 0)
            self.grown.append(cv2.dilate(e, kernel) > 0)

    def distance(self, a: int, b: int) -> np.ndarray:
        """Returns (colour, layout, edge) changes between frames a and b, each in 0..1.

        colour: the smaller of half the L1 histogram distance and the layout
        change (a flash moves the histogram, not the layout); layout: 4x the mean
        |change| of the 8x8 grey thumbnails, at most 1; edge: the smaller of the
        shares of edges lost and gained (1 px tolerance).
        """
        layout = min(1.0, 4.0 * float(np.abs(self.coarse[a] - self.coarse[b]).mean()))
        colour = min(0.5 * float(np.abs(self.hists[a] - self.hists[b]).sum()), layout)
        ea, eb = self.edges[a], self.edges[b]
        na, nb = int(ea.sum()), int(eb.sum())
        edge = 0.0
        if min(na, nb) >= _MIN_EDGES:
            edge = min((ea & ~self.grown[b]).sum() / na, (eb & ~self.grown[a]).sum() / nb)
        return np.array([colour, layout, edge], dtype=np.float64)


def cut_curve(frames: np.ndarray) -> np.ndarray:
    """Returns the cut strength at each frame boundary, shape (T,), [0] = 0, in 0..1.

    frames: (T, H, W, 3) uint8 RGB, best shrunk to ~150 px. Boundary i is
    between frames i-1 and i; its strength is the largest over the three
    measures of (the smallest change between any frame of the 3 before and any
    of the 3 after) minus (the largest change at the two boundaries either side).
    """
    t = len(frames)
    curve = np.zeros(t, dtype=np.float32)
    if t < 4:
        return curve
    feats = _Features(frames)
    jumps = np.zeros((t + 2, 3))  # jumps[i]: boundary i (between frames i-1 and i); 0 outside the window
    for i in range(1, t):
        jumps[i] = feats.distance(i - 1, i)
    for i in range(2, t - 1):  # two frames on each side at least
        # two boundaries each side: a 25 fps source on the 30 fps grid repeats a
        # frame every sixth slot, and a repeat's zero change must not make the
        # change next to it look lone
        around = np.maximum.reduce([jumps[i - 2], jumps[i - 1], jumps[i + 1], jumps[i + 2]])
        if (jumps[i] - around).max() < _CANDIDATE:
            continue
        before = range(max(0, i - _CONTEXT), i)
        after = range(i, min(t, i + _CONTEXT))
        lasting = np.min([feats.distance(a, b) for a in before for b in after], axis=0)
        curve[i] = max(0.0, float((lasting - around).max()))
    return curve


def scene_cut(frames: np.ndarray) -> tuple[float, np.ndarray]:
    """Returns (scene_cut score = the strongest boundary, per-frame cut curve)."""
    curve = cut_curve(frames)
    return (float(curve.max()) if len(curve) else 0.0), curve
