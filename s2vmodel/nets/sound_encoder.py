"""SE: per-slot spectrogram -> bidirectional LSTM -> one sound feature per frame (paper 2.1)."""

from __future__ import annotations

import torch
from torch import nn


class SoundEncoder(nn.Module):
    """BLSTM over the whole sound, zero initial states; any number of slots T."""

    def __init__(self, *, bins: int, hidden: int, layers: int = 1) -> None:
        super().__init__()
        # a linear projection first: 736 raw bins straight into the LSTM gates would dominate its size
        self.project = nn.Linear(bins, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Return (B, T, 2*hidden) features for a (B, T, F) spectrogram."""
        x = nn.functional.leaky_relu(self.project(spec), 0.2)  # (B, T, hidden)
        # no (h0, c0) passed: PyTorch starts both directions from zeros, as the paper does
        feats, _ = self.lstm(x)  # (B, T, 2*hidden)
        return feats
