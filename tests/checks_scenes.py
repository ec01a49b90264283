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


def scene(defect=None, *, strength=0.0, seed=0, n=N, events=None):
    """Returns (frames (n,286,286,3) uint8, audio (n*1470,) float32, event frame indices); `events` overrides the clap frames."""
    rng = np.random.default_rng(seed)
    canvas = SIZE + 2 * MARGIN
    bg = _texture(rng, canvas)
    if defect == "cut":
        # another room: other walls, other light
        other = np.clip(_texture(np.random.default_rng(seed + 500), canvas) * np.array([0.45, 0.8, 1.6]), 0, 255)
    events = event_frames(seed, n) if events is None else list(events)
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


def _night(rng, side):
    yy = np.linspace(0, 1, side, dtype=np.float32)[:, None, None]
    top, low = rng.uniform(5, 30, 3), rng.uniform(20, 70, 3)
    img = top * (1 - yy) + low * yy + np.zeros((1, side, 1), np.float32)
    img += rng.normal(0, 1.5, (side, side, 1)).astype(np.float32)
    for _ in range(int(rng.integers(30, 80))):
        img[int(rng.integers(0, side)), int(rng.integers(0, side))] = rng.uniform(120, 255)
    # a skyline: the texture a fixed camera gets its corners from
    x = 0
    while x < side:
        w, h = int(rng.integers(10, 40)), int(rng.integers(10, 70))
        img[side - h :, x : x + w] = rng.uniform(2, 15)
        for _ in range(int(rng.integers(0, 4))):
            wx, wy = x + int(rng.integers(0, max(1, w - 3))), side - int(rng.integers(3, max(4, h)))
            img[wy : wy + 2, wx : wx + 2] = (200, 180, 90)
        x += w
    return img


def bang_sound(rng, *, n=None):
    """Returns a short firework bang: a crack and a low thump, 0.1-0.3 s, peak 1."""
    n = n or int(RATE * rng.uniform(0.1, 0.3))
    t = np.arange(n) / RATE
    noise = rng.normal(0, 1, n)
    spec = np.fft.rfft(noise)
    f = np.fft.rfftfreq(n, 1 / RATE)
    low = np.fft.irfft(spec / (1 + (f / rng.uniform(300, 900)) ** 2), n)
    x = noise * np.exp(-t / 0.004) + 3 * low / (np.abs(low).max() + 1e-9) * np.exp(-t / rng.uniform(0.03, 0.08))
    return (x / np.abs(x).max()).astype(np.float32)


def burst_scene(*, seed=0, bursts=1, n=N, floor_db=-60.0, at=None):
    """Returns (frames, audio, burst frames) of a fixed camera on a night sky with `bursts` short bursts, each with its bang.

    A burst is a small ring of sparks that expands and fades within ~0.6 s
    (18 frames) after a one-frame flash; its bang is 0.1-0.3 s long. Windows
    where one such event happens in 4 s of quiet are what the single-event
    measures must keep. `at` overrides the burst frames.
    """
    rng = np.random.default_rng(seed)
    sky = _night(rng, SIZE)
    lo, hi = 10, n - 25
    drawn = sorted(int(x) for x in rng.choice(np.arange(lo, hi, 15), size=bursts, replace=False)) if bursts else []
    at = drawn if at is None else sorted(at)
    params = [
        (
            rng.uniform(50, SIZE - 50),
            rng.uniform(40, SIZE * 0.55),
            rng.uniform(18, 45),
            rng.uniform(100, 255, 3),
            rng.uniform(0, 2 * np.pi),
            int(rng.integers(24, 48)),
        )
        for _ in at
    ]
    frames = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        img = sky.copy()
        for k, (x0, y0, radius, colour, phase, parts) in zip(at, params):
            u = i - k
            if 0 <= u < 20:
                light = np.exp(-u / 7.0)
                r = radius * (1 - np.exp(-(u + 1) / 4.0))
                ang = phase + np.linspace(0, 2 * np.pi, parts, endpoint=False)
                for a in ang:
                    px, py = int(x0 + r * np.cos(a)), int(y0 + r * np.sin(a) + 0.05 * u * u)
                    cv2.circle(
                        img, (px, py), 2, (colour * light + img[min(py, SIZE - 1), min(px, SIZE - 1)] * (1 - light)).tolist(), -1
                    )
                if u == 0:
                    cv2.circle(img, (int(x0), int(y0)), 8, (255, 250, 230), -1)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    audio = rng.normal(0, 10 ** (floor_db / 20), n * HOP).astype(np.float32)
    for k in at:
        b = bang_sound(rng) * rng.uniform(0.3, 0.9)
        start = k * HOP
        audio[start : start + len(b)] += b[: len(audio) - start]
    return frames, np.clip(audio, -1, 1).astype(np.float32), at
