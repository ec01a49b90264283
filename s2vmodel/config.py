"""Every setting of the model and of a training run, as frozen dataclasses, and the presets.

Presets are plain data (nested dicts of overrides), so tuning the `tiny` preset is a
data change: edit PRESETS, or pass `--config FILE` / `--set section.field=value`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """The networks: sound encoder SE, U-Net generator G, discriminators D_I and D_V."""

    hop: int = 1470  # samples per frame slot (F_S / F_I = 44100 / 30)
    n_fft: int = 1470  # STFT window: exactly one slot's samples, as the paper (F_I/F_S seconds)
    se_hidden: int = 256  # BLSTM hidden size per direction; the sound feature is 2x this
    se_layers: int = 1  # stacked BLSTM layers
    ngf: int = 64  # generator base channels (pix2pix U-Net widths 64-128-256-512)
    g_depth: int = 4  # U-Net down-sampling steps: 64 px -> 64 / 2**depth at the bottleneck
    g_norm: str = "batch"  # generator normalisation: batch | instance | none
    sound_levels: int = 1  # U-Net levels modulated by the sound feature, from the bottleneck up (1 = bottleneck only)
    residual: bool = False  # G predicts a change of the input image (or of the previous frame, with previous_frame)
    residual_mode: str = (
        "atanh"  # how a residual G changes it: atanh (tanh(atanh(base) + out)) | linear (base + out) | blend (see nets)
    )
    previous_frame: bool = (
        False  # G also sees the frame before each frame (its own, when generating): the paper's recursive extension
    )
    deadzone: float = 0.0  # residual G, generating: changes of the base up to this size ([-1, 1] scale) become 0 (see nets)
    previous_base: bool = True  # with previous_frame: a residual G changes the previous frame (true) or the input image
    noise: int = 0  # channels of a random map G sees beside the input image, one per clip (0 = none, the paper)
    ndf: int = 64  # discriminator base channels (MoCoGAN: 64-128-256)
    d_norm: str = "batch"  # discriminator normalisation: batch (MoCoGAN) | instance | spectral | none
    video_frames: int = 16  # T: consecutive frames D_V judges
    image_size: int = 64  # generated frame side in pixels

    @property
    def spec_bins(self) -> int:
        """Frequency bins of the slot spectrogram (n_fft // 2 + 1)."""
        return self.n_fft // 2 + 1

    @property
    def feat_dim(self) -> int:
        """Size of the per-frame sound feature (both BLSTM directions)."""
        return 2 * self.se_hidden


@dataclass(frozen=True)
class DataConfig:
    """How clips become training samples (paper section 3.2)."""

    split: str = "train"  # manifest split to train on
    frames: int = 100  # consecutive frames used out of the clip's 120 (random start)
    crop: int = 256  # random crop side out of the 286 px frame, the same for the whole clip
    cache: str = "data/cache"  # decoded 72x72 cache folder ("" = stream and decode the shards)
    workers: int = 1  # DataLoader worker processes per rank
    shuffle_buffer: int = 16  # clips held by each worker's shuffle buffer when streaming shards
    val_clips: int = 2  # clips in the fixed batch on which metrics report L1


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation and the run's bookkeeping."""

    steps: int = 100_000  # total optimisation steps of the run
    batch_size: int = 2  # clips per step (per rank)
    lr: float = 2e-4  # Adam learning rate (G, SE and both D)
    beta1: float = 0.5  # Adam beta1
    beta2: float = 0.999  # Adam beta2
    lambda_image: float = 1.0  # weight of the D_I adversarial loss
    lambda_video: float = 1.0  # weight of the D_V adversarial loss
    lambda_l1: float = 1.0  # weight of the L1 reconstruction loss over all frames
    lambda_motion: float = 0.0  # weight of an extra L1 weighted by each pixel's motion from the input image (0 = paper)
    motion_symmetric: bool = False  # that weight is the real or the generated pixel's motion, the larger (see losses.py)
    lambda_temporal: float = 0.0  # weight of the L1 of frame-to-frame changes against the real ones (0 = paper)
    lambda_content: float = 0.0  # with model.residual_mode blend: weight of the motion-weighted L1 of its content alone
    loss: str = "bce"  # adversarial loss: bce (the paper's log form, non-saturating G) | hinge
    image_frames: int = 1  # frames per clip that D_I judges (Gamma_1: one)
    scheduled_sampling: float = (
        0.0  # with model.previous_frame: largest share of previous frames taken from G's own guess (0 = teacher forcing)
    )
    scheduled_ramp: int = (
        300  # steps over which that share rises from 0 (a step count, not a share of the run: resumes stay exact)
    )
    ema: float = 0.0  # G weight EMA decay (0 = off); the EMA weights are what load_generator returns
    samples: int = 1  # with model.noise: videos per clip, each from its own noise; L1 terms count the closest (min of K)
    seed: int = 0  # seeds weights, data order and augmentation
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = False  # bf16 autocast on CUDA (ignored on CPU)
    threads: int = 0  # torch CPU threads per rank (0 = torch's default); 1 is far faster on a busy machine
    log_every: int = 50  # steps between metrics lines
    sample_every: int = 1000  # steps between sample strips and videos
    ckpt_every: int = 500  # steps between writes of checkpoints/latest.pt
    snapshot_every: int = 5000  # steps between kept checkpoints/step-NNNNNN.pt (0 = none)


@dataclass(frozen=True)
class Config:
    """A whole run: model, data and training settings."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "paper"  # which preset the values started from

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain nested dicts (JSON- and weights_only-safe)."""
        return asdict(self)


# The paper's settings are the dataclass defaults; other presets only list what differs.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {},
    "tiny": {
        "model": {
            "n_fft": 1470,
            "se_hidden": 32,
            "ngf": 8,
            "g_depth": 4,
            "g_norm": "batch",
            "sound_levels": 4,
            "residual": True,
            # changes under 4 grey levels are not drawn: quiet frames are the input's pixels (see nets.generator)
            "deadzone": 0.03,
            # a random map per clip: with the closest of 4 samples (train.samples), G draws a burst at a place of its
            # own instead of a glow over every place the sound cannot tell (fresh burst scenes: FVD 24.2 against 31.6)
            "noise": 1,
            "ndf": 16,
            "d_norm": "spectral",
        },
        "data": {"workers": 1},
        "train": {
            "steps": 600,
            "lr": 5e-4,
            "lambda_image": 0.05,
            "lambda_video": 0.05,
            "lambda_l1": 10.0,
            "lambda_motion": 3.0,
            "loss": "hinge",
            "image_frames": 4,
            # the EMA of G's weights generates: its flashes are steadier (bursts val FVD 26.9 against 38.3 without)
            "ema": 0.99,
            "samples": 4,
            "log_every": 10,
            "sample_every": 200,
            "ckpt_every": 100,
            "snapshot_every": 0,
            # one compute thread leaves the second core to the data worker
            "threads": 1,
        },
    },
}

# the paper's recursive extension measured against tiny: tiny's values, and G also sees its previous frame
PRESETS["tiny-prev"] = {
    "model": {**PRESETS["tiny"]["model"], "previous_frame": True, "previous_base": False},
    "data": dict(PRESETS["tiny"]["data"]),
    "train": {**PRESETS["tiny"]["train"], "scheduled_sampling": 0.5, "scheduled_ramp": 300},
}

_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


class ConfigError(ValueError):
    """A setting that does not exist or has a value of the wrong kind."""


def _coerce(value: Any, *, current: Any, name: str) -> Any:
    """Return value converted to the type of the field's current value."""
    kind = type(current)
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        try:
            return kind(float(text)) if kind is int and "e" in text.lower() else kind(text)
        except ValueError as err:
            raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}") from err
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind):
        raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Return config with nested overrides {section: {field: value}} applied, types checked."""
    for section, values in overrides.items():
        if section == "preset":
            config = replace(config, preset=str(values))
            continue
        if section not in _SECTIONS or not isinstance(values, dict):
            raise ConfigError(f"unknown config section {section!r}: use one of {sorted(_SECTIONS)}")
        current = getattr(config, section)
        known = {f.name for f in fields(current)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown setting {section}.{key}: known are {sorted(known)}")
            changes[key] = _coerce(value, current=getattr(current, key), name=f"{section}.{key}")
        config = replace(config, **{section: replace(current, **changes)})
    return config


def parse_assignments(items: list[str]) -> dict[str, dict[str, str]]:
    """Return nested overrides from `section.field=value` strings (the CLI's --set)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: write section.field=value, e.g. train.lr=1e-4")
        out.setdefault(section, {})[name] = value
    return out


def load_config_file(path: Path) -> dict[str, Any]:
    """Return the nested overrides in a TOML or JSON file."""
    try:
        text = Path(path).read_text()
        data = json.loads(text) if Path(path).suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: cannot read it as a TOML or JSON config ({reason})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds sections, e.g. [train] lr = 1e-4")
    return data


def resolve_config(*, preset: str = "paper", files: list[Path] | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Return the config of a preset, then config files, then command-line overrides, applied in order."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: use one of {sorted(PRESETS)}")
    config = apply_overrides(Config(preset=preset), PRESETS[preset])
    for path in files or []:
        config = apply_overrides(config, load_config_file(path))
    config = apply_overrides(config, overrides or {})
    if config.train.samples < 1 or (config.train.samples > 1 and config.model.noise < 1):
        raise ConfigError(
            f"train.samples {config.train.samples}: must be 1, or more with model.noise > 0 (samples differ only by their noise)"
        )
    return config


def config_from_dict(data: dict[str, Any]) -> Config:
    """Return the Config saved as plain dicts (config.json or a checkpoint's `config`)."""
    return apply_overrides(Config(), {k: v for k, v in data.items() if k in _SECTIONS or k == "preset"})
