"""Plain checks "not silent" and "not still", and condition 3, "no sound unrelated to the movement"."""

from __future__ import annotations

import numpy as np

# Motion energy (relative to the window's busiest frames) above which a frame
# counts as moving, for the "is there motion near this onset" question.
_MOVING = 0.15
# Frames either side of an onset (after the sound-motion lag) searched for motion.
NEAR_FRAMES = 3
# Below this motion energy (mean |grey difference|, 0..1) a frame is still whatever
# the window's peak: codec noise on a static picture stays under it.
_STILL_ABS = 2e-4
# Share of a window's frames whose motion makes its motion level: 12 of 120, 0.4 s.
_BUSIEST = 0.1


def audio_level_db(audio: np.ndarray, *, hop: int = 1470) -> float:
    """Returns the sound level of the window in dBFS: the RMS of its loudest frame slot.

    One clap or one short bang in four seconds of quiet is sound (a percentile
    of the slots would drown it); a window holding nothing but a noise floor
    reads as the floor.
    """
    x = np.asarray(audio, dtype=np.float64)
    n = len(x) // hop
    if n == 0:
        return -240.0
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    return float(20.0 * np.log10(rms.max() + 1e-12))


def motion_level(motion: np.ndarray) -> float:
    """Returns the motion level of a window: the mean motion energy of its busiest 10% of frames (0 if fewer than 2 frames).

    One burst or one clap in four seconds of stillness moves a few frames
    strongly; a mean over all frames would drown it, the busiest tenth does
    not. A still picture stays at its codec noise: a keyframe's one-frame
    flicker counts a tenth.
    """
    m = np.asarray(motion, dtype=np.float64)[1:]
    if len(m) == 0:
        return 0.0
    k = max(1, int(round(_BUSIEST * len(m))))
    return float(np.sort(m)[-k:].mean())


def unrelated_audio(onset: np.ndarray, motion: np.ndarray, *, lag: int = 0, near: int = NEAR_FRAMES) -> tuple[float, np.ndarray]:
    """Returns (share of onset energy with no motion near it, per-slot unexplained onset curve).

    Onset energy is the envelope above its median (the steady floor of a
    noise bed does not count as onsets; a music bed's notes do). Slot t is
    explained by the largest relative motion within `near` frames of t - lag
    (the motion that caused it, given the measured lag) or of t, ramping from 0 to 1
    up to a share _MOVING of the window's motion level (`motion_level`). No
    onset energy at all gives 0.0.
    """
    o = np.asarray(onset, dtype=np.float64)
    m = np.asarray(motion, dtype=np.float64)
    n = min(len(o), len(m))
    o, m = o[:n], m[:n]
    if n == 0:
        return 0.0, np.zeros(0, np.float32)
    excess = np.maximum(o - np.median(o), 0.0)
    total = excess.sum()
    # the busiest frames set the scale: a single event that moves a few frames
    # is the window's motion, not an outlier under its 95th percentile
    scale = motion_level(m)
    if scale <= 1e-9:
        support = np.zeros(n)
    else:
        rel = np.clip(m / (scale * _MOVING), 0.0, 1.0)
        shifted = np.zeros(n)
        # motion at t - lag explains the onset at t (lag > 0: motion leads)
        if lag >= 0:
            shifted[lag:] = rel[: n - lag] if lag < n else []
        else:
            shifted[: n + lag] = rel[-lag:]
        # motion at the onset itself explains it too: the measured lag is the
        # window's best overall fit, not every event's
        shifted = np.maximum(shifted, rel)
        padded = np.pad(shifted, near, mode="constant")
        support = np.max(np.stack([padded[k : k + n] for k in range(2 * near + 1)]), axis=0)
    unexplained = excess * (1.0 - support)
    if total <= 1e-12:
        return 0.0, unexplained.astype(np.float32)
    return float(unexplained.sum() / total), unexplained.astype(np.float32)


def still_slots(motion: np.ndarray, *, near: int = NEAR_FRAMES) -> np.ndarray:
    """Returns a bool mask (T,): frames with no motion within `near` frames.

    A frame moves when its motion energy is above 5% of the window's 95th
    percentile (and above codec noise).
    """
    m = np.asarray(motion, dtype=np.float64)
    if len(m) < 2:
        return np.zeros(len(m), dtype=bool)
    moving = m >= max(_STILL_ABS, 0.05 * float(np.percentile(m[1:], 95)))
    moving[0] = moving[1]  # motion[0] is 0 by definition, not a still frame
    near_motion = np.convolve(moving.astype(np.float64), np.ones(2 * near + 1), mode="same") > 0
    return ~near_motion


def bed_share(tonal: np.ndarray, still: np.ndarray) -> float:
    """Returns the share of still frames whose sound is tonal, 0 if none is still.

    Tonal sound over a picture where nothing moves: music, or a voice.
    """
    still = np.asarray(still, dtype=bool)
    if not still.any():
        return 0.0
    return float((np.asarray(tonal, dtype=bool) & still).sum() / still.sum())
