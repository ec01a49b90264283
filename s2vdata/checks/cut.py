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
_LEVEL_BITS = 2
_LEVELS = 1 << _LEVEL_BITS  # histogram levels per RGB channel: 4, 64 bins
_COARSE = 8  # side of the grey thumbnail for the layout change
_MIN_EDGES = 20  # edge pixels a frame needs for the edge measure (a flat frame has none)
_CONTEXT = 3  # frames each side compared across a boundary (at least 2 needed)
_CANDIDATE = 0.05  # spikes below this are not worth the full comparison
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _bits(packed: np.ndarray) -> np.ndarray:
    """Returns the number of set bits in each row of a packed (N, bytes) uint8 array."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(packed).sum(axis=1, dtype=np.int64)
    return _POPCOUNT[packed].sum(axis=1, dtype=np.int64)


def _thumbnails(frames: np.ndarray) -> np.ndarray:
    """Returns (T, 32, 32, 3) colour thumbnails: the frames' centre square of 32k px shrunk by the integer factor k.

    An integer factor keeps cv2's area filter on its fast path, and on the frames
    stacked into one tall picture it never mixes two frames (143 px frames: the
    centre 128 px, by 4). A factor of 4 is taken as two halvings: cv2's vector
    path halves, while other factors run its slower general loop (2.2x the time;
    the thumbnails differ by a level at most, from rounding twice). Frames
    under 32 px are scaled to 32 one by one.
    """
    t, h, w = frames.shape[:3]
    k = min(h, w) // _THUMB
    if k == 0:
        return np.stack([cv2.resize(np.ascontiguousarray(f), (_THUMB, _THUMB), interpolation=cv2.INTER_AREA) for f in frames])
    side = k * _THUMB
    y, x = (h - side) // 2, (w - side) // 2
    tall = np.ascontiguousarray(frames[:, y : y + side, x : x + side]).reshape(t * side, side, 3)
    while k % 2 == 0 and k > 1:
        side //= 2
        k //= 2
        tall = cv2.resize(tall, (side, t * side), interpolation=cv2.INTER_AREA)
    if k > 1:
        tall = cv2.resize(tall, (_THUMB, t * _THUMB), interpolation=cv2.INTER_AREA)
    return tall.reshape(t, _THUMB, _THUMB, 3)


class _Features:
    """Per-frame colour histogram, coarse layout and edge maps (packed bits) of a window's frames."""

    def __init__(self, frames: np.ndarray, grey: np.ndarray | None = None):
        t = len(frames)
        thumbs = _thumbnails(frames)
        # 64 colour bins: 2 bits per channel (the top two of each byte)
        q = thumbs >> (8 - _LEVEL_BITS)
        codes = ((q[..., 0] << (2 * _LEVEL_BITS)) | (q[..., 1] << _LEVEL_BITS) | q[..., 2]).reshape(t, -1).astype(np.int32)
        codes += (_LEVELS**3) * np.arange(t, dtype=np.int32)[:, None]
        self.hists = np.bincount(codes.ravel(), minlength=t * _LEVELS**3).reshape(t, _LEVELS**3).astype(np.float32)
        self.hists /= _THUMB * _THUMB
        grey_thumbs = cv2.cvtColor(thumbs.reshape(t * _THUMB, _THUMB, 3), cv2.COLOR_RGB2GRAY)
        # 32 -> 8 px is an integer factor: the tall picture shrinks frame by frame
        coarse = cv2.resize(grey_thumbs, (_COARSE, t * _COARSE), interpolation=cv2.INTER_AREA)
        self.coarse = coarse.reshape(t, _COARSE * _COARSE).astype(np.float32) / 255.0
        if grey is None:
            grey = np.stack([cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in frames])
        _, h, w = grey.shape
        # Canny's gradients (Sobel, border replicated) of all frames at once: the frames stacked into one tall
        # picture, each between copies of its own first and last rows, so no frame's gradient reads another's
        # pixels; Canny then thins and links each frame's edges from its own gradients (the same edges)
        padded = np.empty((t, h + 2, w), np.uint8)
        padded[:, 1:-1] = grey
        padded[:, 0], padded[:, -1] = grey[:, 0], grey[:, -1]
        stacked = padded.reshape(t * (h + 2), w)
        dx = cv2.Sobel(stacked, cv2.CV_16S, 1, 0, borderType=cv2.BORDER_REPLICATE).reshape(t, h + 2, w)
        dy = cv2.Sobel(stacked, cv2.CV_16S, 0, 1, borderType=cv2.BORDER_REPLICATE).reshape(t, h + 2, w)
        # each frame's edges with a blank row under it: the frames dilate as one tall picture, and a frame's
        # dilation never reads its neighbour (a blank row is what dilate's border reads too)
        tall = np.zeros((t, h + 1, w), np.uint8)
        for i in range(t):
            cv2.Canny(dx[i, 1:-1], dy[i, 1:-1], 40, 120, edges=tall[i, :h])
        grown = cv2.dilate(tall.reshape(t * (h + 1), w), np.ones((3, 3), np.uint8)).reshape(t, h + 1, w)
        # packbits packs any non-zero byte as a set bit
        self.edges = np.packbits(tall[:, :h].reshape(t, -1), axis=1)
        self.grown = np.packbits(grown[:, :h].reshape(t, -1), axis=1)
        self.n_edges = _bits(self.edges)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Returns (len(a), 3): the (colour, layout, edge) changes between frames a[i] and b[i], each in 0..1.

        colour: the smaller of half the L1 histogram distance and the layout
        change (a flash moves the histogram, not the layout); layout: 4x the mean
        |change| of the 8x8 grey thumbnails, at most 1; edge: the smaller of the
        shares of edges lost and gained (1 px tolerance).
        """
        layout = np.minimum(1.0, 4.0 * np.abs(self.coarse[a] - self.coarse[b]).mean(axis=1, dtype=np.float64))
        colour = np.minimum(0.5 * np.abs(self.hists[a] - self.hists[b]).sum(axis=1, dtype=np.float64), layout)
        na, nb = self.n_edges[a], self.n_edges[b]
        lost = _bits(self.edges[a] & ~self.grown[b])
        gained = _bits(self.edges[b] & ~self.grown[a])
        ok = np.minimum(na, nb) >= _MIN_EDGES
        edge = np.where(ok, np.minimum(lost / np.maximum(na, 1), gained / np.maximum(nb, 1)), 0.0)
        return np.stack([colour, layout, edge], axis=1)


def cut_curve(frames: np.ndarray, *, grey: np.ndarray | None = None) -> np.ndarray:
    """Returns the cut strength at each frame boundary, shape (T,), [0] = 0, in 0..1.

    frames: (T, H, W, 3) uint8 RGB, best shrunk to ~150 px; grey: the same
    frames as uint8 grey, if already made. Boundary i is between frames i-1
    and i; its strength is the largest over the three measures of (the
    smallest change between any frame of the 3 before and any of the 3 after)
    minus (the largest change at the two boundaries either side).
    """
    t = len(frames)
    curve = np.zeros(t, dtype=np.float32)
    if t < 4:
        return curve
    feats = _Features(frames, grey)
    jumps = np.zeros((t + 2, 3))  # jumps[i]: boundary i (between frames i-1 and i); 0 outside the window
    jumps[1:t] = feats.distance(np.arange(t - 1), np.arange(1, t))
    # two boundaries each side: a 25 fps source on the 30 fps grid repeats a frame every sixth slot, and a
    # repeat's zero change must not make the change next to it look lone
    idx = np.arange(2, t - 1)  # two frames on each side at least
    around = np.maximum.reduce([jumps[idx - 2], jumps[idx - 1], jumps[idx + 1], jumps[idx + 2]])
    spikes = (jumps[idx] - around).max(axis=1) >= _CANDIDATE
    for i, near in zip(idx[spikes], around[spikes]):
        before = np.arange(max(0, i - _CONTEXT), i)
        after = np.arange(i, min(t, i + _CONTEXT))
        a, b = np.repeat(before, len(after)), np.tile(after, len(before))
        lasting = feats.distance(a, b).min(axis=0)
        curve[i] = max(0.0, float((lasting - near).max()))
    return curve


def scene_cut(frames: np.ndarray, *, grey: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Returns (scene_cut score = the strongest boundary, per-frame cut curve); grey: the frames as uint8 grey, if made."""
    curve = cut_curve(frames, grey=grey)
    return (float(curve.max()) if len(curve) else 0.0), curve
