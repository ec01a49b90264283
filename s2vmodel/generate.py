"""One image and one sound become a video that moves with the sound, with the sound muxed in.

The sound is read whole (any container, rate and channel count, resampled to
44.1 kHz mono), peak-normalised as in training, and padded with silence to a
whole number of 1470-sample slots: one frame per slot, 30 fps. The sound
encoder (a BLSTM) reads every slot at once, so a frame knows the sound before
and after it; the generator then runs in chunks of frames, so memory stays
bounded however long the sound is, and frames stream into the MP4 writer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from s2vdata.clips import CLIP, load_audio, write_video
from s2vmodel.audio import peak_normalize, slot_spectrogram
from s2vmodel.checkpoint import load_generator

log = logging.getLogger(__name__)

# frames per generator call: bounds memory for long sounds (a 64x64 frame batch of 256 is a few MB)
CHUNK_FRAMES = 256

# containers write_video makes with H.264/VP8 video and a sound track
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm"}

# Figure 2 colours (RGB): input image green, generated orange, real red
GREEN = (40, 180, 60)
ORANGE = (255, 150, 30)
RED = (220, 40, 40)


@dataclass(frozen=True)
class GenerateReport:
    """What `generate` wrote."""

    out: Path  # the MP4
    frames: int  # frames written (one per 1470-sample slot)
    seconds: float  # duration of the input sound
    size: int  # frame side in the file (model size x scale)
    strip: Path | None  # the Figure-2 style strip, if asked for
    elapsed_s: float  # wall time of loading, generating and writing


def load_image(path: Path, *, size: int) -> np.ndarray:
    """Returns the centre square of an image file as (size, size, 3) uint8 RGB.

    Any format OpenCV reads (PNG, JPEG, BMP, WebP, TIFF; grey or with alpha),
    EXIF orientation applied, downscaled with an area filter.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist: pass a PNG or JPEG file with --image")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}: not an image format OpenCV knows; convert it to PNG or JPEG")
    return square(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size=size)


def square(rgb: np.ndarray, *, size: int) -> np.ndarray:
    """Returns the centre square of an (H, W, 3) uint8 image resized to (size, size, 3)."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = rgb[top : top + side, left : left + side]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))


def load_sound(path: Path, *, sample_rate: int = CLIP.sample_rate) -> np.ndarray:
    """Returns the sound of a file as float32 mono at `sample_rate` (any container, codec, rate, channels)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sound {path} does not exist: pass a WAV, FLAC, OGG, MP3 or M4A file with --audio")
    audio = load_audio(path, sample_rate=sample_rate)
    if audio.size == 0:
        raise ValueError(f"sound {path} has no samples: pass a file with at least 1/30 s of sound")
    return audio


def slot_count(n_samples: int, *, samples_per_frame: int = CLIP.samples_per_frame) -> int:
    """Returns the number of frames for a sound of n_samples: one per started 1470-sample slot."""
    return max(1, math.ceil(n_samples / samples_per_frame))


def to_model_image(image: np.ndarray) -> torch.Tensor:
    """Returns an (H, W, 3) uint8 image as a (1, 3, H, W) float tensor in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(image)).float().div(127.5).sub(1.0)
    return x.permute(2, 0, 1).unsqueeze(0)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """Returns a (T, 3, H, W) tensor in [-1, 1] as (T, H, W, 3) uint8 RGB."""
    x = video.detach().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


@torch.no_grad()
def sound_features(
    model: torch.nn.Module, audio: np.ndarray, *, hop: int = CLIP.samples_per_frame, n_fft: int = CLIP.samples_per_frame
) -> torch.Tensor:
    """Returns the BLSTM features (1, T, D) of a whole sound, one per frame slot of `hop` samples.

    The sound is peak-normalised to [-1, 1] (the paper's normalisation, as in
    training) and padded with silence to whole slots.
    """
    n = slot_count(len(audio), samples_per_frame=hop)
    wave = torch.zeros(1, n * hop, device=next(model.parameters()).device)
    wave[0, : len(audio)] = torch.from_numpy(np.asarray(audio, dtype=np.float32)).to(wave.device)
    spec = slot_spectrogram(peak_normalize(wave), hop=hop, n_fft=n_fft)  # (1, T, F)
    return model.encode_sound(spec)  # (1, T, D)


@torch.no_grad()
def generate_chunks(
    model: torch.nn.Module, *, image: np.ndarray, audio: np.ndarray, chunk_frames: int = CHUNK_FRAMES
) -> Iterator[np.ndarray]:
    """Yields the generated video in chunks of (n, H, W, 3) uint8 frames, one frame per 1470-sample slot.

    model: an S2VGenerator (its `config` gives the slot hop and STFT size); image:
    (H, W, 3) uint8 RGB at the model's size; audio: float32 mono at 44.1 kHz.
    """
    feats = sound_features(model, audio, hop=model.config.hop, n_fft=model.config.n_fft)  # (1, T, D)
    x = to_model_image(image).to(feats.device)  # (1, 3, H, W)
    last = None  # the frame before the chunk: a model that sees its previous frame goes on from it
    noise = model.draw_noise(x)  # a model with a random map keeps one for the whole clip (None without)
    for t0 in range(0, feats.shape[1], chunk_frames):
        video = model.generate_frames(x, feats[:, t0 : t0 + chunk_frames], last, noise)  # (1, n, 3, H, W)
        last = video[:, -1]
        yield to_uint8(video[0])


def generate_array(model: torch.nn.Module, *, image: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """Returns the whole generated video as (T, H, W, 3) uint8 RGB (for clips short enough to hold in memory)."""
    return np.concatenate(list(generate_chunks(model, image=image, audio=audio)), axis=0)


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Returns (n, H, W, 3) frames enlarged `scale` times with nearest-neighbour (pixels stay sharp)."""
    if scale == 1:
        return frames
    return frames.repeat(scale, axis=1).repeat(scale, axis=2)


def _framed(tile: np.ndarray, colour: tuple[int, int, int], *, border: int) -> np.ndarray:
    return cv2.copyMakeBorder(tile, border, border, border, border, cv2.BORDER_CONSTANT, value=colour)


def strip_times(n_frames: int, *, every: int = 20, max_tiles: int = 10) -> list[int]:
    """Returns the frame indices a strip shows: every `every` frames, widened so at most `max_tiles` show."""
    step = max(every, every * math.ceil(n_frames / (every * max_tiles)))
    return list(range(0, n_frames, step))


def make_strip(
    *, image: np.ndarray, generated: list[np.ndarray], times: list[int], real: list[np.ndarray] | None = None, scale: int = 2
) -> np.ndarray:
    """Returns a Figure-2 style strip (H, W, 3) uint8 RGB: the input image, then the generated frames at `times`.

    As in the paper's Figure 2: the input image framed green, generated frames
    orange, and, when `real` is given, the real frames at the same instants
    under them framed red; a label row names each frame's index.
    """
    border = max(2, scale)
    size = image.shape[0] * scale
    w = size + 2 * border
    label_h = 12 + 2 * border

    def tile(frame: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
        big = cv2.resize(frame, (size, size), interpolation=cv2.INTER_NEAREST)
        return _framed(big, colour, border=border)

    blank = np.full((w, w, 3), 255, np.uint8)
    rows = [np.concatenate([tile(image, GREEN)] + [tile(f, ORANGE) for f in generated], axis=1)]
    if real is not None:
        rows.append(np.concatenate([blank] + [tile(f, RED) for f in real], axis=1))
    labels = np.full((label_h, rows[0].shape[1], 3), 255, np.uint8)
    for k, text in enumerate(["input"] + [f"t={i}" for i in times]):
        cv2.putText(
            labels, text, (k * w + border, label_h - border - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA
        )
    return np.concatenate([labels, *rows], axis=0)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Returns `path` after writing an RGB image there as PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}: check the folder is writable and the name ends in .png")
    return path


def generate(
    *, checkpoint: Path, image: Path, audio: Path, out: Path, scale: int = 1, strip: Path | None = None, device: str = "cpu"
) -> GenerateReport:
    """Returns a GenerateReport after writing `out`: an MP4 (H.264 + AAC, 30 fps) moving with `audio`.

    One frame per 1470-sample slot of the sound (ceil(seconds * 30) frames),
    the input sound (44.1 kHz mono) muxed in, frames enlarged `scale` times.
    """
    started = time.perf_counter()
    if scale < 1:
        raise ValueError(f"--scale must be a whole number >= 1, got {scale}")
    out = Path(out)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"cannot write {out}: name the output .mp4 (or {', '.join(sorted(VIDEO_SUFFIXES - {'.mp4'}))})")
    model, config = load_generator(checkpoint, map_location=device)
    size = config.image_size
    picture = load_image(image, size=size)
    sound = load_sound(audio)
    n_frames = slot_count(len(sound))
    out.parent.mkdir(parents=True, exist_ok=True)
    # the strip needs only a few frames: keep those, not the whole video
    times = strip_times(n_frames) if strip else []
    kept: list[np.ndarray] = []

    def frames() -> Iterator[np.ndarray]:
        index = 0
        for chunk in generate_chunks(model, image=picture, audio=sound):
            for frame in chunk:
                if index in times:
                    kept.append(frame)
                index += 1
            yield from upscale(chunk, scale)

    write_video(out, frames(), sound, fps=CLIP.fps, sample_rate=CLIP.sample_rate)
    strip_path = None
    if strip:
        strip_path = write_png(Path(strip), make_strip(image=picture, generated=kept, times=times))
    elapsed = time.perf_counter() - started
    log.info("wrote %s: %d frames for %.2f s of sound in %.2f s", out, n_frames, len(sound) / CLIP.sample_rate, elapsed)
    return GenerateReport(
        out=out, frames=n_frames, seconds=len(sound) / CLIP.sample_rate, size=size * scale, strip=strip_path, elapsed_s=elapsed
    )
