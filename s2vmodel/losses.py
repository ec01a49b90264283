"""All GAN and reconstruction maths (paper section 2.3), and which frames the discriminators see.

L = lambda_I * L_adv-I + lambda_V * L_adv-V + lambda_l1 * L1. With `bce` the discriminators
maximise the paper's log-likelihood form (minimise softplus(-real) + softplus(fake), the same
thing written stably on logits) and G minimises the non-saturating -log D(fake); with `hinge`
D minimises relu(1 - real) + relu(1 + fake) and G minimises -D(fake).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(real: torch.Tensor, fake: torch.Tensor, *, kind: str) -> torch.Tensor:
    """Return the discriminator loss for patch logits on real and generated inputs."""
    if kind == "bce":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}: use bce or hinge")


def g_adv_loss(fake: torch.Tensor, *, kind: str) -> torch.Tensor:
    """Return the generator's adversarial loss for patch logits on generated inputs."""
    if kind == "bce":
        return F.softplus(-fake).mean()
    if kind == "hinge":
        return -fake.mean()
    raise ValueError(f"unknown adversarial loss {kind!r}: use bce or hinge")


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Return the mean absolute error over all frames and pixels."""
    return (fake - real).abs().mean()


def motion_l1_loss(
    fake: torch.Tensor, real: torch.Tensor, *, image: torch.Tensor, symmetric: bool = False, eps: float = 1e-3
) -> torch.Tensor:
    """Return the L1 error weighted by how far each pixel moved from the input image.

    fake, real: (B, T, 3, H, W); image: (B, 3, H, W). Normalised by the mean weight, so it is an
    L1 over the moving pixels: when only small parts of a frame move (hands, a mouth), the plain
    L1 barely notices a still output, this term does. The weight is how far the real pixel moved;
    with `symmetric`, how far the real or the generated one moved (the larger, not differentiated),
    so motion made up where nothing moved (a flash at a place the sound cannot tell, a flicker) costs
    as much as motion missed where something did.
    """
    weight = _motion_weight(fake, real, image=image, symmetric=symmetric)
    return ((fake - real).abs() * weight).mean() / (weight.mean() + eps)


def _motion_weight(fake: torch.Tensor, real: torch.Tensor, *, image: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """Return (B, T, 1, H, W): how far each real pixel moved from the input image (symmetric: or the generated one)."""
    weight = (real - image[:, None]).abs().mean(dim=2, keepdim=True)
    if symmetric:
        weight = torch.maximum(weight, (fake.detach() - image[:, None]).abs().mean(dim=2, keepdim=True))
    return weight


def l1_per_clip(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Return (B,): each clip's mean absolute error over its frames and pixels (fake, real: (B, T, 3, H, W))."""
    return (fake - real).abs().flatten(1).mean(dim=1)


def motion_l1_per_clip(
    fake: torch.Tensor, real: torch.Tensor, *, image: torch.Tensor, symmetric: bool = False, eps: float = 1e-3
) -> torch.Tensor:
    """Return (B,): motion_l1_loss of each clip alone (normalised by the clip's own mean weight)."""
    weight = _motion_weight(fake, real, image=image, symmetric=symmetric)
    return ((fake - real).abs() * weight).flatten(1).mean(dim=1) / (weight.flatten(1).mean(dim=1) + eps)


def temporal_l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Return the mean absolute error of the frame-to-frame changes: |(fake[t] - fake[t-1]) - (real[t] - real[t-1])|.

    fake, real: (B, T, 3, H, W). An L1 on changes in time favours changes that are exactly 0 where
    the real clip holds still, so a generated clip does not shimmer between events (each shimmer is
    a motion peak that matches no sound onset), and a change where the real clip has none costs
    as much as one missed.
    """
    return ((fake[:, 1:] - fake[:, :-1]) - (real[:, 1:] - real[:, :-1])).abs().mean()


def frame_indices(*, batch: int, frames: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Return (batch, count) random frame indices: which frames D_I judges (Gamma_1, `count` per clip)."""
    return torch.randint(0, frames, (batch, count), generator=generator)


def window_starts(*, batch: int, frames: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Return (batch,) random starts of the `length`-frame windows D_V judges (Gamma_T)."""
    return torch.randint(0, frames - length + 1, (batch,), generator=generator)


def take_frames(video: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Return (B*count, 3, H, W) frames of video (B, T, 3, H, W) at index (B, count)."""
    B, count = index.shape
    rows = torch.arange(B, device=video.device)[:, None].expand(B, count)
    return video[rows.reshape(-1), index.to(video.device).reshape(-1)]  # (B*count, 3, H, W)


def take_windows(video: torch.Tensor, starts: torch.Tensor, *, length: int) -> torch.Tensor:
    """Return (B, 3, length, H, W) windows of video (B, T, 3, H, W) starting at starts (B,)."""
    offsets = starts.to(video.device)[:, None] + torch.arange(length, device=video.device)  # (B, length)
    rows = torch.arange(video.shape[0], device=video.device)[:, None].expand_as(offsets)
    clips = video[rows, offsets]  # (B, length, 3, H, W)
    return clips.transpose(1, 2)  # (B, 3, length, H, W)
