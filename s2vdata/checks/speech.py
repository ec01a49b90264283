"""Speech in a window: silero-vad's pretrained voice-activity model, run on the sound the build decoded.

The model (weights inside the `silero-vad` wheel, installed with `pip install
--no-deps silero-vad`: its declared torchaudio and onnxruntime dependencies are
not needed here) is loaded once per process, on first use; torch is imported
only then, so `s2vdata` starts fast. Nothing is ever downloaded.

The model reads 16 kHz sound in chunks of 512 samples (32 ms), each with the
64 samples before it, through a stateless convolutional encoder and an LSTM
decoder. Called chunk by chunk from Python it costs ~100 ms per 4-second
window; here the encoder runs on all 125 chunks of a window in one batch and
the decoder's LSTM cell runs as one LSTM over the sequence, the same
arithmetic in three calls (~5 ms). `load_model` checks that shortcut against
the model's own chunk-by-chunk forward once, and falls back to it (with a
warning) if a future wheel changes the model's layout.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VAD_RATE = 16_000
CHUNK = 512  # samples per model step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model sees with each chunk
INSTALL = "pip install --no-deps silero-vad==6.2.3"
# A chunk with a voice probability at or above this is speech (silero's own default threshold).
SPEECH_P = 0.5

_MODEL = None


class SpeechModelMissing(RuntimeError):
    """The voice-activity model is not installed: the message says how to install it."""


def model_path() -> Path:
    """Returns the path of silero-vad's TorchScript model inside the installed wheel (without importing the package).

    Raises SpeechModelMissing with the install command when it is not there.
    """
    spec = importlib.util.find_spec("silero_vad")
    path = Path(spec.origin).parent / "data" / "silero_vad.jit" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise SpeechModelMissing(
            f"the speech check needs silero-vad's model (weights ship in its wheel): run `{INSTALL}` "
            "(or `make setup`) in the environment that runs s2vdata"
        )
    return path


class _Vad:
    """silero-vad's 16 kHz model with a batched forward over a whole window."""

    def __init__(self, path: Path):
        import torch  # only here: s2vdata must start fast without torch

        self.torch = torch
        try:
            self.jit = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, OSError) as e:
            raise SpeechModelMissing(f"{path}: silero-vad's model cannot be loaded ({e}); reinstall it: `{INSTALL}`") from e
        probe = np.random.default_rng(0).normal(0, 0.1, 8 * CHUNK).astype(np.float32)
        probe[2 * CHUNK : 5 * CHUNK] += np.sin(2 * np.pi * 220 * np.arange(3 * CHUNK) / VAD_RATE).astype(np.float32) * 0.5
        try:
            self._split()
            self.fast = bool(np.allclose(self._fast(probe), self._slow(probe), atol=1e-4))
        except (AttributeError, RuntimeError, NotImplementedError):
            self.fast = False
        if not self.fast:
            log.warning(
                "silero-vad's model layout differs from the one the batched forward was written for: "
                "using its own chunk-by-chunk forward (about 20x slower)"
            )

    def _split(self) -> None:
        """Takes the model apart: encoder (stateless per chunk), LSTM cell (as an LSTM over a sequence), output head."""
        torch = self.torch
        core = self.jit._model
        self.extract, self.encoder = core.run_extractors, core.encoder
        cell = core.decoder.rnn
        self.lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1], batch_first=True)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{name}_l0").copy_(getattr(cell, name))
        head = getattr(core.decoder.decoder, "2")  # Dropout, ReLU, Conv1d(128 -> 1, k=1), Sigmoid
        self.head_w = head.weight.detach().reshape(-1).clone()
        self.head_b = head.bias.detach().reshape(()).clone()

    def _slow(self, x16: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            self.jit.reset_states()
            out = self.jit.audio_forward(torch.from_numpy(x16).unsqueeze(0), VAD_RATE)
        return out.numpy().reshape(-1)

    def _fast(self, x16: np.ndarray) -> np.ndarray:
        torch = self.torch
        n = -(-len(x16) // CHUNK)
        padded = np.zeros(CONTEXT + n * CHUNK, np.float32)
        padded[CONTEXT : CONTEXT + len(x16)] = x16
        idx = np.arange(CONTEXT + CHUNK)[None, :] + CHUNK * np.arange(n)[:, None]
        with torch.no_grad():
            feats = self.encoder(self.extract(torch.from_numpy(padded[idx])))  # (n, 128, 1)
            h, _ = self.lstm(feats.squeeze(-1).unsqueeze(0))  # (1, n, 128)
            p = torch.sigmoid(torch.relu(h[0]) @ self.head_w + self.head_b)
        return p.numpy()

    def __call__(self, x16: np.ndarray) -> np.ndarray:
        """Returns the voice probability of each 512-sample chunk of 16 kHz mono sound."""
        torch = self.torch
        threads = torch.get_num_threads()
        # a tiny model: one thread is fastest, and build workers run side by side
        torch.set_num_threads(1)
        try:
            return self._fast(x16) if self.fast else self._slow(x16)
        finally:
            torch.set_num_threads(threads)


def load_model() -> _Vad:
    """Returns the process's voice-activity model, loading it on first use (raises SpeechModelMissing if not installed)."""
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
    spec = np.fft.rfft(x)
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
