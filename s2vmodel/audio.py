"""Waveform -> per-frame-slot magnitude spectrogram (pure torch, no state).

The paper (section 2.1) takes an STFT over F_I/F_S seconds of sound per frame, so there is
one spectrogram column per frame slot: column t is the magnitude spectrum of samples
[1470*t, 1470*(t+1)), the samples that docs/design.md section 4 pairs with frame t.

Choices made here (the paper does not state them):
- rectangular window over exactly the slot's samples (no centring, no overlap), so a click
  at a slot's edge still counts fully in its own slot and never leaks into a neighbour;
- magnitudes are compressed with log1p and divided by log1p(n_fft), so a full-scale
  sine lands near 1 and silence at 0, whatever n_fft is.
The waveform is expected peak-normalised to [-1, 1] per clip first (`peak_normalize`),
as the paper does.
"""

from __future__ import annotations

import math

import torch


def peak_normalize(wave: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """Return wave scaled so that its peak absolute amplitude is 1 (per row of a (B, n) batch)."""
    peak = wave.abs().amax(dim=-1, keepdim=True)
    # a silent clip stays silent instead of being blown up to noise
    return torch.where(peak > eps, wave / peak.clamp_min(eps), wave)


def slot_spectrogram(wave: torch.Tensor, *, hop: int = 1470, n_fft: int = 1470) -> torch.Tensor:
    """Return the (B, T, F) log-magnitude spectrogram, one column per frame slot of `hop` samples.

    wave: (B, n) or (n,) float in [-1, 1]. T = ceil(n / hop): a trailing partial slot is
    zero-padded. F = n_fft // 2 + 1. When n_fft > hop, the window of slot t starts at the
    slot and runs on into the next slots (zero-padded at the end).
    """
    if wave.dim() == 1:
        wave = wave.unsqueeze(0)
    if wave.dim() != 2:
        raise ValueError(f"slot_spectrogram expects (B, n) audio, got shape {tuple(wave.shape)}")
    n = wave.shape[-1]
    slots = max(1, math.ceil(n / hop))
    # pad so that exactly `slots` windows of n_fft fit at stride hop
    pad = (slots - 1) * hop + n_fft - n
    wave = torch.nn.functional.pad(wave.float(), (0, pad))
    window = torch.ones(n_fft, device=wave.device)
    spec = torch.stft(
        wave, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=window, center=False, return_complex=True
    )  # (B, F, slots)
    mag = spec.abs().transpose(1, 2)  # (B, T, F)
    return torch.log1p(mag) / math.log1p(n_fft)
