"""Plain check "no scene cut inside the window": a one-frame jump in colours or layout that stands above its neighbours.

A cut swaps the picture between two frames, and the frames on either side of
it each look like their own neighbours. Two changes are measured at every frame
boundary: the colour histogram (a cut to a scene of other colours), the
edge layout (a cut to another view of similar colours, such as one night sky
to another) and the coarse layout (a cut between two scenes of the same
colours and few edges). Each is taken as a spike: its value minus the larger of its two
neighbours, so that steady motion (hands, waves, a pan) that changes the
picture in every frame does not count, and only a change confined to one
boundary does.
"""

from __future__ import annotations

import cv2
import numpy as np

_THUMB = 32  # side of the colour thumbnail the histograms are taken on
_LEVELS = 4  # histogram levels per RGB channel: 64 bins
_COARSE = 8  # side of the grey thumbnail for the layout change of the histogram measure
_MIN_EDGES = 20  # edge pixels a frame needs for the edge measure (a flat frame has none)


def _colour_jumps(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (T-1,) colour jumps and (T-1,) layout jumps.

    Colour: the smaller of half the L1 histogram distance and the layout jump
    (a flash or a brightening burst moves the histogram but not the layout).
    Layout: 4x the mean |change| of 8x8 grey thumbnails, at most 1.
    """
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
    hist_jump = 0.5 * np.abs(np.diff(hists, axis=0)).sum(axis=1)
    coarse_jump = np.minimum(1.0, 4.0 * np.abs(np.diff(coarse, axis=0)).mean(axis=(1, 2)))
    return np.minimum(hist_jump, coarse_jump), coarse_jump


def _edge_jumps(frames: np.ndarray) -> np.ndarray:
    """Returns (T-1,) edge layout jumps: the smaller of the shares of edges lost and edges gained (1 px tolerance)."""
    kernel = np.ones((3, 3), np.uint8)
    edges, grown = [], []
    for f in frames:
        grey = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY)
        e = cv2.Canny(grey, 40, 120)
        edges.append(e > 0)
        grown.append(cv2.dilate(e, kernel) > 0)
    out = np.zeros(max(0, len(frames) - 1), dtype=np.float32)
    for i in range(1, len(frames)):
        a, b = edges[i - 1], edges[i]
        na, nb = int(a.sum()), int(b.sum())
        if min(na, nb) < _MIN_EDGES:
            continue
        lost = (a & ~grown[i]).sum() / na
        gained = (b & ~grown[i - 1]).sum() / nb
        out[i - 1] = min(lost, gained)
    return out


def _spikes(jumps: np.ndarray) -> np.ndarray:
    """Returns each jump minus the larger of its neighbours (0 at least)."""
    if len(jumps) == 0:
        return jumps
    padded = np.pad(jumps, 1, mode="constant")
    return np.maximum(jumps - np.maximum(padded[:-2], padded[2:]), 0.0)


def cut_curve(frames: np.ndarray) -> np.ndarray:
    """Returns the cut strength at each frame boundary, shape (T,), [0] = 0, in 0..1.

    frames: (T, H, W, 3) uint8 RGB, best shrunk to ~150 px. Boundary i is
    between frames i-1 and i: the largest of the colour, layout and edge spikes.
    """
    curve = np.zeros(len(frames), dtype=np.float32)
    # A 25 fps source on the 30 fps grid repeats every sixth frame: a repeat is no
    # change at all, and would make the change next to it look like a lone spike.
    # Spikes are taken over the distinct frames and placed where each first shows.
    fresh = [0] + [i for i in range(1, len(frames)) if not np.array_equal(frames[i], frames[i - 1])]
    if len(fresh) < 2:
        return curve
    distinct = frames[fresh]
    colour, layout = _colour_jumps(distinct)
    spikes = np.maximum.reduce([_spikes(colour), _spikes(layout), _spikes(_edge_jumps(distinct))])
    curve[fresh[1:]] = spikes
    return curve


def scene_cut(frames: np.ndarray) -> tuple[float, np.ndarray]:
    """Returns (scene_cut score = the largest boundary spike, per-frame cut curve)."""
    curve = cut_curve(frames)
    return (float(curve.max()) if len(curve) else 0.0), curve
