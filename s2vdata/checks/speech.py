"""Speech in a window: silero-vad's pretrained voice-activity model, run in numpy on the sound the build decoded.

The model's weights ship inside the `silero-vad` wheel (installed with `pip
install --no-deps silero-vad`: its declared torchaudio and onnxruntime
dependencies are not needed here). The check reads them from the wheel's
TorchScript archive (a zip of pickles: read with a restricted unpickler that
builds nothing but plain objects and numpy arrays) and runs the network's
forward in numpy: no torch import in a build worker (that alone cost ~2.6 s
per worker process), nothing ever downloaded. The weights are read once per
process, on first use (~20 ms).

The network reads 16 kHz sound in chunks of 512 samples (32 ms), each with the
64 samples before it: a 256-point STFT (periodic Hann window, hop 128, the
chunk reflect-padded by 64 at its end: 4 frames), the magnitude of its 129
bins, four 3-tap convolutions with ReLU (strides 1, 2, 2, 1), an LSTM cell
carried from chunk to chunk, ReLU and a 1x1 convolution to one logit. The
encoder is stateless per chunk, so it runs on a window's 125 chunks as one
batch (matrix products); only the LSTM steps one chunk at a time.
`tests/test_checks_recorded.py` checks the result against the wheel's own
TorchScript model on recorded speech (equal within 1e-4).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import logging
import pickle
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VAD_RATE = 16_000
CHUNK = 512  # samples per model step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model sees with each chunk
INSTALL = "pip install --no-deps silero-vad==6.2.3"
# A chunk with a voice probability at or above this is speech (silero's own default threshold).
SPEECH_P = 0.5
WEIGHTS = ("data", "silero_vad.jit")  # inside the silero_vad package: a TorchScript archive (a zip of pickles)
_N_FFT, _HOP = 256, 128
_SHAPES = {
    "stft_conv.weight": (258, 1, 256),
    "conv1.weight": (128, 129, 3),
    "conv1.bias": (128,),
    "conv2.weight": (64, 128, 3),
    "conv2.bias": (64,),
    "conv3.weight": (64, 64, 3),
    "conv3.bias": (64,),
    "conv4.weight": (128, 64, 3),
    "conv4.bias": (128,),
    "lstm_cell.weight_ih": (512, 128),
    "lstm_cell.weight_hh": (512, 128),
    "lstm_cell.bias_ih": (512,),
    "lstm_cell.bias_hh": (512,),
    "final_conv.weight": (1, 128, 1),
    "final_conv.bias": (1,),
}

_MODEL = None


class SpeechModelMissing(ImportError):
    """The voice-activity model is not installed: the message says how to install it (an ImportError: a missing install)."""


def model_path() -> Path:
    """Returns the path of silero-vad's 16 kHz weights inside the installed wheel (without importing the package).

    Raises SpeechModelMissing with the install command when they are not there.
    """
    spec = importlib.util.find_spec("silero_vad")
    path = Path(spec.origin).parent.joinpath(*WEIGHTS) if spec and spec.origin else None
    if path is None or not path.is_file():
        raise SpeechModelMissing(
            f"the speech check needs silero-vad's model (weights ship in its wheel): run `{INSTALL}` "
            "(or `make setup`) in the environment that runs s2vdata"
        )
    return path


def ensure_model() -> None:
    """Returns None once the voice model's weights are installed and readable; raises SpeechModelMissing (with the
    install command) otherwise.

    Cheap (reads the weights once per process): a build calls it before it starts any work, so a missing model
    stops the build at once instead of failing every source.
    """
    load_model()


class _Module:
    """A TorchScript module's attributes, as its archive's pickle gives them (no code runs)."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_rest) -> np.ndarray:
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=tuple(itemsize * s for s in stride))
    return np.array(view)  # a copy: the weights outlive the archive's buffers


_STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "LongStorage": "<i8", "IntStorage": "<i4", "BoolStorage": "?"}


class _Unpickler(pickle.Unpickler):
    """Reads a TorchScript archive's data.pkl into plain objects and numpy arrays, allowing nothing else to be built."""

    def __init__(self, file, *, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__."):
            return _Module
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a TorchScript archive")

    def persistent_load(self, pid):
        kind, dtype, key, _location, _numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return np.frombuffer(self.archive.read(f"{self.prefix}/data/{key}"), dtype=dtype)


def read_torchscript(path: Path) -> _Module:
    """Returns the module tree of a TorchScript archive (attributes and weights as numpy arrays), without torch."""
    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        prefix = pkl[: -len("/data.pkl")]
        with archive.open(pkl) as f:
            return _Unpickler(f, archive=archive, prefix=prefix).load()


def _weights(path: Path) -> dict[str, np.ndarray]:
    """Returns the 16 kHz network's weights from silero-vad's TorchScript archive, under the names of _SHAPES."""
    core = read_torchscript(path)._model
    w = {"stft_conv.weight": core.stft.forward_basis_buffer}
    for k in range(4):
        conv = getattr(core.encoder, str(k)).reparam_conv
        w[f"conv{k + 1}.weight"], w[f"conv{k + 1}.bias"] = conv.weight, conv.bias
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        w[f"lstm_cell.{name}"] = getattr(core.decoder.rnn, name)
    head = getattr(core.decoder.decoder, "2")  # Dropout, ReLU, Conv1d(128 -> 1, k=1), Sigmoid
    w["final_conv.weight"], w["final_conv.bias"] = head.weight, head.bias
    return w


class _Vad:
    """silero-vad's 16 kHz network, forward in numpy, batched over a window's chunks."""

    def __init__(self, path: Path):
        try:
            w = _weights(path)
            bad = {k: tuple(w[k].shape) for k in _SHAPES if tuple(np.shape(w[k])) != _SHAPES[k]}
        except (OSError, ValueError, KeyError, AttributeError, StopIteration, pickle.UnpicklingError, zipfile.BadZipFile) as e:
            raise SpeechModelMissing(f"{path}: silero-vad's weights cannot be read ({e}): reinstall, `{INSTALL}`") from e
        if bad:
            raise SpeechModelMissing(
                f"{path}: silero-vad's weights have another layout than this check reads ({bad}): `{INSTALL}`"
            )
        # the STFT is a convolution with a (258, 1, 256) basis: the real then imaginary parts of a 256-point DFT
        # times a periodic Hann window; its magnitude is |rfft(frame x window)|, which numpy's FFT takes for
        # a third of a matrix product's cost (the same magnitudes within 2e-6)
        basis = w["stft_conv.weight"][:, 0, :].astype(np.float64)
        self.window = basis[0].astype(np.float32)  # the k = 0 row: cos 0 = 1 times the window
        t = np.arange(_N_FFT)[None, :] * np.arange(_N_FFT // 2 + 1)[:, None] * (2 * np.pi / _N_FFT)
        dft = np.concatenate([np.cos(t), -np.sin(t)]) * basis[0]
        if np.abs(np.abs(basis) - np.abs(dft)).max() > 1e-6:
            raise SpeechModelMissing(f"{path}: silero-vad's STFT is not a windowed DFT any more: `{INSTALL}`")
        # each convolution as one (in, out) matrix per tap
        self.conv = {}
        for k in (1, 2, 3, 4):
            weight = w[f"conv{k}.weight"]  # (out, in, 3)
            self.conv[k] = (np.ascontiguousarray(weight.transpose(2, 1, 0)), w[f"conv{k}.bias"])  # (3, in, out)
        self.w_ih = np.ascontiguousarray(w["lstm_cell.weight_ih"].T)  # (128, 512)
        self.w_hh = np.ascontiguousarray(w["lstm_cell.weight_hh"].T)
        self.b = w["lstm_cell.bias_ih"] + w["lstm_cell.bias_hh"]
        self.head_w = w["final_conv.weight"].reshape(-1)
        self.head_b = float(w["final_conv.bias"][0])

    def _conv(self, x: np.ndarray, k: int, *, stride: int) -> np.ndarray:
        """Returns relu(conv1d(x)) for x (n, T, in) channels-last, 3 taps, padding 1."""
        taps, bias = self.conv[k]
        n, t, _ = x.shape
        padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
        t_out = (t - 1) // stride + 1
        out = bias + sum(padded[:, j : j + stride * (t_out - 1) + 1 : stride] @ taps[j] for j in range(3))
        return np.maximum(out, 0.0, dtype=np.float32)

    def encode(self, chunks: np.ndarray) -> np.ndarray:
        """Returns the encoder's features (n, 128) of n chunks of CONTEXT + CHUNK samples each."""
        x = np.pad(chunks, ((0, 0), (0, CONTEXT)), mode="reflect")  # (n, 640)
        idx = np.arange(_N_FFT)[None, :] + _HOP * np.arange((x.shape[1] - _N_FFT) // _HOP + 1)[:, None]
        frames = x[:, idx] * self.window  # (n, 4, 256)
        mag = np.abs(np.fft.rfft(frames, axis=-1)).astype(np.float32)  # (n, 4, 129)
        h = self._conv(mag, 1, stride=1)
        h = self._conv(h, 2, stride=2)
        h = self._conv(h, 3, stride=2)
        h = self._conv(h, 4, stride=1)
        return h[:, 0, :]

    def __call__(self, x16: np.ndarray) -> np.ndarray:
        """Returns the voice probability of each 512-sample chunk of 16 kHz mono sound (the last chunk zero-padded)."""
        with _one_blas_thread():
            return self._forward(np.asarray(x16, dtype=np.float32))

    def _forward(self, x16: np.ndarray) -> np.ndarray:
        n = -(-len(x16) // CHUNK)
        if n == 0:
            return np.zeros(0, np.float32)
        padded = np.zeros(CONTEXT + n * CHUNK, np.float32)
        padded[CONTEXT : CONTEXT + len(x16)] = x16
        idx = np.arange(CONTEXT + CHUNK)[None, :] + CHUNK * np.arange(n)[:, None]
        gates_in = self.encode(padded[idx]) @ self.w_ih + self.b  # (n, 512): the input half of every step at once
        h = np.zeros(128, np.float32)
        c = np.zeros(128, np.float32)
        hs = np.empty((n, 128), np.float32)
        w_hh = self.w_hh
        with np.errstate(over="ignore"):  # exp(-g) overflows to inf for a saturated gate: its sigmoid is then 0, exactly
            for t in range(n):
                g = gates_in[t] + h @ w_hh  # torch's LSTMCell order: input, forget, cell, output gates
                sig = 1.0 / (1.0 + np.exp(-g))
                c = sig[128:256] * c + sig[:128] * np.tanh(g[256:384])
                h = sig[384:] * np.tanh(c)
                hs[t] = h
        logit = np.maximum(hs, 0.0) @ self.head_w + self.head_b
        return _sigmoid(logit).astype(np.float32)


@contextlib.contextmanager
def _one_blas_thread():
    """Runs the block with numpy's OpenBLAS on one thread in this thread only (if numpy's BLAS is OpenBLAS >= 0.3.27).

    The matrices are small: a second BLAS thread spins more CPU than it saves
    (2x the CPU time on 2 cores), and build workers already run side by side.
    """
    setter = _blas_setter()
    previous = setter(1) if setter else None
    try:
        yield
    finally:
        if setter and previous is not None and previous > 0:
            setter(previous)


@functools.cache
def _blas_setter():
    """Returns OpenBLAS's thread-local `openblas_set_num_threads_local` from numpy's own copy, or None."""
    folder = Path(np.__file__).parent.parent / "numpy.libs"
    for lib in sorted(folder.glob("*openblas*.so*")) if folder.is_dir() else []:
        try:
            fn = ctypes.CDLL(str(lib)).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for a very negative x: the sigmoid is then 0, exactly
        return 1.0 / (1.0 + np.exp(-x))


def load_model() -> _Vad:
    """Returns the process's voice-activity model, reading its weights on first use (SpeechModelMissing if not installed)."""
    global _MODEL
    if _MODEL is None:
        _MODEL = _Vad(model_path())
    return _MODEL


def resample(audio: np.ndarray, *, sample_rate: int, rate: int = VAD_RATE) -> np.ndarray:
    """Returns mono float32 sound resampled from sample_rate to rate (FFT band limit: nothing above rate/2 survives)."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sample_rate == rate or len(x) == 0:
        return x.copy()
    n_out = int(round(len(x) * rate / sample_rate))
    spec = np.fft.rfft(x.astype(np.float64))  # numpy's float64 FFT is the faster one here
    keep = n_out // 2 + 1
    out = np.fft.irfft(spec[:keep], n_out) * (n_out / len(x))
    return out.astype(np.float32)


def voice_curve(x16: np.ndarray, *, n_slots: int, slot_s: float) -> np.ndarray:
    """Returns the voice probability per frame slot, shape (n_slots,), 0..1, of 16 kHz mono sound.

    The model's 32 ms chunk probabilities are read at each slot's centre
    (linear interpolation); slot i spans [i * slot_s, (i + 1) * slot_s) seconds.
    """
    if n_slots <= 0:
        return np.zeros(0, np.float32)
    x = np.zeros(int(round(n_slots * slot_s * VAD_RATE)), np.float32)
    a = np.asarray(x16, dtype=np.float32)[: len(x)]
    x[: len(a)] = a
    p = load_model()(x)
    chunk_t = (np.arange(len(p)) + 0.5) * CHUNK / VAD_RATE
    slot_t = (np.arange(n_slots) + 0.5) * slot_s
    return np.interp(slot_t, chunk_t, p).astype(np.float32)
