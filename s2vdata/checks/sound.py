"""Plain check "not silent" and condition 3, "no sound unrelated to the movement"."""

from __future__ import annotations

import cv2
import numpy as np

# Motion energy (relative to the window's busiest frames) above which a frame
# counts as moving, for the "is there motion near this onset" question.
_MOVING = 0.15
# Frames either side of an onset (after the sound-motion lag) searched for motion.
NEAR_FRAMES = 3
# Below this motion energy (mean |grey difference|, 0..1) a frame is still whatever
# the window's peak: codec noise on a static picture stays under it.
_STILL_ABS = 2e-4
# A spectral peak this far (dB) above the log-mean of its +-12 bins is a tone:
# noise never gets there (probability ~1e-6 per bin), a note or a voice does.
_TONE_DB = 15.0
_TONE_SPAN = 25  # bins (30 Hz each at 44.1 kHz) of the local log-mean
_TONE_HZ = (150.0, 15000.0)  # above mains hum, below codec cut-offs
_TONES_PER_SLOT = 2  # peaks a slot needs to count as tonal


def audio_level_db(audio: np.ndarray, *, hop: int = 1470) -> float:
    """Returns the sound level of the window in dBFS: the 99th percentile of the per-frame-slot RMS.

    A window with sound in a few slots (one clap) is not silent; a window with
    nothing but a noise floor reads as the floor.
    """
    x = np.asarray(audio, dtype=np.float64)
    n = len(x) // hop
    if n == 0:
        return -240.0
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    return float(20.0 * np.log10(np.percentile(rms, 99) + 1e-12))


def unrelated_audio(onset: np.ndarray, motion: np.ndarray, *, lag: int = 0, near: int = NEAR_FRAMES) -> tuple[float, np.ndarray]:
    """Returns (share of onset energy with no motion near it, per-slot unexplained onset curve).

    Onset energy is the envelope above its median (the steady floor of a
    noise bed does not count as onsets; a music bed's notes do). Slot t is
    explained by the largest relative motion within `near` frames of t - lag
    (the motion that caused it, given the measured lag) or of t, ramping from 0 to 1
    up to a share _MOVING of the window's 95th-percentile motion. No onset
    energy at all gives 0.0.
    """
    o = np.asarray(onset, dtype=np.float64)
    m = np.asarray(motion, dtype=np.float64)
    n = min(len(o), len(m))
    o, m = o[:n], m[:n]
    if n == 0:
        return 0.0, np.zeros(0, np.float32)
    excess = np.maximum(o - np.median(o), 0.0)
    total = excess.sum()
    scale = np.percentile(m[1:], 95) if n > 1 else 0.0
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


def tonal_slots(audio: np.ndarray, *, hop: int = 1470, n_slots: int | None = None, sample_rate: int = 44100) -> np.ndarray:
    """Returns a bool mask (n_slots,): frame slots whose sound holds tones (music, a voice), at any level.

    A slot is tonal when at least 2 spectral peaks stand 15 dB above the
    log-mean of their neighbourhood; a noise floor, a clap, a bang or the roar
    of the sea never does, a music bed 30 dB under the events does.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    n = len(x) // hop if n_slots is None else n_slots
    if n <= 0:
        return np.zeros(0, dtype=bool)
    x = np.pad(x[: n * hop], (0, max(0, n * hop - len(x))))
    spectra = np.abs(np.fft.rfft(x.reshape(n, hop) * np.hanning(hop), axis=1)) ** 2
    bin_hz = sample_rate / hop
    lo = max(1, int(np.ceil(_TONE_HZ[0] / bin_hz)))
    hi = min(spectra.shape[1], int(_TONE_HZ[1] / bin_hz))
    logp = np.log10(spectra[:, lo:hi] + 1e-20).astype(np.float32)
    local = cv2.blur(logp, (_TONE_SPAN, 1), borderType=cv2.BORDER_REPLICATE)
    peak = (logp[:, 1:-1] >= logp[:, :-2]) & (logp[:, 1:-1] >= logp[:, 2:])
    tones = (peak & (logp[:, 1:-1] - local[:, 1:-1] > _TONE_DB / 10.0)).sum(axis=1)
    # a slot of digital silence has no tones, whatever the arithmetic says
    silent = spectra.max(axis=1) <= 1e-18
    return (tones >= _TONES_PER_SLOT) & ~silent


def bed_share(tonal: np.ndarray, still: np.ndarray) -> float:
    """Returns the share of still frames whose sound is tonal (music or voice over a picture where nothing moves), 0 if none is still."""
    still = np.asarray(still, dtype=bool)
    if not still.any():
        return 0.0
    return float((np.asarray(tonal, dtype=bool) & still).sum() / still.sum())
