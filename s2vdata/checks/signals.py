"""Per-frame signals of a clip: the sound's onset envelope, the picture's motion energy, and how they align.

Everything here is numpy + cv2 and works for any frame size and any number of
frames: `build` runs it on 286x286 source windows and `s2vmodel.evaluate` on
64x64 generated videos. Slot i of every curve is frame i, which pairs with
audio samples [hop*i, hop*(i+1)) (docs/design.md section 4).
"""

from __future__ import annotations

import cv2
import numpy as np

# Sub-slots per frame slot: spectral flux is taken on a finer hop so that an
# onset lands in its own frame slot wherever inside the slot it sounds.
_SUBSLOTS = 4
# Frames larger than this (longest side) are shrunk before differencing: the
# motion curve keeps its shape and the cost stays a few ms per window.
_MOTION_SIDE = 150
# Magnitude compression before flux: strong enough that a quiet bed under loud
# events still shows its onsets, weak enough that a noise floor stays low.
_COMPRESSION = 0.5


def onset_envelope(audio: np.ndarray, *, hop: int = 1470, n_slots: int | None = None) -> np.ndarray:
    """Returns the sound's onset strength per frame slot, shape (n_slots,), >= 0.

    Spectral flux (sum over frequency bins of the positive change of the
    compressed magnitude spectrum) on a hop of hop/4 samples, summed per slot
    of `hop` samples. `audio` is (n,) or (n, channels) float; channels are
    averaged. `n_slots` defaults to ceil(n / hop); missing samples count as silence.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"audio must be (n,) or (n, channels), got shape {np.shape(audio)}")
    if hop < _SUBSLOTS:
        raise ValueError(f"hop must be at least {_SUBSLOTS} samples, got {hop}")
    if n_slots is None:
        n_slots = -(-len(x) // hop)
    if n_slots <= 0:
        return np.zeros(0, dtype=np.float32)
    sub = hop // _SUBSLOTS
    n_sub = n_slots * _SUBSLOTS
    win = 2 * sub
    # Frame k spans [k*sub - sub/2, k*sub + 3*sub/2): centred half a sub-hop after
    # its nominal start, so the steepest rise of a click falls on its own slot.
    lead = sub // 2
    need = (n_sub - 1) * sub + win
    padded = np.zeros(lead + need, dtype=np.float32)
    body = x[: max(0, min(len(x), need - lead))]
    padded[lead : lead + len(body)] = body
    # One extra frame before the first, so the first slot's flux has a predecessor.
    padded = np.concatenate([np.zeros(sub, dtype=np.float32), padded])
    # overlapping frames as a strided view (no gather); times the window in float64: numpy's float64 FFT is faster
    frames = np.lib.stride_tricks.as_strided(padded, shape=(n_sub + 1, win), strides=(sub * padded.itemsize, padded.itemsize))
    frames = frames * np.hanning(win)[None, :]
    # an FFT size with small factors: 734 = 2 x 367 (prime) is 3x slower than 736
    mag = (
        np.sqrt(np.abs(np.fft.rfft(frames, n=_fast_size(win), axis=1)))
        if _COMPRESSION == 0.5
        else (np.abs(np.fft.rfft(frames, n=_fast_size(win), axis=1)) ** _COMPRESSION)
    )
    flux = np.maximum(np.diff(mag, axis=0), 0.0).sum(axis=1)  # (n_sub,)
    env = flux.reshape(n_slots, _SUBSLOTS).sum(axis=1)
    return env.astype(np.float32)


def _fast_size(n: int) -> int:
    """Returns the smallest size >= n whose prime factors are 2, 3 and 5 (fast for pocketfft)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def shrink_factor(h: int, w: int, *, side: int = _MOTION_SIDE) -> tuple[int, tuple[int, int]]:
    """Returns (k, (width, height)): the smallest integer factor that brings an h x w frame's longest side to at most
    `side`, and the size it gives (the frame's own when k <= 1)."""
    k = -(-max(h, w) // side)
    if k <= 1:
        return k, (w, h)
    return k, (max(1, w // k), max(1, h // k))


def shrink(frames: np.ndarray, *, side: int = _MOTION_SIDE) -> np.ndarray:
    """Returns the frames shrunk by the smallest integer factor that brings the longest side to at most `side`.

    An integer factor keeps cv2's area filter on its fast path (286 -> 143 px).
    Same dtype and channels as the input; frames already small are returned as they are.
    """
    f = np.asarray(frames)
    if f.ndim not in (3, 4) or (f.ndim == 4 and f.shape[3] not in (1, 3)):
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, 3), got shape {f.shape}")
    t, h, w = f.shape[:3]
    k, size = shrink_factor(h, w, side=side)
    if k <= 1 or t == 0:
        return f
    if h % k == 0 and w % k == 0:
        # the frames stacked into one tall picture: an area filter with an integer factor never mixes two frames,
        # so one call gives what a call per frame gives
        tall = np.ascontiguousarray(f).reshape(t * h, w, *f.shape[3:])
        return cv2.resize(tall, (size[0], t * size[1]), interpolation=cv2.INTER_AREA).reshape(t, size[1], size[0], *f.shape[3:])
    return np.stack([cv2.resize(np.ascontiguousarray(x), size, interpolation=cv2.INTER_AREA) for x in f]).reshape(
        t, size[1], size[0], *f.shape[3:]
    )


def shrink_frame(frame: np.ndarray, *, side: int = _MOTION_SIDE, out: np.ndarray | None = None) -> np.ndarray:
    """Returns one (H, W[, 3]) frame shrunk as `shrink` shrinks a window of such frames (the same pixels), into `out` if given.

    Shrinking each frame as it is decoded, while it is still in the CPU's
    cache, costs half of shrinking the whole window later.
    """
    k, size = shrink_factor(*frame.shape[:2], side=side)
    if k <= 1:
        if out is None:
            return frame.copy()
        out[...] = frame
        return out
    # cv2 reads a frame with padded lines (a decoder's plane) as it is: no copy
    return cv2.resize(frame, size, dst=out, interpolation=cv2.INTER_AREA)


def grey_u8(frames: np.ndarray) -> np.ndarray:
    """Returns (T, H, W, 3) uint8 RGB frames as (T, H, W) uint8 grey (one cv2 call for the whole window)."""
    f = np.ascontiguousarray(frames)
    t, h, w = f.shape[:3]
    if t == 0:
        return np.zeros((0, h, w), np.uint8)
    return cv2.cvtColor(f.reshape(t * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(t, h, w)


def grey_frames(frames: np.ndarray, *, side: int = _MOTION_SIDE) -> np.ndarray:
    """Returns the frames as grey float32 in [0, 1], shape (T, h, w), shrunk to at most `side` px (see `shrink`).

    frames: (T, H, W, 3) RGB or (T, H, W) grey, uint8 (0..255) or float (0..1).
    """
    f = shrink(frames, side=side)
    if f.dtype != np.uint8 and f.dtype != np.float32:
        f = f.astype(np.float32)
    scale = np.float32(1.0 / 255.0) if f.dtype == np.uint8 else np.float32(1.0)
    if f.ndim == 4 and f.shape[3] == 3:
        g = (
            grey_u8(f)
            if f.dtype == np.uint8
            else np.stack([cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in f])
        )  # noqa: E501
    elif f.ndim == 4:
        g = f[..., 0]
    else:
        g = f
    return g.astype(np.float32) * scale


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """Returns the motion energy per frame, shape (T,): mean |grey difference| to the previous frame, [0] = 0.

    frames: (T, H, W, 3) or (T, H, W), uint8 or float in [0, 1]; any size.
    """
    return motion_energy_grey(grey_frames(frames))


def motion_energy_grey(grey: np.ndarray) -> np.ndarray:
    """Returns motion_energy of grey frames (shape (T,), [0] = 0): float in [0, 1] as `grey_frames` makes them,
    or uint8 (0..255, read as /255)."""
    if len(grey) == 0:
        return np.zeros(0, dtype=np.float32)
    if grey.dtype == np.uint8:
        t, h, w = grey.shape
        if t < 2:
            return np.zeros(t, dtype=np.float32)
        g = np.ascontiguousarray(grey)
        diff = cv2.absdiff(g[1:].reshape(-1, w), g[:-1].reshape(-1, w)).reshape(t - 1, h * w)
        energy = diff.sum(axis=1, dtype=np.int64) / (255.0 * h * w)
        return np.concatenate([[0.0], energy]).astype(np.float32)
    diff = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))
    return np.concatenate([[0.0], diff]).astype(np.float32)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    # A flat curve (silence, a still picture) correlates with nothing: 0, not NaN.
    if den <= 1e-12 or not np.isfinite(den):
        return 0.0
    return float((x * y).sum() / den)


def lag_correlations(onset: np.ndarray, motion: np.ndarray, *, max_lag: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Returns (lags, correlations): Pearson correlation of onset[t] with motion[t - lag] for each lag.

    Slot 0 is left out (motion[0] is 0 by definition). Lags run from -max_lag
    to max_lag, clipped so that at least 3 slots overlap.
    """
    a = np.asarray(onset, dtype=np.float64)[1:]
    m = np.asarray(motion, dtype=np.float64)[1:]
    n = min(len(a), len(m))
    a, m = a[:n], m[:n]
    max_lag = max(0, min(int(max_lag), n - 3))
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.zeros(len(lags))
    for j, lag in enumerate(lags):
        if lag >= 0:
            corr[j] = _pearson(a[lag:], m[: n - lag])
        else:
            corr[j] = _pearson(a[: n + lag], m[-lag:])
    return lags, corr


def av_sync(onset: np.ndarray, motion: np.ndarray, *, max_lag: int = 15) -> tuple[float, int]:
    """Returns (peak correlation, lag in frames) of the onset envelope against motion energy.

    lag > 0 means the motion leads the sound (a firework rises before it
    bangs). Ties go to the smallest |lag|. A still picture or silence gives (0.0, 0).
    """
    lags, corr = lag_correlations(onset, motion, max_lag=max_lag)
    if len(corr) == 0:
        return 0.0, 0
    best = float(corr.max())
    ties = np.flatnonzero(corr >= best - 1e-9)
    j = ties[np.argmin(np.abs(lags[ties]))]
    return best, int(lags[j])


def onset_peaks(onset: np.ndarray, *, delta: float = 0.07, spread: int = 3) -> np.ndarray:
    """Returns the slots of the onset envelope's peaks (librosa-style peak picking).

    The envelope is normalised to [0, 1]; a peak is a local maximum over +-1
    slot that stands `delta` above the mean of the +-`spread` slots around it.
    """
    x = np.asarray(onset, dtype=np.float64)
    if len(x) < 3 or x.max() - x.min() <= 1e-12:
        return np.zeros(0, dtype=int)
    x = (x - x.min()) / (x.max() - x.min())
    padded = np.pad(x, 1, mode="constant", constant_values=-1.0)
    local_max = (x >= padded[:-2]) & (x > padded[2:])
    kernel = np.ones(2 * spread + 1) / (2 * spread + 1)
    mean = np.convolve(np.pad(x, spread, mode="edge"), kernel, mode="valid")
    return np.flatnonzero(local_max & (x >= mean + delta))


def motion_peaks(motion: np.ndarray) -> np.ndarray:
    """Returns the slots of motion's strict local maxima (as AV-Align does with optical flow)."""
    m = np.asarray(motion, dtype=np.float64)
    if len(m) < 3:
        return np.zeros(0, dtype=int)
    return np.flatnonzero((m[1:-1] > m[:-2]) & (m[1:-1] > m[2:])) + 1


def av_align(onset: np.ndarray, motion: np.ndarray, *, tolerance: int = 1) -> float:
    """Returns AV-Align (Yariv et al. 2023): IoU of sound onset peaks and motion peaks, 0..1.

    An onset peak counts as matched when a motion peak lies within
    `tolerance` frames of it; IoU = matched / (|onset peaks| + |motion peaks| - matched).
    No peaks at all gives 0.0.
    """
    a = onset_peaks(onset)
    v = motion_peaks(motion)
    if len(a) + len(v) == 0:
        return 0.0
    matched = sum(1 for p in a if len(v) and np.abs(v - p).min() <= tolerance)
    return float(matched / (len(a) + len(v) - matched))
