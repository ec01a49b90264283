"""Sustained tones in a window: the partials of music (or a voice) that hold their pitch, at any level above the floor.

A note, a chord or a held vowel puts narrow spectral peaks that stay at the
same frequency for a while; a clap, a bang's crack and rumble, the roar of the
sea and a noise floor never do (their peaks are random and last one frame).
On the sound resampled to 16 kHz, one spectrum per frame slot (2048-sample
Hann window, 7.8 Hz bins, centred on the slot), a peak is a local maximum
standing 10 dB above the log-mean of its +-16 bins, and it is sustained when
a peak sits within one bin of it in each of at least 5 consecutive slots
(about 0.25 s of sound). Pure numpy.
"""

from __future__ import annotations

import cv2
import numpy as np

_N_FFT = 2048  # at 16 kHz: 128 ms, 7.8 Hz per bin: partials of low notes are resolved
_PEAK_DB = 10.0  # above the log-mean of the neighbourhood; noise gets there in ~0.4% of bins, rarely twice in a row
_SPAN = 33  # bins of the neighbourhood log-mean (+-16 bins, +-125 Hz)
_HZ = (150.0, 5000.0)  # above a bang's boom and mains hum; below where partials of a bed fade under the floor
_SUSTAIN = 4  # consecutive slots (with overlap: ~0.26 s of sound) a peak must hold
_PARTIALS = 2  # sustained peaks a slot needs to count as tonal


def slot_spectra(
    x16: np.ndarray, *, n_slots: int, slot_s: float, rate: int = 16_000, bins: slice = slice(None)
) -> tuple[np.ndarray, float]:
    """Returns (log10 power spectra (n_slots, bins) centred on each slot, Hz per bin) of 16 kHz mono sound.

    `bins`: the bins wanted (all by default; the logarithm is the costly part).
    """
    x = np.asarray(x16, dtype=np.float32)
    half = _N_FFT // 2
    centres = np.round((np.arange(n_slots) + 0.5) * slot_s * rate).astype(int)
    padded = np.zeros(len(x) + _N_FFT, np.float32)
    padded[half : half + len(x)] = x
    idx = centres[:, None] + np.arange(_N_FFT)[None, :]
    idx = np.clip(idx, 0, len(padded) - 1)
    frames = padded[idx] * np.hanning(_N_FFT).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)[:, bins]) ** 2
    return np.log10(power + 1e-20).astype(np.float32), rate / _N_FFT


def band_bins(bin_hz: float, n_bins: int) -> slice:
    """Returns the spectrum bins sustained_peaks reads: 150-5000 Hz and one bin either side."""
    lo = max(1, int(np.ceil(_HZ[0] / bin_hz)))
    hi = min(n_bins - 1, int(_HZ[1] / bin_hz))
    return slice(lo - 1, hi + 1)


def sustained_peaks(band: np.ndarray) -> np.ndarray:
    """Returns per slot the number of spectral peaks that hold their frequency for 5 slots or more.

    `band`: log10 power spectra (slots, bins) of the bins of band_bins (peaks are looked for between its end bins).
    """
    local = cv2.blur(band, (_SPAN, 1), borderType=cv2.BORDER_REPLICATE)
    mid = band[:, 1:-1]
    peak = (mid >= band[:, :-2]) & (mid > band[:, 2:]) & (mid - local[:, 1:-1] > _PEAK_DB / 10.0)
    # silence (digital zero) has no peaks whatever the arithmetic says
    peak &= (band.max(axis=1) > -15.0)[:, None]
    near = peak.copy()
    near[:, 1:] |= peak[:, :-1]
    near[:, :-1] |= peak[:, 1:]
    t = len(near)
    if t < _SUSTAIN:
        return np.zeros(t, dtype=np.int64)
    # a slot is in a run of _SUSTAIN or more when some window of _SUSTAIN slots covering it is near throughout
    full = near[: t - _SUSTAIN + 1].copy()
    for k in range(1, _SUSTAIN):
        full &= near[k : t - _SUSTAIN + 1 + k]
    held = np.zeros_like(near)
    for k in range(_SUSTAIN):
        held[k : t - _SUSTAIN + 1 + k] |= full
    return (held & peak).sum(axis=1)


def tonal_curve(x16: np.ndarray, *, n_slots: int, slot_s: float, rate: int = 16_000) -> np.ndarray:
    """Returns a bool mask (n_slots,): slots whose sound holds at least 2 sustained partials (music, a held voice)."""
    if n_slots <= 0:
        return np.zeros(0, dtype=bool)
    bins = band_bins(rate / _N_FFT, _N_FFT // 2 + 1)
    band, _ = slot_spectra(x16, n_slots=n_slots, slot_s=slot_s, rate=rate, bins=bins)
    return sustained_peaks(band) >= _PARTIALS
