"""FVD (Unterthiner et al. 2018): the Fréchet distance of I3D embeddings of generated and real 16-frame clips.

The protocol, as the FVD paper's reference code and StyleGAN-V (Skorokhodov et al. 2022) use it:
- clips of 16 consecutive frames (FVD_16), every frame resized to 224x224 (bilinear) and
  scaled from [0, 255] to [-1, 1];
- embedded by the Kinetics-400 I3D (`s2vmodel.i3d`), the 400 logits before the softmax;
- FVD = |mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)) over the two sets of embeddings.

A 120-frame clip of s2v gives 7 windows (frames 0-15, 16-31, ..., 96-111; the last 8 frames
are left out), every one embedded. Papers compare 2048 videos; the Fréchet distance of a few
hundred embeddings or fewer is biased upwards and noisy (the covariances of 400 logits are not
determined), so with under `MIN_CLIPS` clips s2v's FVD only ranks model against still on the
same split and is not comparable with published numbers; `evaluate` says so.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from s2vmodel.i3d import load_i3d

FVD_FRAMES = 16  # clip length of FVD_16, the standard
FVD_SIZE = 224  # I3D's input side, the standard
MIN_CLIPS = 256  # below this, say that the number means little (StyleGAN-V uses 2048 videos)
BATCH = 4  # windows per I3D call: bounds memory (a 16x224x224 window's first activations are ~25 MB)


def clip_windows(video: np.ndarray, *, length: int = FVD_FRAMES) -> np.ndarray:
    """Returns (n, length, H, W, 3) non-overlapping windows of a (T, H, W, 3) video, from frame 0; n = T // length."""
    n = len(video) // length
    if n == 0:
        raise ValueError(f"a video of {len(video)} frames has no {length}-frame window for FVD")
    return np.asarray(video[: n * length]).reshape(n, length, *video.shape[1:])


def preprocess(clips: np.ndarray, *, size: int = FVD_SIZE) -> torch.Tensor:
    """Returns (N, 3, T, size, size) float in [-1, 1] from (N, T, H, W, 3) uint8 clips (bilinear resize)."""
    x = torch.from_numpy(np.ascontiguousarray(clips))  # (N, T, H, W, 3) uint8
    n, t, h, w, c = x.shape
    frames = x.reshape(n * t, h, w, c).permute(0, 3, 1, 2).float()  # (N*T, 3, H, W)
    if (h, w) != (size, size):
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    frames = frames / 127.5 - 1.0
    return frames.reshape(n, t, c, size, size).permute(0, 2, 1, 3, 4).contiguous()  # (N, 3, T, size, size)


@torch.no_grad()
def i3d_embeddings(clips: np.ndarray, *, batch: int = BATCH, device: str | torch.device = "cpu") -> np.ndarray:
    """Returns (N, 400) float64 I3D logits of (N, 16, H, W, 3) uint8 clips, preprocessed as FVD does."""
    model = load_i3d().to(device)
    out = []
    for i in range(0, len(clips), batch):
        x = preprocess(clips[i : i + batch]).to(device, memory_format=torch.channels_last_3d)
        out.append(model(x).double().cpu().numpy())
    return np.concatenate(out, axis=0) if out else np.zeros((0, 400))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Returns the symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues clipped)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Returns the Fréchet distance of Gaussians fitted to embeddings a (N, D) and b (M, D); N, M >= 2.

    Tr((S_a S_b)^(1/2)) is computed as Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), a symmetric PSD
    matrix with the same eigenvalues, so no complex square roots and no scipy are needed.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FVD needs at least 2 embeddings per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0.0, None)).sum()
    distance = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)
    return max(distance, 0.0)


def fvd_note(clips: int) -> str | None:
    """Returns a warning when `clips` clips are too few for FVD to mean much, else None."""
    if clips >= MIN_CLIPS:
        return None
    return (
        f"FVD over {clips} clips is biased upwards and noisy (papers use 2048; under {MIN_CLIPS} it is a rough "
        "guide): compare model with still on this split only, not with published numbers"
    )
