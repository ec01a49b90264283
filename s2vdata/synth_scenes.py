"""The four synthetic scenes (mouth, hand, fireworks, sea): what moves, when, and the sound it makes.

Each `plan_<target>` draws everything random about one scene from its rng
(background, colours, positions, sizes, event times) and returns a ScenePlan:
a static canvas, a function that paints the moving parts of frame i onto a
copy of it, and a function that renders the event sounds at given onsets.
Keeping the sound a function of the onsets lets the `unrelated` defect move
the sounds while the picture stays the same.

Timing rule shared by all scenes: frame i shows the scene at time i/fps. An
event happens on frame k (its visual change first shows on frame k, never
before) and its sound starts at the first sample at or after k/fps.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from s2vdata import synth_sound as snd

LINE = cv2.LINE_8  # no anti-aliasing: crisp masks, cheap to draw and to encode


@dataclass(frozen=True)
class ScenePlan:
    """One scene before any defect: static canvas, moving parts, event sounds."""

    canvas: np.ndarray  # (H + 2*margin, W + 2*margin, 3) uint8: the static world, wider than the view
    margin: int  # pixels of world around the view on each side (room for camera moves)
    event_frames: list[int]  # frames on which the visual events happen, sorted
    paint: Callable[[np.ndarray, int], None]  # paints frame i's moving parts onto a canvas copy, in place
    sound: Callable[[list[int], int], np.ndarray]  # (onset sample per event, n) -> event sounds, float32 (n,)
    floor_db: float  # level of the noise floor between events (dBFS RMS)


@dataclass(frozen=True)
class Geometry:
    """Where the view sits in the canvas and how big things are."""

    width: int  # view width in pixels
    height: int  # view height in pixels
    margin: int  # canvas border around the view
    fps: float  # frame rate
    frames: int  # number of frames
    sample_rate: int  # audio rate

    @property
    def short(self) -> int:
        """Short side of the view (sizes scale with it)."""
        return min(self.width, self.height)

    def x(self, frac: float) -> float:
        """Canvas x of a fraction of the view width."""
        return self.margin + frac * self.width

    def y(self, frac: float) -> float:
        """Canvas y of a fraction of the view height."""
        return self.margin + frac * self.height


def _colour(
    rng: np.random.Generator, *, sat: tuple[float, float], val: tuple[float, float], hue: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """Returns a random RGB colour (float, 0..255) within the given HSV ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*sat), rng.uniform(*val))
    return np.array([r, g, b]) * 255.0


def _rgb(c) -> tuple[int, int, int]:
    """Returns a colour as the int tuple cv2 wants."""
    c = np.clip(np.asarray(c, dtype=float), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _smooth_noise(rng: np.random.Generator, *, h: int, w: int, cells: int) -> np.ndarray:
    """Returns (h, w) float noise in about [-1, 1], smooth at the scale of w/cells."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) / 2.0


def _gradient(rng: np.random.Generator, *, h: int, w: int, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Returns an (h, w, 3) float linear gradient from c1 to c2 in a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = xx * np.cos(angle) + yy * np.sin(angle)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    return c1[None, None, :] * (1 - ramp[..., None]) + c2[None, None, :] * ramp[..., None]


def indoor_background(rng: np.random.Generator, geo: Geometry) -> np.ndarray:
    """Returns an (Hc, Wc, 3) uint8 room wall: a gradient, a smooth texture, some stripes and furniture-like blocks."""
    h, w = geo.height + 2 * geo.margin, geo.width + 2 * geo.margin
    c1 = _colour(rng, sat=(0.05, 0.5), val=(0.35, 0.9))
    c2 = _colour(rng, sat=(0.05, 0.5), val=(0.35, 0.9))
    img = _gradient(rng, h=h, w=w, c1=c1, c2=c2)
    img += rng.uniform(8, 22) * _smooth_noise(rng, h=h, w=w, cells=int(rng.integers(5, 10)))[..., None]
    # a wall pattern: real rooms have texture, and a camera check needs background detail to lock on to
    period = rng.uniform(0.05, 0.12) * geo.short
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pattern = int(rng.integers(0, 4))
    if pattern == 0:  # stripes
        img += (rng.uniform(5, 12) * np.sign(np.sin(2 * np.pi * xx / period)))[..., None]
    elif pattern == 1:  # tiles
        img += (rng.uniform(5, 12) * np.sign(np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period)))[..., None]
    elif pattern == 2:  # bricks: rows offset by half a brick
        row = np.floor(yy / (0.5 * period))
        edge = ((yy % (0.5 * period)) < 1.5) | (((xx + 0.5 * period * (row % 2)) % period) < 1.5)
        img -= (rng.uniform(15, 30) * edge)[..., None]
    else:  # dots
        dots = (((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2) < (0.15 * period) ** 2
        img += (rng.uniform(10, 20) * dots)[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(6, 14))):  # pictures, shelves, lamps
        col = _rgb(_colour(rng, sat=(0.1, 0.7), val=(0.2, 0.95)))
        x0, y0 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        if rng.random() < 0.7:
            x1 = x0 + int(rng.uniform(0.05, 0.3) * geo.short)
            y1 = y0 + int(rng.uniform(0.05, 0.3) * geo.short)
            cv2.rectangle(img, (x0, y0), (x1, y1), col, -1, LINE)
            if rng.random() < 0.5:
                frame_col = _rgb(_colour(rng, sat=(0.0, 0.5), val=(0.1, 0.9)))
                cv2.rectangle(img, (x0, y0), (x1, y1), frame_col, max(2, int(0.012 * geo.short)), LINE)
        else:
            cv2.circle(img, (x0, y0), int(rng.uniform(0.03, 0.12) * geo.short), col, -1, LINE)
    return img


def event_frames(
    rng: np.random.Generator, geo: Geometry, *, first_s: tuple[float, float], gap_s: tuple[float, float], tail_s: float
) -> list[int]:
    """Returns irregular event frames: the first in first_s, then gaps drawn from gap_s, ending tail_s before the end.

    The largest gap stays under 4 s so every 4-second clip window holds at least one event.
    """
    frames = [int(round(rng.uniform(*first_s) * geo.fps))]
    last = geo.frames - int(round(tail_s * geo.fps))
    while True:
        nxt = frames[-1] + int(round(rng.uniform(*gap_s) * geo.fps))
        if nxt >= last:
            return [k for k in frames if k < last] or [min(frames[0], max(last - 1, 0))]
        frames.append(nxt)


def _mixed(sounds: list[np.ndarray]):
    """Returns a ScenePlan.sound that mixes the i-th of these sounds in at the i-th onset."""

    def sound(onsets: list[int], n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        for onset, s in zip(onsets, sounds):
            snd.add_at(out, onset, s)
        return out

    return sound


def _skin(rng: np.random.Generator) -> np.ndarray:
    """Returns a skin tone (RGB float), light to dark."""
    light = rng.uniform(0.0, 1.0)
    dark, pale = np.array([95.0, 60.0, 40.0]), np.array([245.0, 205.0, 180.0])
    return dark + (pale - dark) * light + rng.uniform(-8, 8, size=3)


# ---------------------------------------------------------------------------------------------- hand


def plan_hand(rng: np.random.Generator, geo: Geometry) -> ScenePlan:
    """Returns the hand scene: two hands seen from the front meet on each clap, which sounds at the contact frame."""
    s = geo.short
    canvas = indoor_background(rng, geo)
    skin, sleeve = _skin(rng), _colour(rng, sat=(0.2, 0.9), val=(0.2, 0.9))
    cx, cy = geo.x(rng.uniform(0.4, 0.6)), geo.y(rng.uniform(0.4, 0.55))
    half_w = rng.uniform(0.075, 0.1) * s  # palm half width: a hand is about a fifth of the frame
    half_h = half_w * rng.uniform(1.8, 2.3)
    rest_gap = rng.uniform(0.28, 0.42) * s  # between the palms' inner edges at rest
    spread = rng.uniform(0.05, 0.2) * s  # how far the forearms splay out towards the bottom
    events = event_frames(rng, geo, first_s=(0.3, 1.5), gap_s=(0.6, 2.6), tail_s=0.4)

    gap = np.full(geo.frames, rest_gap)
    claps = []
    for k in events:
        approach = int(rng.integers(round(0.15 * geo.fps), round(0.25 * geo.fps) + 1))
        hold = int(rng.integers(1, 3))
        part = int(rng.integers(round(0.15 * geo.fps), round(0.25 * geo.fps) + 1))
        for i in range(max(k - approach, 0), min(k + hold + part, geo.frames)):
            if i < k:  # closing, fastest at the contact
                g = rest_gap * np.sin(0.5 * np.pi * (k - i) / approach)
            elif i < k + hold:
                g = 0.0
            else:
                g = rest_gap * np.sin(0.5 * np.pi * (i - k - hold + 1) / (part + 1))
            gap[i] = min(gap[i], g)
        claps.append(snd.clap(rng, sample_rate=geo.sample_rate) * rng.uniform(0.35, 0.8))

    bottom = canvas.shape[0]

    def paint(img: np.ndarray, i: int) -> None:
        g = gap[i]
        lift = -0.04 * s * (1.0 - g / rest_gap)  # hands rise a little as they meet
        for side in (-1, 1):
            # whole pixels, mirrored about the meeting column, so the palms touch exactly when g == 0
            px = round(cx) + side * (round(g / 2) + round(half_w))
            py = cy + lift
            arm = np.array(
                [
                    [px - 0.7 * half_w, py + 0.5 * half_h],
                    [px + 0.7 * half_w, py + 0.5 * half_h],
                    [px + side * spread + 0.9 * half_w, bottom],
                    [px + side * spread - 0.9 * half_w, bottom],
                ],
                dtype=np.int32,
            )
            cv2.fillPoly(img, [arm], _rgb(skin * 0.92), LINE)
            sleeve_top = py + 0.5 * half_h + 0.6 * (bottom - py - 0.5 * half_h)
            sl = arm.copy()
            sl[:2, 1] = int(sleeve_top)
            sl[0, 0] = int(px + side * spread * 0.6 - 0.9 * half_w)
            sl[1, 0] = int(px + side * spread * 0.6 + 0.9 * half_w)
            cv2.fillPoly(img, [sl], _rgb(sleeve), LINE)
            cv2.ellipse(img, (int(px), int(py)), (round(half_w), int(half_h)), 0, 0, 360, _rgb(skin), -1, LINE)
            thumb = (int(px - side * 0.1 * half_w), int(py + 0.05 * half_h))
            cv2.ellipse(img, thumb, (int(0.35 * half_w), int(0.45 * half_h)), side * 25, 0, 360, _rgb(skin * 0.85), -1, LINE)

    return ScenePlan(canvas=canvas, margin=geo.margin, event_frames=events, paint=paint, sound=_mixed(claps), floor_db=-50.0)


# --------------------------------------------------------------------------------------------- mouth

# How each vowel shapes the mouth: (opening height, width), relative to the face's widest "a".
MOUTH_SHAPE = {"a": (1.0, 1.0), "e": (0.6, 1.08), "i": (0.35, 1.12), "o": (0.8, 0.72), "u": (0.45, 0.58)}


def plan_mouth(rng: np.random.Generator, geo: Geometry) -> ScenePlan:
    """Returns the mouth scene: a face whose mouth opens for each spoken vowel; the voice follows the opening."""
    s, sr = geo.short, geo.sample_rate
    canvas = indoor_background(rng, geo)
    skin = _skin(rng)
    hair = _colour(rng, sat=(0.2, 0.8), val=(0.05, 0.6), hue=(0.0, 0.15))
    shirt = _colour(rng, sat=(0.2, 0.9), val=(0.2, 0.9))
    lips = skin * np.array([0.85, 0.55, 0.55])
    cx, cy = geo.x(rng.uniform(0.42, 0.58)), geo.y(rng.uniform(0.42, 0.52))
    fw = rng.uniform(0.3, 0.4) * s  # face half width: a close-up, the mouth must read at 64x64
    fh = fw * rng.uniform(1.2, 1.4)
    mw = fw * rng.uniform(0.38, 0.48)  # mouth half width at rest
    mh = mw * rng.uniform(0.5, 0.7)  # largest opening half height
    my = cy + 0.5 * fh
    f0_voice = rng.uniform(95.0, 230.0)

    # words of 1-3 syllables; the mouth closes for at least 2 frames between syllables
    events, lengths, syllables = [], [], []
    k = int(round(rng.uniform(0.2, 1.0) * geo.fps))
    end = geo.frames - int(0.5 * geo.fps)
    while True:
        word = []
        for _ in range(int(rng.integers(1, 4))):
            length = int(round(rng.uniform(0.15, 0.4) * geo.fps))
            if k + length >= end:
                break
            word.append((k, length))
            k += length + int(rng.integers(2, max(3, round(0.12 * geo.fps)) + 1))
        if not word:
            break
        for onset, length in word:
            events.append(onset)
            lengths.append(length)
        k = word[-1][0] + word[-1][1] + int(round(rng.uniform(0.3, 1.4) * geo.fps))

    opening = np.zeros(geo.frames)
    shape_w = np.ones(geo.frames)
    for onset, length in zip(events, lengths):
        name = "aeiou"[int(rng.integers(0, 5))]
        loud = rng.uniform(0.4, 0.8)
        n_samples = int(round(length / geo.fps * sr))
        u = np.arange(n_samples) / sr
        env = _syllable_envelope(u, length / geo.fps)
        glide = np.linspace(1.0 + rng.uniform(-0.05, 0.1), 1.0 - rng.uniform(0.0, 0.12), n_samples)
        f0 = f0_voice * glide * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * u))
        syllables.append(snd.vowel(envelope=env * loud, f0=f0, vowel_name=name, sample_rate=sr))
        frames_u = np.arange(length) / geo.fps
        height, width = MOUTH_SHAPE[name]
        opening[onset : onset + length] = _syllable_envelope(frames_u, length / geo.fps) * height * (0.6 + 0.5 * loud)
        shape_w[onset : onset + length] = width

    def paint(img: np.ndarray, i: int) -> None:
        bottom = img.shape[0]
        cv2.ellipse(img, (int(cx), int(cy + 1.6 * fh)), (int(1.6 * fw), int(0.9 * fh)), 0, 0, 360, _rgb(shirt), -1, LINE)
        cv2.rectangle(
            img,
            (int(cx - 0.45 * fw), int(cy + 0.5 * fh)),
            (int(cx + 0.45 * fw), int(min(cy + 1.1 * fh, bottom))),
            _rgb(skin * 0.85),
            -1,
            LINE,
        )
        cv2.ellipse(img, (int(cx), int(cy - 0.15 * fh)), (int(1.08 * fw), int(1.0 * fh)), 0, 0, 360, _rgb(hair), -1, LINE)
        open_h = opening[i] * mh
        drop = 0.6 * open_h  # the jaw drops as the mouth opens: the chin moves with the sound too
        cv2.ellipse(img, (int(cx), int(cy)), (int(fw), int(fh)), 0, 0, 360, _rgb(skin), -1, LINE)
        cv2.ellipse(img, (int(cx), int(cy + 0.35 * fh + drop)), (int(0.8 * fw), int(0.65 * fh)), 0, 0, 360, _rgb(skin), -1, LINE)
        for side in (-1, 1):
            ex, ey = int(cx + side * 0.38 * fw), int(cy - 0.18 * fh)
            cv2.ellipse(img, (ex, ey), (int(0.18 * fw), int(0.09 * fh)), 0, 0, 360, (240, 240, 240), -1, LINE)
            cv2.circle(img, (ex, ey), int(0.08 * fw), (40, 30, 25), -1, LINE)
            cv2.line(
                img,
                (int(ex - 0.2 * fw), int(ey - 0.16 * fh)),
                (int(ex + 0.2 * fw), int(ey - 0.18 * fh)),
                _rgb(hair * 0.7),
                max(2, int(0.03 * fw)),
                LINE,
            )
        cv2.ellipse(img, (int(cx), int(cy + 0.15 * fh)), (int(0.1 * fw), int(0.14 * fh)), 0, 0, 360, _rgb(skin * 0.85), -1, LINE)
        w = mw * shape_w[i]
        mc = my + 0.5 * drop
        cv2.ellipse(img, (int(cx), int(mc)), (int(w), int(0.16 * mw + open_h)), 0, 0, 360, _rgb(lips), -1, LINE)
        if open_h >= 1.0:
            cv2.ellipse(img, (int(cx), int(mc)), (int(0.82 * w), int(open_h)), 0, 0, 360, (60, 15, 20), -1, LINE)
            cv2.ellipse(
                img,
                (int(cx), int(mc - 0.7 * open_h)),
                (int(0.55 * w), max(1, int(0.25 * open_h))),
                0,
                0,
                360,
                (235, 235, 225),
                -1,
                LINE,
            )
        else:
            cv2.line(img, (int(cx - 0.85 * w), int(mc)), (int(cx + 0.85 * w), int(mc)), (90, 30, 35), 2, LINE)

    return ScenePlan(canvas=canvas, margin=geo.margin, event_frames=events, paint=paint, sound=_mixed(syllables), floor_db=-50.0)


def _syllable_envelope(u: np.ndarray, duration: float) -> np.ndarray:
    """Returns the opening (0..1) of a syllable at times u since its onset: a jump to 0.35, up to 1, closing at the end."""
    attack, release = 0.05, 0.07
    rise = np.minimum(1.0, 0.35 + 0.65 * u / attack)
    fall = np.clip((duration - u) / release, 0.0, 1.0)
    return np.where((u >= 0) & (u < duration), rise * fall, 0.0)


# ----------------------------------------------------------------------------------------- fireworks


def night_sky(rng: np.random.Generator, geo: Geometry) -> np.ndarray:
    """Returns an (Hc, Wc, 3) uint8 night sky with stars, a faint glow and a city skyline at the bottom."""
    h, w = geo.height + 2 * geo.margin, geo.width + 2 * geo.margin
    # from deep night to dusk: the glow at the horizon is city light or the last of the sunset
    top = _colour(rng, sat=(0.4, 0.9), val=(0.02, 0.2), hue=(0.5, 0.8))
    low = _colour(rng, sat=(0.2, 0.9), val=(0.1, 0.45), hue=(0.55, 1.1))
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = top * (1 - yy) + low * yy + np.zeros((1, w, 1), dtype=np.float32)
    img += 6 * _smooth_noise(rng, h=h, w=w, cells=6)[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(40, 120))):
        v = int(rng.uniform(120, 255))
        img[int(rng.integers(0, h)), int(rng.integers(0, w))] = (v, v, int(min(255, v + 20)))
    x, ground = 0, geo.y(rng.uniform(0.82, 0.92))
    dark = _rgb(_colour(rng, sat=(0.2, 0.6), val=(0.02, 0.08)))
    while x < w:
        bw = int(rng.uniform(0.04, 0.12) * geo.short)
        bh = int(rng.uniform(0.03, 0.25) * geo.short)
        cv2.rectangle(img, (x, int(ground - bh)), (x + bw, h), dark, -1, LINE)
        for _ in range(int(rng.integers(0, 6))):
            wx, wy = x + int(rng.uniform(0, bw - 3)), int(rng.uniform(ground - bh, ground))
            cv2.rectangle(img, (wx, wy), (wx + 2, wy + 2), (200, 180, 90), -1, LINE)
        x += bw
    return img


def plan_fireworks(rng: np.random.Generator, geo: Geometry) -> ScenePlan:
    """Returns the fireworks scene: a rocket rises for 0.3-0.8 s, bursts on the bang's frame, and fades over about 1 s."""
    s = geo.short
    canvas = night_sky(rng, geo)
    sky = canvas.reshape(-1, 3).mean(axis=0)
    events = event_frames(rng, geo, first_s=(0.9, 1.6), gap_s=(0.5, 2.6), tail_s=0.4)
    bursts = []
    for k in events:
        rise = int(round(rng.uniform(0.3, 0.8) * geo.fps))
        xb, yb = geo.x(rng.uniform(0.2, 0.8)), geo.y(rng.uniform(0.15, 0.5))
        n_part = int(rng.integers(50, 110))
        angles = np.linspace(0, 2 * np.pi, n_part, endpoint=False) + rng.uniform(0, 2 * np.pi)
        bursts.append(
            dict(
                k=k,
                rise=rise,
                xb=xb,
                yb=yb,
                x0=xb + rng.uniform(-0.08, 0.08) * s,
                y0=geo.y(1.0) + geo.margin * 0.5,
                radius=rng.uniform(0.15, 0.3) * s,
                dirs=np.stack([np.cos(angles), np.sin(angles)], axis=1) * rng.uniform(0.35, 1.0, size=(n_part, 1)),
                colour=_colour(rng, sat=(0.5, 1.0), val=(0.9, 1.0)),
                fade=rng.uniform(0.3, 0.45),  # brightness e-folding time: gone after about 1 s
                gravity=rng.uniform(0.05, 0.2) * s,
                bang=snd.bang(rng, sample_rate=geo.sample_rate) * rng.uniform(0.4, 0.9),
            )
        )
    dot = max(2, int(round(0.01 * s)))

    def paint(img: np.ndarray, i: int) -> None:
        for b in bursts:
            k, rise = b["k"], b["rise"]
            if k - rise <= i < k:
                u = (i - (k - rise)) / rise
                prev = max(u - 1.0 / rise, 0.0)
                pos = [(b["x0"] + (b["xb"] - b["x0"]) * v, b["y0"] + (b["yb"] - b["y0"]) * (1 - (1 - v) ** 2)) for v in (prev, u)]
                cv2.line(
                    img,
                    (int(pos[0][0]), int(pos[0][1]) + 3 * dot),
                    (int(pos[1][0]), int(pos[1][1])),
                    (200, 140, 60),
                    max(1, dot // 2),
                    LINE,
                )
                cv2.circle(img, (int(pos[1][0]), int(pos[1][1])), dot, (255, 230, 170), -1, LINE)
            elif i >= k:
                u = (i - k) / geo.fps
                light = np.exp(-u / b["fade"])
                if light < 0.03:
                    continue
                r = b["radius"] * (1 - np.exp(-(u + 0.025) / 0.15))
                pts = b["dirs"] * r + np.array([b["xb"], b["yb"] + 0.5 * b["gravity"] * u * u])
                col = _rgb(sky + (b["colour"] - sky) * light)
                size = max(1, int(round(dot * (0.6 + 0.4 * light))))
                for x, y in pts.astype(int):
                    cv2.circle(img, (int(x), int(y)), size, col, -1, LINE)
                if u < 0.1:  # the white flash of the burst itself, over its first sparks
                    flash = np.exp(-u / 0.04)
                    core = int(0.05 * s * (1 + u / 0.1))
                    white = 0.8 * 255 + 0.2 * b["colour"]
                    cv2.circle(img, (int(b["xb"]), int(b["yb"])), core, _rgb(sky + (white - sky) * flash), -1, LINE)

    return ScenePlan(
        canvas=canvas,
        margin=geo.margin,
        event_frames=events,
        paint=paint,
        sound=_mixed([b["bang"] for b in bursts]),
        floor_db=-50.0,
    )


# ----------------------------------------------------------------------------------------------- sea


def plan_sea(rng: np.random.Generator, geo: Geometry) -> ScenePlan:
    """Returns the sea scene: waves roll in and crash into foam on the beach; the roar's loudness follows the foam."""
    s, sr = geo.short, geo.sample_rate
    hc, wc = geo.height + 2 * geo.margin, geo.width + 2 * geo.margin
    horizon, shore = geo.y(rng.uniform(0.2, 0.35)), geo.y(rng.uniform(0.55, 0.66))
    yy = np.arange(hc, dtype=np.float32)[:, None, None]
    sky_top = _colour(rng, sat=(0.3, 0.7), val=(0.6, 0.95), hue=(0.52, 0.62))
    sky_low = _colour(rng, sat=(0.05, 0.3), val=(0.8, 1.0), hue=(0.0, 1.0))
    sea_far = _colour(rng, sat=(0.5, 0.9), val=(0.25, 0.5), hue=(0.5, 0.62))
    sea_near = _colour(rng, sat=(0.4, 0.8), val=(0.45, 0.75), hue=(0.42, 0.55))
    sand_a = _colour(rng, sat=(0.2, 0.45), val=(0.6, 0.9), hue=(0.08, 0.14))
    sand_b = sand_a * rng.uniform(0.75, 0.95)
    t_sky = np.clip(yy / max(horizon, 1), 0, 1)
    t_sea = np.clip((yy - horizon) / (shore - horizon), 0, 1)
    t_sand = np.clip((yy - shore) / (hc - shore), 0, 1)
    img = np.where(
        yy < horizon,
        sky_top * (1 - t_sky) + sky_low * t_sky,
        np.where(yy < shore, sea_far * (1 - t_sea) + sea_near * t_sea, sand_a * (1 - t_sand) + sand_b * t_sand),
    )
    img = img + np.zeros((1, wc, 1), dtype=np.float32)
    texture = _smooth_noise(rng, h=hc, w=wc, cells=int(rng.integers(6, 12)))
    img += (10 * texture)[..., None]
    xx = np.arange(wc, dtype=np.float32)[None, :]
    ripples = (
        np.sin(2 * np.pi * np.maximum(yy[..., 0] - horizon, 0) ** 0.8 / 6.0 + 0.02 * xx)
        * (yy[..., 0] > horizon)
        * (yy[..., 0] < shore)
    )
    img += (8 * ripples)[..., None]
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):  # clouds and rocks give the picture fixed landmarks
        cloud = (int(rng.uniform(0, wc)), int(rng.uniform(0, horizon * 0.9)))
        cv2.ellipse(
            canvas,
            cloud,
            (int(rng.uniform(0.06, 0.18) * s), int(rng.uniform(0.02, 0.05) * s)),
            0,
            0,
            360,
            (245, 245, 245),
            -1,
            LINE,
        )
    for _ in range(int(rng.integers(1, 5))):
        rock = (int(rng.uniform(0, wc)), int(rng.uniform(shore + 0.35 * (hc - shore), hc)))
        cv2.ellipse(
            canvas,
            rock,
            (int(rng.uniform(0.02, 0.07) * s), int(rng.uniform(0.015, 0.04) * s)),
            0,
            0,
            360,
            _rgb(sand_a * 0.45),
            -1,
            LINE,
        )

    events = event_frames(rng, geo, first_s=(1.1, 2.0), gap_s=(1.2, 3.2), tail_s=0.5)
    foam_tex = 0.6 + 0.4 * np.clip(_smooth_noise(rng, h=hc, w=wc, cells=int(wc / (0.03 * s))) + 0.5, 0, 1)
    crest_col = np.array(sea_far) * 0.7
    beach = hc - shore
    waves = []
    for k in events:
        waves.append(
            dict(
                k=k,
                approach=int(round(rng.uniform(0.8, 1.5) * geo.fps)),
                amp=rng.uniform(0.4, 0.9),
                fade=rng.uniform(0.7, 1.3),  # foam (and roar) e-folding time in seconds
                depth=rng.uniform(0.3, 0.75) * beach,
                phase=rng.uniform(0, 2 * np.pi),
                wavelength=rng.uniform(0.3, 0.8) * s,
                splash=snd.splash(rng, sample_rate=sr) * rng.uniform(0.5, 0.8),
            )
        )
    roar = snd.roar_noise(rng, n=int(round(geo.frames / geo.fps * sr)) + sr, sample_rate=sr)
    xs = np.arange(0, wc + 8, 8)
    top = int(shore - 0.03 * s)
    rows = np.arange(top, hc, dtype=np.float32)[:, None]

    def paint(img: np.ndarray, i: int) -> None:
        for w in waves:
            k = w["k"]
            if k - w["approach"] <= i < k:  # the swell rolling in, silent
                p = (i - (k - w["approach"])) / w["approach"]
                y = horizon + (shore - horizon) * p**1.5
                thick = 2 + 0.05 * s * p
                wav = y + 0.3 * thick * np.sin(2 * np.pi * xs / w["wavelength"] + w["phase"])
                band = np.concatenate([np.stack([xs, wav - thick], 1), np.stack([xs[::-1], wav[::-1]], 1)]).astype(np.int32)
                cv2.fillPoly(img, [band], _rgb(crest_col), LINE)
                cap = np.stack([xs, wav - thick], 1).astype(np.int32)
                cv2.polylines(img, [cap], False, (240, 245, 245), 1 + int(3 * p), LINE)
            elif i >= k:
                u = (i - k) / geo.fps
                alpha = min(1.0, _foam(np.array([u]), w["amp"], w["fade"])[0] / (0.6 * w["amp"]))
                if alpha < 0.03:
                    continue
                reach = w["depth"] * (0.25 + 0.75 * (1 - np.exp(-u / 0.2))) * np.exp(-u / (3 * w["fade"]))
                edge = shore + reach * (0.8 + 0.2 * np.sin(2 * np.pi * np.arange(wc) / w["wavelength"] + w["phase"]))
                mask = (rows < edge[None, :]).astype(np.float32) * foam_tex[top:hc] * alpha
                region = img[top:hc].astype(np.float32)
                img[top:hc] = (region + (250.0 - region) * mask[..., None]).astype(np.uint8)

    def sound(onsets: list[int], n: int) -> np.ndarray:
        env = np.zeros(n, dtype=np.float32)
        for onset, w in zip(onsets, waves):
            length = int(6 * w["fade"] * sr)
            snd.add_at(env, onset, _foam(np.arange(length) / sr, w["amp"], w["fade"]).astype(np.float32))
        out = env * roar[:n] * 0.3
        for onset, w in zip(onsets, waves):  # the slap of the crash: broadband and short
            snd.add_at(out, onset, w["splash"])
        return out

    return ScenePlan(canvas=canvas, margin=geo.margin, event_frames=events, paint=paint, sound=sound, floor_db=-45.0)


def _foam(u: np.ndarray, amp: float, fade: float) -> np.ndarray:
    """Returns the foam amount at times u after the crash: a jump to 60 %, a swell to full, an exponential fade."""
    return np.where(u >= 0, amp * (0.6 + 0.4 * (1 - np.exp(-u / 0.06))) * np.exp(-u / fade), 0.0)


PLANS: dict[str, Callable[[np.random.Generator, Geometry], ScenePlan]] = {
    "mouth": plan_mouth,
    "hand": plan_hand,
    "fireworks": plan_fireworks,
    "sea": plan_sea,
}
