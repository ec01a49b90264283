"""Checkpoints: plain dicts of state dicts, settings as plain values, RNG states as tensors.

Layout (docs/design.md section 8), every value loadable with torch.load(..., weights_only=True):
    step            int, optimisation steps completed
    config          the run's Config as nested plain dicts
    generator       S2VGenerator state dict (SE + G)
    generator_ema   EMA of the generator weights (only when train.ema > 0)
    d_image, d_video, opt_g, opt_d   state dicts
    rng             {"torch": ByteTensor, "picks": [ByteTensor per rank], "cuda": [ByteTensor, ...]}
    data            int64 tensor (ranks, 1 + 2 * workers): each rank's data position
    format          int, layout version
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from s2vmodel.config import Config, ConfigError, ModelConfig, config_from_dict
from s2vmodel.model import S2VGenerator

log = logging.getLogger(__name__)

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or not an s2v checkpoint."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Return path after writing state there atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({**state, "format": FORMAT}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Return the checkpoint dict at path, loaded with weights_only=True (no code can run)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train first, or pass the path of a .pt file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: cannot read it as a checkpoint ({reason[:200]}): pass a .pt file of `s2vmodel train`"
        ) from err
    if not isinstance(state, dict) or "generator" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not an s2v checkpoint (no generator/config entries): pass a .pt file of `s2vmodel train`")
    return state


def checkpoint_config(state: dict[str, Any]) -> Config:
    """Return the run Config stored in a checkpoint dict."""
    return config_from_dict(state["config"])


def load_generator(path: Path, *, map_location: str | torch.device = "cpu") -> tuple[S2VGenerator, ModelConfig]:
    """Return (generator in eval mode, its ModelConfig) from a checkpoint; EMA weights when present."""
    state = load_checkpoint(path, map_location=map_location)
    try:
        config = checkpoint_config(state).model
        model = S2VGenerator(config)
        model.load_state_dict(state.get("generator_ema") or state["generator"])
    except (ConfigError, RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: its generator does not load ({reason[:200]}): was it written by another s2v version?"
        ) from err
    model.to(map_location)
    model.eval()
    return model, config
