"""S2VGenerator: the sound encoder SE and the U-Net G together, the part that generates.

`forward(image, spec)` is the whole generator: image (B,3,64,64) in [-1,1] and the
(B,T,F) slot spectrogram of `audio.slot_spectrogram` -> video (B,T,3,64,64) in [-1,1].
The BLSTM reads the whole sound, so any T works (a long sound at generate time). With
`previous_frame`, frames are made one after another, each from the one before.
"""

from __future__ import annotations

import torch
from torch import nn

from s2vmodel.config import ModelConfig
from s2vmodel.nets import ImageDiscriminator, SoundEncoder, UNetGenerator, VideoDiscriminator


class S2VGenerator(nn.Module):
    """SE + G: one image and a sound -> one frame per sound slot."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.sound_encoder = SoundEncoder(bins=config.spec_bins, hidden=config.se_hidden, layers=config.se_layers)
        self.generator = UNetGenerator(
            feat_dim=config.feat_dim,
            ngf=config.ngf,
            depth=config.g_depth,
            norm=config.g_norm,
            sound_levels=config.sound_levels,
            residual=config.residual,
            residual_mode=config.residual_mode,
            previous=config.previous_frame,
            previous_base=config.previous_base,
            deadzone=config.deadzone,
            noise=config.noise,
        )

    def encode_sound(self, spec: torch.Tensor) -> torch.Tensor:
        """Return (B, T, D) BLSTM features of a (B, T, F) spectrogram (zero initial states)."""
        return self.sound_encoder(spec)

    def draw_noise(self, image: torch.Tensor, *, seed: int = 0) -> torch.Tensor | None:
        """Return the random map (B, noise, H, W) a G built with `noise` channels sees, drawn from `seed`; None without.

        Standard normal, one map per clip; the same seed gives the same map, so generating is repeatable.
        """
        if not self.config.noise:
            return None
        gen = torch.Generator().manual_seed(seed)
        B, _, H, W = image.shape
        return torch.randn(B, self.config.noise, H, W, generator=gen).to(image.device, image.dtype)

    def generate_frames(
        self, image: torch.Tensor, feats: torch.Tensor, previous: torch.Tensor | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return (B, T, 3, H, W) frames in [-1, 1] for image (B, 3, H, W) and feats (B, T, D).

        With `previous_frame`, frame t is made from frame t-1 as generated (frame 0 from
        `previous` (B, 3, H, W), by default the input image itself), one frame at a time.
        With `noise` channels, `noise` is the clip's random map (draw_noise's, seed 0, when not given).
        """
        if self.config.noise and noise is None:
            noise = self.draw_noise(image)
        if not self.config.previous_frame:
            return self.generator(image, feats, noise=noise)
        frame = image if previous is None else previous
        frames = []
        for t in range(feats.shape[1]):
            frame = self.generator(image, feats[:, t : t + 1], frame[:, None], noise)[:, 0]
            frames.append(frame)
        return torch.stack(frames, dim=1)

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """Return the (B, T, 3, H, W) video in [-1, 1] for image (B, 3, H, W) and spec (B, T, F)."""
        return self.generate_frames(image, self.encode_sound(spec))


def build_discriminators(config: ModelConfig) -> tuple[ImageDiscriminator, VideoDiscriminator]:
    """Return (D_I, D_V) for config."""
    d_image = ImageDiscriminator(ndf=config.ndf, norm=config.d_norm)
    d_video = VideoDiscriminator(ndf=config.ndf, norm=config.d_norm)
    return d_image, d_video
