"""The clip contract (DESIGN section 4) and build settings, as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClipSpec:
    """What one clip is: the paper's numbers (section 3.1)."""

    seconds: float = 4.0  # clip length
    fps: int = 30  # frame rate of the clip grid
    sample_rate: int = 44_100  # audio sample rate
    size: int = 286  # frame side in pixels (square)
    qp: int = 18  # x264 constant quantiser of the clips: visually lossless, and reproducible bytes

    @property
    def frames(self) -> int:
        """Frames per clip (120)."""
        return round(self.seconds * self.fps)

    @property
    def samples(self) -> int:
        """Audio samples per clip (176,400)."""
        return round(self.seconds * self.sample_rate)

    @property
    def samples_per_frame(self) -> int:
        """Samples in one frame slot (1470): frame i pairs with samples [1470*i, 1470*(i+1))."""
        return self.sample_rate // self.fps


CLIP = ClipSpec()


@dataclass(frozen=True)
class BuildSettings:
    """How `build` plans windows; saved in manifests/<target>.build.json."""

    stride_s: float = 4.0  # seconds between window starts (4 = back to back)
    max_clips_per_source: int = 0  # keep a random K of the passing windows (0 = all)
    seed: int = 0  # seeds window sampling and nothing else
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/val/test shares, per source group
    clip: ClipSpec = field(default_factory=ClipSpec)  # the clip contract
    shard_bytes: int = 1_000_000_000  # shards close near this size, packing many sources (0: one shard per source)


def parse_size(text: str) -> int:
    """Returns a size in bytes from text such as 1GB, 500MB, 2GiB or 0; raises ValueError."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    raw = text.strip().upper().replace(" ", "")
    number = raw.rstrip("KMGTIB")
    unit = raw[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or value < 0:
        raise ValueError(f"size {text!r}: expected a number with a unit, such as 1GB, 500MB or 2GiB (0: one shard per source)")
    return int(value * units[unit])
