"""Video metrics: appearance against the real frames (l1, psnr, ssim) and motion against the sound.

Frames are (T, H, W, 3) uint8 RGB arrays (the decoded clip format); appearance
metrics work on [0, 1] intensities. The sound metrics (`av_sync`, `av_align`)
are the build's own correspondence measure from `s2vdata.checks.signals`: one
implementation, so a generated video is judged by the same rule that chose the
training clips. The motion of a generated clip is also compared with the real
clip's, in time (`motion_time`) and in place (`motion_place`): a flicker in sync
with the sound wins av_sync but not these. `event_errors` measures what becomes
of an event the input image holds (a burst, hands together): ghost or hole.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from s2vdata.checks import signals
from s2vdata.clips import CLIP

# SSIM as in Wang et al. 2004: gaussian window 11, sigma 1.5, K1 0.01, K2 0.03
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# Lags searched by av_sync when judging a generated video: 3 frames (0.1 s) either way, the
# edge of what viewers accept as in sync (ITU-R BT.1359). The build searches up to 15 because
# a source's motion may lead its sound; a generated video that is 0.3 s late is not in sync.
AV_SYNC_MAX_LAG = 3


def _unit(frames: np.ndarray) -> np.ndarray:
    """Returns frames as float64 in [0, 1] (uint8 is divided by 255; floats are taken as already in [0, 1])."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames.astype(np.float64) / 255.0
    return frames.astype(np.float64)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"videos differ in shape: {a.shape} vs {b.shape}; resize one to the other's size first")


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Returns the mean absolute difference of two videos on the [0, 1] intensity scale."""
    a, b = _unit(a), _unit(b)
    _check_pair(a, b)
    return float(np.abs(a - b).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Returns the PSNR in dB of two videos (peak 1.0, MSE over every pixel of every frame); inf if identical."""
    a, b = _unit(a), _unit(b)
    _check_pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(1.0 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Returns the mean SSIM of two videos (per frame and channel, valid 11x11 gaussian window, sigma 1.5).

    The standard constants (K1 0.01, K2 0.03, data range 1) and the 'valid'
    window of Wang et al.; identical videos give exactly 1.0.
    """
    a, b = _unit(a), _unit(b)
    _check_pair(a, b)
    if a.ndim == 3:  # (T, H, W) grey
        a, b = a[..., None], b[..., None]
    if min(a.shape[1], a.shape[2]) < SSIM_WINDOW:
        raise ValueError(f"frames of {a.shape[1]}x{a.shape[2]} are smaller than the SSIM window ({SSIM_WINDOW})")
    c1 = SSIM_K1**2
    c2 = SSIM_K2**2
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA)
    # channels become batch entries so one separable filter serves all of them
    x = torch.from_numpy(a).permute(0, 3, 1, 2).reshape(-1, 1, a.shape[1], a.shape[2])  # (T*C, 1, H, W)
    y = torch.from_numpy(b).permute(0, 3, 1, 2).reshape(-1, 1, b.shape[1], b.shape[2])

    def blur(z: torch.Tensor) -> torch.Tensor:
        z = F.conv2d(z, g.view(1, 1, 1, -1))
        return F.conv2d(z, g.view(1, 1, -1, 1))  # (T*C, 1, H-10, W-10)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float((num / den).mean())


def sound_curves(
    frames: np.ndarray, audio: np.ndarray, *, samples_per_frame: int = CLIP.samples_per_frame
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (onset envelope, motion energy), one value per frame, from the build's shared signals."""
    onset = signals.onset_envelope(np.asarray(audio, dtype=np.float32), hop=samples_per_frame, n_slots=len(frames))
    motion = signals.motion_energy(np.asarray(frames))
    return onset, motion


def av_sync(
    frames: np.ndarray, audio: np.ndarray, *, max_lag: int = AV_SYNC_MAX_LAG, samples_per_frame: int = CLIP.samples_per_frame
) -> float:
    """Returns the peak onset-vs-motion correlation of a video and its sound (0 for a video without motion).

    The build's correspondence check (`s2vdata.checks.signals.av_sync`) over
    lags of up to `max_lag` frames either way.
    """
    onset, motion = sound_curves(frames, audio, samples_per_frame=samples_per_frame)
    corr, _lag = signals.av_sync(onset, motion, max_lag=max_lag)
    return float(corr)


def av_align(
    frames: np.ndarray, audio: np.ndarray, *, tolerance: int = 1, samples_per_frame: int = CLIP.samples_per_frame
) -> float:
    """Returns AV-Align (Yariv et al. 2023): the IoU of sound onset peaks and motion peaks matched within `tolerance` frames."""
    onset, motion = sound_curves(frames, audio, samples_per_frame=samples_per_frame)
    return float(signals.av_align(onset, motion, tolerance=tolerance))


# ---------------------------------------------------------------- motion against the real clip's motion

MOTION_CELLS = 16  # the motion map's grid: 16x16 cells of 4x4 px at 64 px, so a hand's width is a few cells
# grey difference (0..1) between the input image and the clip's resting frame that marks an event: coding noise
# of a still scene stays under 0.02 at 64 px, the faint sparks of a fading burst reach 0.05 to 0.1
EVENT_THRESHOLD = 0.05
EVENT_MIN_SHARE = 0.001  # an input frame holds an event when at least this share of its pixels does (4 px at 64x64: a rocket)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Returns the Pearson correlation of two equal-length arrays; 0 when either is flat (a still video correlates with none)."""
    x = np.asarray(x, np.float64) - np.mean(x)
    y = np.asarray(y, np.float64) - np.mean(y)
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 1e-12 else 0.0


def _smoothed(curve: np.ndarray) -> np.ndarray:
    """Returns a curve smoothed with [1, 2, 1] / 4 (edges repeated): a one-frame offset or a repeated frame barely moves it."""
    padded = np.pad(np.asarray(curve, np.float64), 1, mode="edge")
    return (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4


def motion_time(generated: np.ndarray, real: np.ndarray) -> float:
    """Returns how the generated motion follows the real clip's in time: Pearson correlation of their motion-energy curves.

    Both curves (mean |grey difference| per frame, frames 1..) are smoothed over 3 frames
    first; a video that does not move correlates with nothing (0). 1 for the real clip itself.
    """
    a = _smoothed(signals.motion_energy(np.asarray(generated))[1:])
    b = _smoothed(signals.motion_energy(np.asarray(real))[1:])
    return pearson(a, b)


def motion_map(frames: np.ndarray, *, cells: int = MOTION_CELLS) -> np.ndarray:
    """Returns where a video moves: the summed |grey difference| of consecutive frames per cell of a cells x cells grid."""
    grey = signals.grey_frames(np.asarray(frames))  # (T, h, w) in [0, 1]
    moved = np.abs(np.diff(grey, axis=0)).sum(axis=0)  # (h, w)
    return cv2.resize(moved, (cells, cells), interpolation=cv2.INTER_AREA)


def motion_place(generated: np.ndarray, real: np.ndarray, *, cells: int = MOTION_CELLS) -> float:
    """Returns how the generated motion agrees with the real clip's in place: Pearson correlation of their motion maps.

    A flicker of the whole frame has a flat map and scores near 0 against hands that
    move; a still video scores 0; the real clip scores 1.
    """
    return pearson(motion_map(generated, cells=cells).ravel(), motion_map(real, cells=cells).ravel())


def motion_amount(generated: np.ndarray, real: np.ndarray) -> float | None:
    """Returns the generated clip's summed motion energy over the real clip's (None when the real clip does not move)."""
    total = float(signals.motion_energy(np.asarray(real)).sum())
    return float(signals.motion_energy(np.asarray(generated)).sum()) / total if total > 0 else None


# ---------------------------------------------------------------- the input image's own events


def event_region(real: np.ndarray, *, threshold: float = EVENT_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Returns (mask (H, W) bool, side (H, W) +1/-1): where the input frame differs from the clip's resting state, and which way.

    The resting state is the per-pixel median of the real clip's frames (what the scene
    looks like most of the time: sky without a burst, hands apart); a pixel holds an
    event when frame 0 (the input image) differs from it by more than `threshold`
    (grey, 0..1). side is +1 where the input is brighter than the resting state (a
    burst), -1 where darker.
    """
    grey = signals.grey_frames(np.asarray(real), side=max(real.shape[1:3]))  # (T, H, W), not shrunk
    diff = grey[0] - np.median(grey, axis=0)
    return np.abs(diff) > threshold, np.where(diff >= 0, 1.0, -1.0)


def holds_event(real: np.ndarray) -> bool:
    """Returns whether the clip's first frame is mid-event: its event region covers at least EVENT_MIN_SHARE of the frame."""
    mask, _ = event_region(real)
    return bool(mask.mean() >= EVENT_MIN_SHARE)


def event_errors(generated: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """Returns (ghost, hole): how the generated frames 1.. err inside the input image's event region, split by direction.

    e = generated - real (grey, 0..1) in the region, signed by the event's side: ghost is
    the mean of the error towards the input image (the event stays where the real one
    has faded or moved on), hole the mean of the error away from it (the event is taken
    out too soon, or replaced by something darker or brighter than the scene behind it).
    A model that continues the event as the real clip does scores 0 on both; `still`
    keeps the event whole (ghost only).
    """
    mask, side = event_region(real)
    if not mask.any():
        return 0.0, 0.0
    side_g = side[mask]
    g = signals.grey_frames(np.asarray(generated[1:]), side=max(real.shape[1:3]))[:, mask]  # (T-1, n)
    r = signals.grey_frames(np.asarray(real[1:]), side=max(real.shape[1:3]))[:, mask]
    toward = (g - r) * side_g
    return float(np.maximum(toward, 0).mean()), float(np.maximum(-toward, 0).mean())
