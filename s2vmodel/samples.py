"""Sample outputs of a run: the Figure-2-style strip (PNG) and generated-beside-real video with sound."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from s2vdata.clips import write_video

# the paper's Figure 2 frame colours: input image green, generated orange, original red (RGB)
GREEN, ORANGE, RED = (40, 180, 40), (255, 150, 0), (220, 30, 30)


def to_uint8(video: np.ndarray) -> np.ndarray:
    """Return (T, H, W, 3) uint8 frames from a (T, 3, H, W) float video in [-1, 1]."""
    return np.clip((video.transpose(0, 2, 3, 1) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def _tile(img: np.ndarray, colour: tuple[int, int, int], *, scale: int) -> np.ndarray:
    big = cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    return cv2.copyMakeBorder(big, 3, 3, 3, 3, cv2.BORDER_CONSTANT, value=colour)


def write_strip(
    path: Path, *, image: np.ndarray, generated: np.ndarray, real: np.ndarray, every: int = 20, scale: int = 2
) -> Path:
    """Return path after writing the strip: input image, then generated frames every `every` above the real ones.

    image: (H, W, 3) uint8; generated, real: (T, H, W, 3) uint8.
    """
    picks = list(range(0, len(generated), every))
    blank = np.full((image.shape[0] * scale + 6, image.shape[1] * scale + 6, 3), 255, np.uint8)
    top = [_tile(image, GREEN, scale=scale)] + [_tile(generated[t], ORANGE, scale=scale) for t in picks]
    bottom = [blank] + [_tile(real[t], RED, scale=scale) for t in picks]
    strip = np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.png")
    cv2.imwrite(str(tmp), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    tmp.replace(path)
    return path


def write_pair_video(
    path: Path, *, generated: np.ndarray, real: np.ndarray, audio: np.ndarray, fps: int = 30, scale: int = 2
) -> Path:
    """Return path after writing generated | real side by side with the clip's sound muxed in.

    generated, real: (T, H, W, 3) uint8; audio: (T * 1470,) float32 in [-1, 1].
    """
    pairs = (
        cv2.resize(np.concatenate([g, r], axis=1), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        for g, r in zip(generated, real, strict=True)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, pairs, np.clip(audio, -1, 1).astype(np.float32), fps=fps)
