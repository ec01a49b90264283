"""Video metrics: appearance against the real frames (l1, psnr, ssim) and motion against the sound.

Frames are (T, H, W, 3) uint8 RGB arrays (the decoded clip format); appearance
metrics work on [0, 1] intensities. The sound metrics (`av_sync`, `av_align`)
are the build's own correspondence measure from `s2vdata.checks.signals`: one
implementation, so a generated video is judged by the same rule that chose the
training clips.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from s2vdata.checks import signals
from s2vdata.config import CLIP

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


def sound_curves(frames: np.ndarray, audio: np.ndarray, *, samples_per_frame: int = CLIP.samples_per_frame) -> tuple[np.ndarray, np.ndarray]:
    """Returns (onset envelope, motion energy), one value per frame, from the build's shared signals."""
    onset = signals.onset_envelope(np.asarray(audio, dtype=np.float32), hop=samples_per_frame, n_slots=len(frames))
    motion = signals.motion_energy(np.asarray(frames))
    return onset, motion


def av_sync(frames: np.ndarray, audio: np.ndarray, *, max_lag: int = AV_SYNC_MAX_LAG, samples_per_frame: int = CLIP.samples_per_frame) -> float:
    """Returns the peak onset-vs-motion correlation of a video and its sound (0 for a video without motion).

    The build's correspondence check (`s2vdata.checks.signals.av_sync`) over
    lags of up to `max_lag` frames either way.
    """
    onset, motion = sound_curves(frames, audio, samples_per_frame=samples_per_frame)
    corr, _lag = signals.av_sync(onset, motion, max_lag=max_lag)
    return float(corr)


def av_align(frames: np.ndarray, audio: np.ndarray, *, tolerance: int = 1, samples_per_frame: int = CLIP.samples_per_frame) -> float:
    """Returns AV-Align (Yariv et al. 2023): the IoU of sound onset peaks and motion peaks matched within `tolerance` frames."""
    onset, motion = sound_curves(frames, audio, samples_per_frame=samples_per_frame)
    return float(signals.av_align(onset, motion, tolerance=tolerance))
