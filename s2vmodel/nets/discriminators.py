"""D_I and D_V: MoCoGAN's patch image and patch video discriminators (Tulyakov et al. 2018).

Both return raw logits per patch. `norm` picks the layer after each inner convolution:
`batch` as MoCoGAN, or `instance` / `spectral` (spectral normalisation of every convolution
instead of a norm layer), which behave better at the paper's batch size of 2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _conv(conv: nn.Module, norm: str) -> nn.Module:
    """Return conv, spectrally normalised when norm is `spectral`."""
    return spectral_norm(conv) if norm == "spectral" else conv


def _norm(norm: str, channels: int, *, dims: int) -> nn.Module:
    """Return the normalisation layer after an inner convolution."""
    if norm == "batch":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True) if dims == 2 else nn.InstanceNorm3d(channels, affine=True)
    if norm in ("spectral", "none"):
        return nn.Identity()
    raise ValueError(f"unknown discriminator norm {norm!r}: use batch, instance, spectral or none")


class ImageDiscriminator(nn.Module):
    """D_I: (N, 3, 64, 64) frames -> (N, 1, 4, 4) patch logits; 4x4 convs, stride 2, 64-128-256."""

    def __init__(self, *, ndf: int = 64, norm: str = "batch", channels: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _conv(nn.Conv2d(channels, ndf, 4, 2, 1, bias=False), norm),
            nn.LeakyReLU(0.2),
            _conv(nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), norm),
            _norm(norm, ndf * 2, dims=2),
            nn.LeakyReLU(0.2),
            _conv(nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), norm),
            _norm(norm, ndf * 4, dims=2),
            nn.LeakyReLU(0.2),
            _conv(nn.Conv2d(ndf * 4, 1, 4, 2, 1, bias=False), norm),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Return patch logits (N, 1, H/16, W/16) for frames (N, 3, H, W)."""
        return self.net(frames)


class VideoDiscriminator(nn.Module):
    """D_V: (N, 3, T, 64, 64) clips -> patch logits; 3D 4x4x4 convs, stride (1, 2, 2)."""

    def __init__(self, *, ndf: int = 64, norm: str = "batch", channels: int = 3) -> None:
        super().__init__()
        stride, pad = (1, 2, 2), (0, 1, 1)
        self.net = nn.Sequential(
            _conv(nn.Conv3d(channels, ndf, 4, stride, pad, bias=False), norm),
            nn.LeakyReLU(0.2),
            _conv(nn.Conv3d(ndf, ndf * 2, 4, stride, pad, bias=False), norm),
            _norm(norm, ndf * 2, dims=3),
            nn.LeakyReLU(0.2),
            _conv(nn.Conv3d(ndf * 2, ndf * 4, 4, stride, pad, bias=False), norm),
            _norm(norm, ndf * 4, dims=3),
            nn.LeakyReLU(0.2),
            _conv(nn.Conv3d(ndf * 4, 1, 4, stride, pad, bias=False), norm),
        )

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Return patch logits (N, 1, T-12, H/16, W/16) for clips (N, 3, T, H, W); T >= 13."""
        return self.net(clips)
