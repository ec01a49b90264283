"""Small labelled scenes for the check tests: a textured fixed background, two "hands" that meet on a
click, and the defects the checks must catch (pan, zoom, shake, unrelated clicks, music bed, silent,
still, cut). Pure numpy + cv2, 120 frames at 286 px, so each test renders in milliseconds."""

from __future__ import annotations

import cv2
import numpy as np

N, SIZE, HOP, RATE = 120, 286, 1470, 44100
MARGIN = 80


def _texture(rng, side):
    small = rng.uniform(0, 255, (side // 8, side // 8, 3)).astype(np.float32)
    big = cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 12, (side, side, 3)).astype(np.float32)
    return np.clip(0.6 * big + 50 + fine, 0, 255)


def _click(rng, n=600):
    env = np.exp(-np.arange(n) / 90.0)
    return (rng.normal(0, 0.5, n) * env).astype(np.float32)


def event_frames(seed, n=N):
    rng = np.random.default_rng(seed + 1000)
    frames, t = [], int(rng.integers(8, 20))
    while t < n - 6:
        frames.append(t)
        t += int(rng.integers(12, 30))
    return frames


def scene(defect=None, *, strength=0.0, seed=0, n=N):
    """Returns (frames (n,286,286,3) uint8, audio (n*1470,) float32, event frame indices)."""
    rng = np.random.default_rng(seed)
    canvas = SIZE + 2 * MARGIN
    bg = _texture(rng, canvas)
    if defect == "cut":
        # another room: other walls, other light
        other = np.clip(_texture(np.random.default_rng(seed + 500), canvas) * np.array([0.45, 0.8, 1.6]), 0, 255)
    events = event_frames(seed, n)
    colour = rng.uniform(120, 255, 3)
    y0 = int(rng.integers(SIZE // 3, 2 * SIZE // 3)) + MARGIN
    # hand gap: apart between events, closing over 6 frames to contact at the event
    gap = np.full(n, 70.0)
    for e in events:
        for k in range(7):
            if 0 <= e - k < n:
                gap[e - k] = min(gap[e - k], 70.0 * (k / 6.0) ** 1.5)
        for k in range(1, 8):
            if e + k < n:
                gap[e + k] = min(gap[e + k], 70.0 * k / 8.0)
    jitter = np.random.default_rng(seed + 7).uniform(-1, 1, (n, 2))
    frames = np.empty((n, SIZE, SIZE, 3), np.uint8)
    cx = canvas // 2
    for i in range(n):
        src = other if (defect == "cut" and i >= n // 2) else bg
        img = src.copy()
        j = 0 if defect == "still" else i
        for side in (-1, 1):
            x = int(cx + side * (gap[j] / 2 + 22))
            cv2.circle(img, (x, y0), 22, colour.tolist(), -1)
        dx = dy = 0.0
        zoom = 1.0
        if defect == "pan":
            dx = strength * i - strength * n / 2
        elif defect == "shake":
            dx, dy = strength * jitter[i]
        elif defect == "zoom":
            zoom = (1 + strength / 100.0) ** (i / 30.0)
        m = cv2.getRotationMatrix2D((canvas / 2, canvas / 2), 0, zoom)
        m[:, 2] += (-MARGIN - dx, -MARGIN - dy)
        frames[i] = cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR).astype(np.uint8)
    audio = rng.normal(0, 10 ** (-55 / 20), n * HOP).astype(np.float32)
    click_at = events
    if defect == "unrelated":
        r = np.random.default_rng(seed + 99)
        click_at = sorted(int(x) for x in r.choice(np.arange(3, n - 3), len(events), replace=False))
    for e in click_at:
        c = _click(rng)
        audio[e * HOP : e * HOP + len(c)] += c
    if defect == "music":
        t = np.arange(n * HOP) / RATE
        bed = np.zeros_like(t)
        note_len = int(RATE * 0.25)
        r = np.random.default_rng(seed + 3)
        for k in range(0, len(t), note_len):
            f0 = 220 * 2 ** (r.integers(0, 12) / 12)
            seg = slice(k, k + note_len)
            env = np.minimum(1, np.arange(len(t[seg])) / 200.0) * np.exp(-np.arange(len(t[seg])) / (RATE * 0.2))
            bed[seg] = env * sum(np.sin(2 * np.pi * f0 * h * t[seg]) / h for h in (1, 2, 3))
        peak = max(np.abs(_click(np.random.default_rng(0))).max(), 1e-6)
        bed *= peak * 10 ** (strength / 20) / (np.abs(bed).max() + 1e-9)
        audio = audio + bed.astype(np.float32)
    if defect == "silent":
        audio = np.zeros_like(audio)
    return frames, np.clip(audio, -1, 1).astype(np.float32), events
