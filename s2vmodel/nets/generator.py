"""G: a U-Net (pix2pix layout) that makes one frame from the input image and the frame's sound feature.

The image encoder runs once per clip and its features are repeated for the clip's T frames;
that is the same computation as encoding the image B*T times (batch-norm statistics over
repeated copies equal those over the originals) at 1/T of the cost. The decoder runs on the
whole B*T batch in one call. The sound feature modulates the decoder (FiLM: per-channel scale
and shift after normalisation) on `sound_levels` levels from the bottleneck up; modulating
after the normalisation matters: a spatially constant sound map concatenated before an
instance norm would be subtracted out again.

With `previous`, the encoder also sees the frame before each frame (the paper's recursive
extension): it then runs once per frame on (image, previous frame), 6 channels, and a
residual output is a change of the previous frame instead of the input image (or, with
`previous_base=False`, still of the input image: the previous frame is then context only).
"""

from __future__ import annotations

import torch
from torch import nn

BLEND_START = -8.0  # the share logit of an untrained blend G


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


def shrink(change: torch.Tensor, tau: float) -> torch.Tensor:
    """Return the change soft-thresholded by tau: |x| <= tau -> 0, else x -/+ tau."""
    return change - change.clamp(-tau, tau)


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
        residual_mode: str = "atanh",
        previous: bool = False,
        previous_base: bool = True,
        deadzone: float = 0.0,
        noise: int = 0,
        channels: int = 3,
    ) -> None:
        super().__init__()
        if residual_mode not in ("atanh", "linear", "blend"):
            raise ValueError(f"unknown residual mode {residual_mode!r}: use atanh, linear or blend")
        self.residual = residual
        self.residual_mode = residual_mode
        self.previous = previous
        self.previous_base = previous_base
        if deadzone < 0:
            raise ValueError(f"deadzone {deadzone}: must be >= 0 (0 = off)")
        self.deadzone = deadzone  # a change of the base: only a residual G has one
        if noise < 0:
            raise ValueError(f"noise {noise}: must be >= 0 (0 = none)")
        self.noise = noise  # channels of the per-clip random map G sees beside the image
        widths = [ngf * min(2**i, 8) for i in range(depth)]  # e.g. 64, 128, 256, 512
        self.down = nn.ModuleList()
        for i, width in enumerate(widths):
            inp = (2 * channels if previous else channels) + noise if i == 0 else widths[i - 1]
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
        # blend: 3 channels of new content and 1 of its share; otherwise the frame (or its change)
        out_channels = channels + 1 if residual and residual_mode == "blend" else channels
        self.out = nn.ConvTranspose2d(2 * widths[0] if depth > 1 else widths[0], out_channels, 4, stride=2, padding=1)
        if residual:
            # a zero last layer makes the untrained G return the input image itself
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
            if residual_mode == "blend":
                # share sigmoid(-8) = 3e-4 of grey content: within 0.09 of a uint8 level of the input, so an untrained G
                # returns the input image's pixels; unlike a share of exactly 0, every pixel gets gradients from the start
                nn.init.constant_(self.out.bias[-1:], BLEND_START)

    def forward(
        self,
        image: torch.Tensor,
        feats: torch.Tensor,
        previous: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return (B, T, 3, H, W) frames for image (B, 3, H, W), feats (B, T, D), with `previous` the frames before
        them, and with `noise` channels (a G built with noise > 0) the clip's random map (B, noise, H, W)."""
        return self.frames_and_content(image, feats, previous, noise)[0]

    def frames_and_content(
        self,
        image: torch.Tensor,
        feats: torch.Tensor,
        previous: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return (frames, the blend's content (B, T, 3, H, W) or None in the other modes); see forward."""
        B, T, D = feats.shape
        if self.noise and (noise is None or noise.shape[1] != self.noise):
            raise ValueError(
                f"this generator also sees a random map of {self.noise} channels: pass `noise` (B, {self.noise}, H, W)"
            )
        if self.previous:
            if previous is None:
                raise ValueError("this generator also sees the previous frame: pass `previous` (B, T, 3, H, W)")
            before = previous.reshape(B * T, *previous.shape[2:])  # (B*T, 3, H, W)
            images = image.unsqueeze(1).expand_as(previous).reshape_as(before)  # (B*T, 3, H, W)
            x = torch.cat([images, before], dim=1)  # (B*T, 6, H, W)
            if self.noise:
                x = torch.cat([x, noise.unsqueeze(1).expand(B, T, *noise.shape[1:]).reshape(B * T, *noise.shape[1:])], dim=1)
            base = before if self.previous_base else images
            per_clip = 1  # encoder maps are already per frame
        else:
            base, per_clip = image, T
            x = torch.cat([image, noise], dim=1) if self.noise else image
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)  # (B*T/per_clip, C_i, H / 2**(i+1), W / 2**(i+1))
        feat = feats.reshape(B * T, D)  # (B*T, D)

        def repeat(t: torch.Tensor) -> torch.Tensor:
            # per-clip maps to per-frame maps (the clip's T frames share them)
            if per_clip == 1:
                return t
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
        x = self.out(x)  # (B*T, 3 or 4, H, W)
        frames = self._compose(x, base=repeat(base)).reshape(B, T, -1, *x.shape[2:])  # (B, T, 3, H, W)
        blend = self.residual and self.residual_mode == "blend"
        return frames, torch.tanh(x[:, :-1]).reshape_as(frames) if blend else None

    def _compose(self, out: torch.Tensor, *, base: torch.Tensor) -> torch.Tensor:
        """Return frames from the last layer's output: tanh(out), or a change of `base` (atanh, linear or blend)."""
        if not self.residual:
            return torch.tanh(out)
        # the clamp keeps atanh finite; the other modes clamp too, so an untrained G is the same in every mode
        base = base.clamp(-0.999, 0.999)
        frames = self._changed(out, base=base)
        # The deadzone acts when generating only. A residual G's change is never exactly zero where nothing
        # happens: a drift of a hundredth of a grey level flips the rounding of a few pixels from frame to frame,
        # and every flip is motion (a spurious motion peak for AV-Align, a flicker in the video); below tau the
        # frame is the base's pixels. Trained through the threshold, G drifted instead: inside it the L1's gradient
        # no longer depends on the change, so small changes walk at random until they leave it (hand val: no
        # still frame left, AV-Align 0.10 where the same threshold on a G trained without it gave 0.18).
        if self.deadzone <= 0 or self.training:
            return frames
        return base + shrink(frames - base, self.deadzone)

    def _changed(self, out: torch.Tensor, *, base: torch.Tensor) -> torch.Tensor:
        if self.residual_mode == "atanh":
            return torch.tanh(torch.atanh(base) + out)
        if self.residual_mode == "linear":
            return base + out
        # blend (after GANimation's attention mask): new content tanh(c) takes a share sigmoid(s) of each pixel. Where an
        # event in the base must go, a sloppy share shows the content painted there (the scene behind it), not the black
        # or white ring that a large offset spilling past the event leaves with atanh or linear.
        content, share = torch.tanh(out[:, :-1]), torch.sigmoid(out[:, -1:])
        return base + share * (content - base)
