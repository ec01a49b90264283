"""G: a U-Net (pix2pix layout) that makes one frame from the input image and the frame's sound feature.

The image encoder runs once per clip and its features are repeated for the clip's T frames;
that is the same computation as encoding the image B*T times (batch-norm statistics over
repeated copies equal those over the originals) at 1/T of the cost. The decoder runs on the
whole B*T batch in one call. The sound feature modulates the decoder (FiLM: per-channel scale
and shift after normalisation) on `sound_levels` levels from the bottleneck up; modulating
after the normalisation matters: a spatially constant sound map concatenated before an
instance norm would be subtracted out again.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm2d(kind: str, channels: int) -> nn.Module:
    """Return the 2D normalisation layer named by kind."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown generator norm {kind!r}: use batch, instance or none")


class FiLM(nn.Module):
    """Per-channel scale and shift of a feature map from a sound feature."""

    def __init__(self, *, feat_dim: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(feat_dim, 2 * channels)
        # start as the identity so that early training sees the plain U-Net
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """Return x * (1 + gamma) + beta, gamma and beta from feat (N, D)."""
        gamma, beta = self.linear(feat).chunk(2, dim=1)  # (N, C) each
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class UNetGenerator(nn.Module):
    """Image (B,3,H,W) + per-frame sound features (B,T,D) -> frames (B,T,3,H,W) in [-1, 1]."""

    def __init__(
        self,
        *,
        feat_dim: int,
        ngf: int = 64,
        depth: int = 4,
        norm: str = "batch",
        sound_levels: int = 1,
        residual: bool = False,
        channels: int = 3,
    ) -> None:
        super().__init__()
        self.residual = residual
        widths = [ngf * min(2**i, 8) for i in range(depth)]  # e.g. 64, 128, 256, 512
        self.down = nn.ModuleList()
        for i, width in enumerate(widths):
            inp = channels if i == 0 else widths[i - 1]
            layers: list[nn.Module] = [nn.Conv2d(inp, width, 4, stride=2, padding=1)]
            if i > 0:
                layers.append(_norm2d(norm, width))
            layers.append(nn.LeakyReLU(0.2))
            self.down.append(nn.Sequential(*layers))
        # decoder level j (0 = bottleneck) up-samples to the size of encoder level depth-2-j
        self.up = nn.ModuleList()
        self.up_norm = nn.ModuleList()
        self.film = nn.ModuleList()
        self.film_at = list(range(min(sound_levels, depth)))
        for j in range(depth - 1):
            i = depth - 1 - j  # encoder level the input comes from
            inp = widths[i] if j == 0 else 2 * widths[i]
            self.up.append(nn.ConvTranspose2d(inp, widths[i - 1], 4, stride=2, padding=1))
            self.up_norm.append(_norm2d(norm, widths[i - 1]))
        for j in self.film_at:
            # level j's FiLM acts on the map that enters decoder step j (the bottleneck for j = 0)
            width = widths[depth - 1 - j]
            self.film.append(FiLM(feat_dim=feat_dim, channels=width))
        self.out = nn.ConvTranspose2d(2 * widths[0] if depth > 1 else widths[0], channels, 4, stride=2, padding=1)
        if residual:
            # a zero last layer makes the untrained G return the input image itself
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Return (B, T, 3, H, W) frames for image (B, 3, H, W) and feats (B, T, D)."""
        B, T, D = feats.shape
        skips = []
        x = image
        for block in self.down:
            x = block(x)
            skips.append(x)  # (B, C_i, H / 2**(i+1), W / 2**(i+1))
        feat = feats.reshape(B * T, D)  # (B*T, D)

        def repeat(t: torch.Tensor) -> torch.Tensor:
            return t.unsqueeze(1).expand(B, T, *t.shape[1:]).reshape(B * T, *t.shape[1:])  # (B*T, ...)

        x = repeat(skips[-1])  # (B*T, C, h, w) bottleneck
        depth = len(self.down)
        for j in range(depth):
            if j < len(self.film):
                x = self.film[j](x, feat)
            if j == depth - 1:
                break
            if j > 0:
                x = torch.cat([x, repeat(skips[depth - 1 - j])], dim=1)
            x = torch.relu(self.up_norm[j](self.up[j](x)))
        if depth > 1:
            x = torch.cat([x, repeat(skips[0])], dim=1)
        x = self.out(x)  # (B*T, 3, H, W)
        if self.residual:
            base = repeat(image).clamp(-0.999, 0.999)
            x = torch.tanh(torch.atanh(base) + x)
        else:
            x = torch.tanh(x)
        return x.reshape(B, T, *x.shape[1:])  # (B, T, 3, H, W)
