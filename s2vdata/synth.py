"""Synthetic sources per target, clean or with one labelled defect, written as real MP4 files.

`render` builds one Scene in memory (frames on demand, sound as an array);
`synth_sources` writes `count` of them as H.264 + AAC MP4 files and registers
them like ingested files, so the whole pipeline and the trainer run offline.

A defect is applied to the same clean scene (same seed), so a clean source and
its defective twin differ only in the defect. Strength units:

- pan: px per frame at 286 px (scaled by short side / 286); the camera sweeps
  back and forth, turning at the edges of the world.
- zoom: % change of scale per second (zooms in, then out).
- shake: px at 286 px; every frame the view is offset by up to this much on each axis.
- unrelated: share of the event sounds moved to random times (1 = all).
- music: level of a tonal music bed in dB relative to the events' peak (-30 .. 0).
- silent, still, cut: no strength.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import cv2
import numpy as np

from s2vdata import synth_sound as snd
from s2vdata.synth_scenes import PLANS, Geometry, ScenePlan

if TYPE_CHECKING:
    from s2vdata.ingest import IngestReport
    from s2vdata.storage import Location

log = logging.getLogger(__name__)

TARGETS = ("mouth", "hand", "fireworks", "sea")
DEFECTS = (None, "pan", "zoom", "shake", "unrelated", "music", "silent", "still", "cut")
# Strength used when none is given: a clear case of each defect.
DEFAULT_STRENGTH = {"pan": 2.0, "zoom": 5.0, "shake": 4.0, "unrelated": 1.0, "music": -10.0}
REFERENCE_SIDE = 286  # camera strengths are given in pixels at the clip size

# Per-source variety of synth_sources: (width, height) and frame rates, drawn per source.
SIZES = ((320, 320), (384, 288), (288, 384), (352, 352), (384, 288), (320, 320))
FRAME_RATES = (30.0, 25.0, 30.0, 25.0, 30000 / 1001)
SAMPLE_RATES = (44_100, 48_000, 44_100)  # the build resamples 48 kHz sound to the clip's 44.1 kHz


@dataclass(frozen=True)
class Scene:
    """Everything needed to write one source: frames on demand, the sound, and where the events are."""

    frames: Callable[[], Iterator[np.ndarray]]  # fresh iterator of (H, W, 3) uint8 RGB frames
    audio: np.ndarray  # (n,) float32 mono in [-1, 1], at sample_rate
    fps: float  # frame rate; frame i shows the scene at i / fps
    sample_rate: int  # audio sample rate
    width: int  # frame width in pixels
    height: int  # frame height in pixels
    events_s: list[float]  # instants (s) of the sound events (clap, bang, vowel onset, wave crash)
    motion_events_s: list[float] = field(default_factory=list)  # instants (s) of the visual events
    n_frames: int = 0  # number of frames the iterator yields
    target: str = ""  # which scene
    defect: str | None = None  # which defect was applied (None: clean)
    strength: float | None = None  # the defect's strength, in the units of the module docstring

    @property
    def duration_s(self) -> float:
        """Returns the duration of the picture in seconds."""
        return self.n_frames / self.fps


def _seed_list(seed: int | Sequence[int]) -> list[int]:
    """Returns the seed as a list of ints for numpy's SeedSequence."""
    return [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]


def onset_sample(t: float, sample_rate: int) -> int:
    """Returns the first sample at or after time t: where a sound of an event at t starts."""
    return int(math.ceil(t * sample_rate - 1e-6))


def render(
    target: str,
    *,
    seed: int | Sequence[int],
    seconds: float = 12.0,
    fps: float = 30.0,
    sample_rate: int = 44_100,
    width: int = 320,
    height: int = 320,
    defect: str | None = None,
    strength: float | None = None,
) -> Scene:
    """Returns one synthetic scene of `target` whose sound is caused by its motion, with an optional defect.

    Deterministic per seed (an int or a tuple of ints). strength: see the
    module docstring; None picks DEFAULT_STRENGTH for the defect.
    """
    if target not in TARGETS:
        raise ValueError(f"no synthetic scene for target {target!r}: choose one of {', '.join(TARGETS)}")
    if defect not in DEFECTS:
        raise ValueError(f"unknown defect {defect!r}: choose one of {', '.join(str(d) for d in DEFECTS)}")
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise ValueError(f"frame size {width}x{height}: width and height must be even and at least 32 (H.264 4:2:0)")
    if fps <= 0 or seconds <= 0 or sample_rate <= 0:
        raise ValueError(f"seconds={seconds}, fps={fps}, sample_rate={sample_rate}: all must be positive")
    if strength is None:
        strength = DEFAULT_STRENGTH.get(defect or "", 0.0)
    seeds = _seed_list(seed)
    n_frames = max(1, round(seconds * fps))
    n_samples = round(n_frames / fps * sample_rate)
    # the world is wider than the view so a camera defect never shows an edge
    margin = int(math.ceil(0.2 * min(width, height)))
    geo = Geometry(width=width, height=height, margin=margin, fps=fps, frames=n_frames, sample_rate=sample_rate)

    plan = PLANS[target](np.random.default_rng(seeds), geo)
    motion_frames = list(plan.event_frames)
    sound_onsets = [onset_sample(k / fps, sample_rate) for k in motion_frames]
    floor = snd.noise_floor(np.random.default_rng([*seeds, 1]), n=n_samples, level_db=plan.floor_db)
    defect_rng = np.random.default_rng([*seeds, 100 + DEFECTS.index(defect)])

    if defect == "unrelated":
        sound_onsets = _unrelated_onsets(defect_rng, onsets=sound_onsets, share=strength, sample_rate=sample_rate, n=n_samples)
    events = plan.sound(sound_onsets, n_samples)
    audio = events + floor
    frame_fn = _fixed_view(plan, geo)
    events_s = sorted(o / sample_rate for o in sound_onsets)
    motion_s = [k / fps for k in motion_frames]

    if defect in ("pan", "zoom", "shake"):
        frame_fn = _camera(plan, geo=geo, kind=defect, strength=strength, rng=defect_rng)
    elif defect == "music":
        peak = float(np.abs(events).max()) or 0.5
        audio = audio + snd.music_bed(defect_rng, n=n_samples, sample_rate=sample_rate) * (peak * snd.db(strength))
    elif defect == "silent":
        audio = np.zeros(n_samples, dtype=np.float32)
        events_s = []
    elif defect == "still":
        frame_fn = _repeated(next(iter(frame_fn())), n=n_frames)
        motion_s = []
    elif defect == "cut":
        other = PLANS[target](np.random.default_rng([*seeds, 2]), geo)
        cut_frame = n_frames // 2
        cut_sample = onset_sample(cut_frame / fps, sample_rate)
        other_onsets = [onset_sample(k / fps, sample_rate) for k in other.event_frames]
        audio = np.concatenate([audio[:cut_sample], (other.sound(other_onsets, n_samples) + floor)[cut_sample:]])
        frame_fn = _spliced(frame_fn, _fixed_view(other, geo), cut_frame=cut_frame)
        motion_s = [k / fps for k in motion_frames if k < cut_frame] + [k / fps for k in other.event_frames if k >= cut_frame]
        events_s = motion_s[:]

    peak = float(np.abs(audio).max())
    if peak > 0.99:  # keep the mix inside [-1, 1] without changing the balance of its parts
        audio = audio * (0.99 / peak)
    return Scene(
        frames=frame_fn,
        audio=np.asarray(audio, dtype=np.float32),
        fps=fps,
        sample_rate=sample_rate,
        width=width,
        height=height,
        events_s=events_s,
        motion_events_s=motion_s,
        n_frames=n_frames,
        target=target,
        defect=defect,
        strength=strength if defect in DEFAULT_STRENGTH else None,
    )


def _world(plan: ScenePlan, geo: Geometry) -> Iterator[np.ndarray]:
    """Yields the full canvas of every frame: the world, wider than the view."""
    for i in range(geo.frames):
        img = plan.canvas.copy()
        plan.paint(img, i)
        yield img


def _fixed_view(plan: ScenePlan, geo: Geometry) -> Callable[[], Iterator[np.ndarray]]:
    """Returns a factory of view frames filmed by the fixed camera (the centre of the world)."""
    m = geo.margin

    def frames() -> Iterator[np.ndarray]:
        for img in _world(plan, geo):
            yield np.ascontiguousarray(img[m : m + geo.height, m : m + geo.width])

    return frames


def _repeated(frame: np.ndarray, *, n: int) -> Callable[[], Iterator[np.ndarray]]:
    """Returns a factory that yields `frame` n times (a copy each time, so callers may write to it)."""

    def frames() -> Iterator[np.ndarray]:
        for _ in range(n):
            yield frame.copy()

    return frames


def _spliced(first: Callable, second: Callable, *, cut_frame: int) -> Callable[[], Iterator[np.ndarray]]:
    """Returns a factory that yields `first` before cut_frame and `second` from it on."""

    def frames() -> Iterator[np.ndarray]:
        for i, (a, b) in enumerate(zip(first(), second())):
            yield a if i < cut_frame else b

    return frames


def camera_path(*, kind: str, strength: float, geo: Geometry, rng: np.random.Generator) -> np.ndarray:
    """Returns (frames, 3) camera states (dx, dy, scale): view offset in px from the fixed view and zoom factor."""
    n = geo.frames
    px = strength * geo.short / REFERENCE_SIDE
    path = np.zeros((n, 3))
    path[:, 2] = 1.0
    if kind == "pan":
        angle = rng.uniform(0, 2 * np.pi)
        reach = 0.9 * geo.margin
        travel = px * np.arange(n)
        # a triangle wave: the camera sweeps at constant speed and turns at the edge of the world
        pos = reach - np.abs((travel + reach) % (4 * reach) - 2 * reach) if reach > 0 else travel * 0
        path[:, 0], path[:, 1] = pos * np.cos(angle), pos * np.sin(angle)
    elif kind == "shake":
        path[:, :2] = rng.uniform(-px, px, size=(n, 2))
    elif kind == "zoom":
        rate = math.log1p(strength / 100.0)  # log-scale per second
        top = math.log(1.5)
        t = np.arange(n) / geo.fps * rate
        path[:, 2] = np.exp(top - np.abs(t % (2 * top) - top)) if rate > 0 else 1.0
    return path


def _camera(plan: ScenePlan, *, geo: Geometry, kind: str, strength: float, rng: np.random.Generator) -> Callable[[], Iterator[np.ndarray]]:
    """Returns a frame factory that films the world through a moving camera (pan, zoom or shake)."""
    path = camera_path(kind=kind, strength=strength, geo=geo, rng=rng)
    m, w, h = geo.margin, geo.width, geo.height

    def frames() -> Iterator[np.ndarray]:
        for img, (dx, dy, z) in zip(_world(plan, geo), path):
            # view pixel (u, v) shows world point centre + ((u, v) - view centre) / z + offset
            mat = np.array([[1 / z, 0, m + dx + w / 2 * (1 - 1 / z)], [0, 1 / z, m + dy + h / 2 * (1 - 1 / z)]])
            yield cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)

    return frames


def _unrelated_onsets(rng: np.random.Generator, *, onsets: list[int], share: float, sample_rate: int, n: int) -> list[int]:
    """Returns the onsets with `share` of them moved to random times away (>= 0.3 s) from every visual event."""
    moved = set(rng.choice(len(onsets), size=int(round(np.clip(share, 0, 1) * len(onsets))), replace=False).tolist()) if onsets else set()
    keep_away = int(0.3 * sample_rate)
    out = list(onsets)
    for j in sorted(moved):
        best, best_dist = onsets[j], -1
        for _ in range(50):
            cand = int(rng.integers(int(0.2 * sample_rate), max(int(0.2 * sample_rate) + 1, n - int(0.3 * sample_rate))))
            dist = min(abs(cand - o) for o in onsets)
            if dist >= keep_away:
                best = cand
                break
            if dist > best_dist:
                best, best_dist = cand, dist
        out[j] = best
    return out


def synth_sources(
    *,
    target: str,
    count: int,
    seed: int,
    data_dir: Location | Path | str,
    seconds: float = 12.0,
    defect: str | None = None,
    strength: float | None = None,
) -> "IngestReport":
    """Returns the ingest report of `count` synthetic sources of `target` written as MP4 and registered in data_dir.

    Source i uses seed (seed, i), which also picks its frame size and rate, so
    the same call writes the same files and registering them again adds nothing.
    """
    from s2vdata.ingest import register_files
    from s2vdata.media import write_video
    from s2vdata.storage import Location

    if count < 1:
        raise ValueError(f"count={count}: ask for at least one source")
    data_dir = Location(data_dir)
    # rendered beside the data on a local disk (one rename away), in the temporary folder for a bucket
    data_dir.mkdir()
    work = Path(tempfile.mkdtemp(prefix=".synth-", dir=data_dir.path if data_dir.is_local else None))
    try:
        paths, origins = [], []
        for i in range(count):
            pick = np.random.default_rng([seed, i, 7])
            width, height = SIZES[int(pick.integers(0, len(SIZES)))]
            fps = FRAME_RATES[int(pick.integers(0, len(FRAME_RATES)))]
            rate = SAMPLE_RATES[int(pick.integers(0, len(SAMPLE_RATES)))]
            scene = render(
                target, seed=(seed, i), seconds=seconds, fps=fps, sample_rate=rate, width=width, height=height, defect=defect, strength=strength
            )
            tag = f"-{defect}" if defect else ""
            path = work / f"synth-{target}{tag}-{seed}-{i:04d}.mp4"
            write_video(path, scene.frames(), scene.audio, fps=fps, sample_rate=scene.sample_rate)
            log.info("wrote %s (%dx%d, %.2f fps, %d Hz, %d events)", path.name, width, height, fps, rate, len(scene.events_s))
            paths.append(path)
            origin = f"synth://{target}/{seed}/{i}"
            origins.append(origin if defect is None else f"{origin}?defect={defect}&strength={scene.strength}")
        return register_files(paths, target=target, data_dir=data_dir, origins=origins)
    finally:
        shutil.rmtree(work, ignore_errors=True)
