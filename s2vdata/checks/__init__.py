"""The window checks: pure functions from decoded frames and sound to scores, and the decision.

`measure_window` computes every score of one 4-second window (build stores them
in a sidecar, so changing a threshold re-decides without decoding again);
`decide` compares the scores with a target's thresholds. The paper's three data
conditions (section 3.1) and the plain ones, in the order `decide` reports them:

- audio_db: not silent (sound level, dBFS)
- motion: not still (mean motion energy)
- scene_cut: no cut inside the window
- camera_shift: the camera is fixed (px per frame at 286 px)
- av_sync, av_lag_frames: the sound and the image correspond
- unrelated_audio: no sound unrelated to the movement (onsets no motion explains, tones over a still picture)
- speech: no voice in the window (silero-vad; off for mouth, whose voice is the point)
- speech_unexplained: no voice while nothing moves (a narrator over a still face, an off-screen voice)
- music: no sustained tones that are not a voice (a music bed)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from s2vdata.checks import music, speech
from s2vdata.checks.camera import camera_shift
from s2vdata.checks.cut import scene_cut
from s2vdata.checks.signals import (
    av_align,
    av_sync,
    grey_u8,
    motion_energy_grey,
    onset_envelope,
    shrink,
    shrink_factor,
    shrink_frame,
)
from s2vdata.checks.sound import audio_level_db, bed_share, motion_level, still_slots, unrelated_audio
from s2vdata.config import CLIP, ClipSpec
from s2vdata.targets import Target

# Lags searched by measure_window; a target may accept fewer (av_lag_max_frames).
MAX_LAG_FRAMES = 15

CHECKS = (
    "audio_db",
    "motion",
    "scene_cut",
    "camera_shift",
    "av_sync",
    "av_lag_frames",
    "unrelated_audio",
    "speech",
    "speech_unexplained",
    "music",
)
SCORES = (*CHECKS, "av_align", "unrelated_onsets", "tonal_bed")
# Bumped whenever a measure changes: build re-measures sidecars of another version.
VERSION = "12"


@dataclass(frozen=True)
class CheckResult:
    """One check on one window: passed or not, with the value and threshold that decided it."""

    check: str
    passed: bool
    value: float
    threshold: float
    reason: str = ""


class SmallFrames:
    """A window's frames shrunk and made grey one by one as they arrive (`add`), for `measure_window(..., small=)`.

    The same pixels as measure_window's own shrinking of the whole window, for
    half its cost: each frame is shrunk while it is still in the CPU's cache.
    """

    def __init__(self, frames: int, *, size: int):
        _, (width, height) = shrink_factor(size, size)
        self.colour = np.empty((frames, height, width, 3), np.uint8)
        self.grey = np.empty((frames, height, width), np.uint8)

    def add(self, i: int, frame: np.ndarray) -> None:
        """Shrinks frame i of the window, (size, size, 3) uint8 RGB."""
        shrink_frame(frame, out=self.colour[i])
        cv2.cvtColor(self.colour[i], cv2.COLOR_RGB2GRAY, dst=self.grey[i])

    def copy_from(self, i: int, other: "SmallFrames", j: int) -> None:
        """Takes frame j of another window as frame i of this one (overlapping windows share frames)."""
        self.colour[i] = other.colour[j]
        self.grey[i] = other.grey[j]


def measure_window(frames: np.ndarray, audio: np.ndarray, *, clip: ClipSpec = CLIP, small: SmallFrames | None = None) -> dict:
    """Returns {"scores": {name: float}, "curves": {name: list[float]}} for one window, JSON-serialisable.

    frames: (T, H, W, 3) uint8 RGB (a clip: 120 x 286 x 286); audio: (n,) float32
    mono in [-1, 1] at clip.sample_rate, frame i pairing with samples
    [spf*i, spf*(i+1)). Scores: SCORES (docs/checks.md). Curves, one value per
    frame: onset (sound onset envelope), motion (motion energy), shift
    (camera motion, px at clip size), cut (scene cut strength), unexplained
    (onset energy no motion explains), tonal_still (tones over a still
    picture), speech (voice probability), tonal (sustained tones, 0/1).
    Loads the voice model on first use (speech.SpeechModelMissing if it is
    not installed). `small`: the same frames already shrunk (SmallFrames),
    else they are shrunk here; the scores are the same.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB, got {frames.dtype} {frames.shape}")
    threads = cv2.getNumThreads()
    # cv2 splits each small picture over its thread pool, which costs more CPU than it saves here; a build runs
    # one worker per core anyway
    cv2.setNumThreads(1)
    try:
        return _measure(frames, audio, clip=clip, prepared=small)
    finally:
        cv2.setNumThreads(threads)


def _measure(frames: np.ndarray, audio: np.ndarray, *, clip: ClipSpec, prepared: SmallFrames | None) -> dict:
    n = len(frames)
    if prepared is None:
        small = shrink(frames)
        grey = grey_u8(small)  # uint8: what the tracker and the edge finder read, and motion energy as /255
    else:
        small, grey = prepared.colour[:n], prepared.grey[:n]
    motion = motion_energy_grey(grey)
    onset = onset_envelope(audio, hop=clip.samples_per_frame, n_slots=n)
    # shift in px at clip size: the tracker sees frames shrunk from the clip's side
    shift_score, shift = camera_shift(grey, scale=frames.shape[2] / grey.shape[2])
    cut_score, cut = scene_cut(small, grey=grey)
    sync, lag = av_sync(onset, motion, max_lag=MAX_LAG_FRAMES)
    onset_share, unexplained = unrelated_audio(onset, motion, lag=lag)
    still = still_slots(motion)
    slot_s = clip.samples_per_frame / clip.sample_rate
    # one 16 kHz copy of the sound for the voice model and the tone finder
    x16 = speech.resample(audio, sample_rate=clip.sample_rate)
    voice = speech.voice_curve(x16, n_slots=n, slot_s=slot_s)
    talking = voice >= speech.SPEECH_P
    tonal = music.tonal_curve(x16, n_slots=n, slot_s=slot_s)
    bed = bed_share(tonal, still)
    share = (lambda mask: float(mask.mean())) if n else (lambda mask: 0.0)
    scores = {
        "audio_db": audio_level_db(audio, hop=clip.samples_per_frame),
        "motion": motion_level(motion),
        "scene_cut": cut_score,
        "camera_shift": shift_score,
        "av_sync": sync,
        "av_lag_frames": lag,
        "unrelated_audio": max(onset_share, bed),
        "av_align": av_align(onset, motion),
        "unrelated_onsets": onset_share,
        "tonal_bed": bed,
        "speech": share(talking),
        "speech_unexplained": share(talking & still),
        "music": share(tonal & ~talking),
    }
    curves = {
        "onset": onset,
        "motion": motion,
        "shift": shift,
        "cut": cut,
        "unexplained": unexplained,
        "tonal_still": (tonal & still).astype(np.float32),
        "speech": voice,
        "tonal": tonal.astype(np.float32),
    }
    return {
        "scores": {k: float(v) for k, v in scores.items()},
        "curves": {k: [round(x, 6) for x in np.asarray(v, dtype=np.float64).tolist()] for k, v in curves.items()},
    }


def decide(scores: dict[str, float], target: Target) -> list[CheckResult]:
    """Returns one CheckResult per check in CHECKS order; a window is kept iff all passed.

    A missing or NaN score fails its check (the reason says so), so a sidecar
    from an older build never silently passes a check it did not measure.
    """
    rules = [
        ("audio_db", target.audio_db_min, True, "silent: sound level below the threshold"),
        ("motion", target.motion_min, True, "still: nothing moves"),
        ("scene_cut", target.scene_cut_max, False, "scene cut inside the window"),
        ("camera_shift", target.camera_shift_max, False, "camera moves (pan, zoom or shake)"),
        ("av_sync", target.av_sync_min, True, "sound does not follow the motion"),
        ("av_lag_frames", float(target.av_lag_max_frames), False, "sound and motion align only at a lag beyond the target's"),
        (
            "unrelated_audio",
            target.unrelated_audio_max,
            False,
            "sound unrelated to the motion (music, narration, off-screen events)",
        ),
        ("speech", target.speech_max, False, "a voice: speech is sound unrelated to this target's motion"),
        ("speech_unexplained", target.speech_unexplained_max, False, "a voice while nothing moves (narrator, off-screen voice)"),
        ("music", target.music_max, False, "music: sustained tones that are not a voice"),
    ]
    results = []
    for name, threshold, at_least, reason in rules:
        raw = scores.get(name)
        value = float("nan") if raw is None else float(raw)
        if np.isnan(value):
            results.append(CheckResult(name, False, value, threshold, f"{name} was not measured: rebuild to measure it"))
            continue
        measured = abs(value) if name == "av_lag_frames" else value
        passed = measured >= threshold if at_least else measured <= threshold
        results.append(CheckResult(name, passed, value, threshold, "" if passed else reason))
    return results
