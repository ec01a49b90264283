"""Sound primitives for the synthetic scenes: clap, bang, vowel, roar, music bed, noise floor.

Every function returns float32 mono at the given sample rate and starts its
sound on its first sample (index 0), so a caller places an event exactly by
adding it at the event's onset sample.
"""

from __future__ import annotations

import numpy as np

# Formants (F1, F2, F3 in Hz) of five vowels, adult speaker (Peterson & Barney style averages).
FORMANTS: dict[str, tuple[float, float, float]] = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}


def db(level_db: float) -> float:
    """Returns the amplitude factor of a level in dB."""
    return float(10.0 ** (level_db / 20.0))


def add_at(out: np.ndarray, onset: int, sound: np.ndarray) -> None:
    """Adds `sound` into `out` from sample `onset` on, cut at both ends of `out`."""
    start = max(onset, 0)
    end = min(onset + len(sound), len(out))
    if end > start:
        out[start:end] += sound[start - onset : end - onset]


def noise_floor(rng: np.random.Generator, *, n: int, level_db: float = -50.0) -> np.ndarray:
    """Returns n samples of room-tone noise at `level_db` dBFS RMS.

    Real recordings are never digital zero between events; a floor keeps the
    synthetic sources honest for the silence check.
    """
    white = rng.standard_normal(n)
    # a one-pole low-pass makes it sound like room tone rather than hiss
    shaped = _one_pole(white, 0.6)
    shaped *= db(level_db) / (np.sqrt(np.mean(shaped**2)) + 1e-12)
    return shaped.astype(np.float32)


def _one_pole(x: np.ndarray, a: float) -> np.ndarray:
    """Returns x low-passed by y[t] = (1-a) x[t] + a y[t-1], computed in the frequency domain."""
    n = len(x)
    spec = np.fft.rfft(x, 2 * n)
    w = np.exp(-2j * np.pi * np.fft.rfftfreq(2 * n))
    return np.fft.irfft(spec * (1 - a) / (1 - a * w), 2 * n)[:n]


def _shaped_noise(rng: np.random.Generator, *, n: int, sample_rate: int, gain) -> np.ndarray:
    """Returns n samples of white noise shaped by gain(freqs_hz), normalised to peak 1."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec *= gain(np.fft.rfftfreq(n, 1.0 / sample_rate))
    x = np.fft.irfft(spec, n)
    return x / (np.abs(x).max() + 1e-12)


def clap(rng: np.random.Generator, *, sample_rate: int) -> np.ndarray:
    """Returns a hand clap: a broadband burst with a resonance near 1-2.5 kHz and a fast decay (peak 1)."""
    n = int(0.12 * sample_rate)
    fc = rng.uniform(1000.0, 2500.0)
    bw = rng.uniform(700.0, 1500.0)
    burst = _shaped_noise(
        rng, n=n, sample_rate=sample_rate, gain=lambda f: 0.35 + np.exp(-(((f - fc) / bw) ** 2)) - 0.25 * (f > 9000)
    )
    t = np.arange(n) / sample_rate
    tau = rng.uniform(0.006, 0.014)
    # the envelope is applied after filtering so the onset stays on sample 0
    x = burst * np.exp(-t / tau)
    return (x / (np.abs(x).max() + 1e-12)).astype(np.float32)


def bang(rng: np.random.Generator, *, sample_rate: int) -> np.ndarray:
    """Returns a firework bang: a crack, a low falling boom and a noisy rumbling tail (peak 1)."""
    seconds = 1.8
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f_hi, f_lo = rng.uniform(80.0, 120.0), rng.uniform(35.0, 55.0)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / 0.08)
    boom = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / rng.uniform(0.25, 0.45))
    cutoff = rng.uniform(400.0, 900.0)
    rumble = _shaped_noise(rng, n=n, sample_rate=sample_rate, gain=lambda f: 1.0 / (1.0 + (f / cutoff) ** 2))
    rumble *= np.exp(-t / rng.uniform(0.35, 0.7))
    # the report: a sharp broadband crack that marks the instant of the burst
    crack = _shaped_noise(rng, n=n, sample_rate=sample_rate, gain=lambda f: np.ones_like(f)) * np.exp(-t / 0.006)
    x = 0.9 * boom + 0.7 * rumble + 0.9 * crack
    return (x / (np.abs(x).max() + 1e-12)).astype(np.float32)


def vowel(*, envelope: np.ndarray, f0: np.ndarray, vowel_name: str, sample_rate: int) -> np.ndarray:
    """Returns a voiced vowel: harmonics of f0 weighted by the vowel's formants, times `envelope`.

    envelope and f0 are per sample (same length); the result peaks near max(envelope).
    """
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    mean_f0 = float(np.mean(f0))
    f1, f2, f3 = FORMANTS[vowel_name]
    x = np.zeros(len(envelope))
    for h in range(1, int(5000 // mean_f0) + 1):
        hf = h * mean_f0
        weight = sum(g / (1.0 + ((hf - fm) / bw) ** 2) for fm, g, bw in ((f1, 1.0, 90.0), (f2, 0.5, 110.0), (f3, 0.25, 150.0)))
        x += (weight + 0.01) / h**0.5 * np.sin(h * phase)
    x *= envelope / (np.abs(x).max() + 1e-12)
    return x.astype(np.float32)


def splash(rng: np.random.Generator, *, sample_rate: int) -> np.ndarray:
    """Returns the slap of a breaking wave: a bright noise burst decaying over about 0.1 s (peak 1)."""
    n = int(0.4 * sample_rate)
    t = np.arange(n) / sample_rate
    x = _shaped_noise(rng, n=n, sample_rate=sample_rate, gain=lambda f: 1.0 / (1.0 + (f / 6000.0) ** 2)) * np.exp(
        -t / rng.uniform(0.03, 0.06)
    )
    return (x / (np.abs(x).max() + 1e-12)).astype(np.float32)


def roar_noise(rng: np.random.Generator, *, n: int, sample_rate: int) -> np.ndarray:
    """Returns n samples of surf noise (pinkish, low-passed), RMS 1, to be shaped by the foam envelope."""
    cutoff = rng.uniform(1200.0, 3000.0)
    x = _shaped_noise(rng, n=n, sample_rate=sample_rate, gain=lambda f: 1.0 / np.sqrt(1.0 + f / 80.0) / (1.0 + (f / cutoff) ** 2))
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def music_bed(rng: np.random.Generator, *, n: int, sample_rate: int) -> np.ndarray:
    """Returns a continuous music-like bed: a chord progression of plucked triads over a bass (peak 1)."""
    t_total = n / sample_rate
    root = 48 + int(rng.integers(0, 12))  # MIDI note of the key
    # I-V-vi-IV and friends: scale degrees as semitone offsets of each chord's root
    progression = [[0, 7, 9, 5], [0, 5, 7, 5], [9, 5, 0, 7], [0, 9, 5, 7]][int(rng.integers(0, 4))]
    minor_on = {9}
    chord_s = rng.uniform(1.0, 2.0)
    beat_s = chord_s / 4
    out = np.zeros(n)
    note_len = int(min(chord_s, 2.5) * sample_rate)
    tn = np.arange(note_len) / sample_rate
    env = (1 - np.exp(-tn / 0.01)) * np.exp(-tn / 0.6)
    tones: dict[int, np.ndarray] = {}  # notes repeat: synthesise each pitch once
    for c, start in enumerate(np.arange(0.0, t_total, chord_s)):
        degree = progression[c % len(progression)]
        third = 3 if degree in minor_on else 4
        chord = [root + degree + 12, root + degree + 12 + third, root + degree + 19]
        for b in range(4):
            onset = int((start + b * beat_s) * sample_rate)
            notes = chord if b % 2 == 0 else chord[1:]
            for midi in [root + degree - 12 * (b == 0), *notes]:
                if midi not in tones:
                    f = 440.0 * 2 ** ((midi - 69) / 12)
                    tone = np.sin(2 * np.pi * f * tn) + 0.3 * np.sin(4 * np.pi * f * tn) + 0.1 * np.sin(6 * np.pi * f * tn)
                    tones[midi] = tone * env
                add_at(out, onset, tones[midi])
    return (out / (np.abs(out).max() + 1e-12)).astype(np.float32)
