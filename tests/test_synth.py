"""Synthetic sources: deterministic, the sound starts on the frame of its visual event, each defect really applied,
and synth_sources writes real MP4 files that probe and decode back."""

from __future__ import annotations

import hashlib
import itertools
from functools import lru_cache

import cv2
import numpy as np
import pytest

from s2vdata.synth import DEFECTS, SAMPLE_RATES, SIZES, TARGETS, onset_sample, render, synth_sources

SECONDS = 4.0


@lru_cache(maxsize=None)
def clip(
    target: str,
    *,
    seed: int = 3,
    defect: str | None = None,
    strength: float | None = None,
    fps: float = 30.0,
    width: int = 320,
    height: int = 320,
    n: int | None = None,
):
    """Returns (scene, frames array, the first n frames or all) for a short render, cached across tests."""
    scene = render(target, seed=seed, seconds=SECONDS, fps=fps, width=width, height=height, defect=defect, strength=strength)
    return scene, np.stack(list(itertools.islice(scene.frames(), n)))


def frame_hash(frames: np.ndarray) -> str:
    return hashlib.sha256(frames.tobytes()).hexdigest()


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)) + 1e-12)


def test_same_seed_same_scene_other_seed_other_scene():
    a = render("hand", seed=11, seconds=2.0)
    b = render("hand", seed=11, seconds=2.0)
    c = render("hand", seed=12, seconds=2.0)
    fa, fb, fc = (np.stack(list(s.frames())) for s in (a, b, c))
    assert frame_hash(fa) == frame_hash(fb)
    assert a.audio.tobytes() == b.audio.tobytes()
    assert a.events_s == b.events_s
    assert frame_hash(fa) != frame_hash(fc)
    assert a.audio.tobytes() != c.audio.tobytes()
    # the frame factory gives a fresh, identical iterator every call
    assert frame_hash(np.stack(list(a.frames()))) == frame_hash(fa)


@pytest.mark.parametrize("target", TARGETS)
def test_scene_shape_and_levels(target):
    scene, frames = clip(target)
    assert frames.shape == (round(SECONDS * 30), 320, 320, 3) and frames.dtype == np.uint8
    assert scene.audio.dtype == np.float32 and scene.audio.shape == (round(SECONDS * 44100),)
    assert np.abs(scene.audio).max() <= 1.0
    assert len(scene.events_s) >= 1 and scene.events_s == scene.motion_events_s
    # between events a low noise floor, never digital zero: the quietest 50 ms of the source sits near -50 dBFS
    win = 2205
    levels = [rms(scene.audio[i : i + win]) for i in range(0, len(scene.audio) - win, win)]
    assert -60 < 20 * np.log10(min(levels)) < -40
    # events are loud: peaks 30 dB and more over the floor
    assert np.abs(scene.audio).max() > 30 * min(levels)


def _onset_jump(audio: np.ndarray, onset: int, w: int = 128, *, broadband_only: bool = False) -> float:
    """Returns how much the sound jumps at `onset`: energy of the w samples from it over the w before it.

    Taken as the larger of the ratio on the signal and on its first difference: every event
    starts broadband (clap, crack, splash), where the low tails of earlier events (a bang's
    rumble, the surf) do not mask it, and a vowel starts loud against the floor.
    """
    x = audio[max(onset - w, 1) - 1 : onset + w].astype(np.float64)
    d = np.diff(x)
    broadband = rms(d[-w:]) / rms(d[:-w])
    return broadband if broadband_only else max(rms(x[-w:]) / rms(x[1:-w]), broadband)


class _Int32Frames:
    """Frames converted to int32 one at a time, on access (the whole clip at once would take 200 MB)."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frames[i].astype(np.int32)


def _visual_change(target: str, frames: np.ndarray, k: int) -> tuple[float, float]:
    """Returns (change on frame k, largest change on the frames just before it) for the target's visual event."""
    f = _Int32Frames(frames)
    if target == "mouth":
        # the mouth is closed and nothing moves before a syllable: frame k is the first that differs
        change = lambda i: float(np.abs(f[i] - f[i - 1]).sum())  # noqa: E731
        return change(k), change(k - 1)
    if target == "hand":
        # at contact the palms cover the middle of the gap they leave at rest (frame 0), and not a frame before
        changed = np.abs(f[k] - f[0]).sum(-1) > 30
        ys, xs = np.nonzero(changed)
        cx = int(np.median(xs))  # the hands and arms are symmetric about the meeting point
        rows = changed[:, cx - 1 : cx + 2].all(axis=1)
        y = int(np.nonzero(rows)[0][0]) + 3 if rows.any() else int(ys.min())
        covered = lambda i: bool((np.abs(f[i][y, cx - 1 : cx + 2] - f[0][y, cx - 1 : cx + 2]).sum(-1) > 30).all())  # noqa: E731
        return float(covered(k)), float(max(covered(i) for i in range(max(k - 8, 1), k)))
    if target == "fireworks":
        # the burst flashes on frame k: many pixels turn much brighter at once
        brighter = lambda i: float(((f[i] - f[i - 1]).sum(-1) > 200).sum())  # noqa: E731
        return brighter(k), max(brighter(i) for i in range(max(k - 3, 1), k))
    # sea: foam (near-white pixels) appears on the beach on frame k
    white = lambda i: float((f[i].min(-1) > 215).sum())  # noqa: E731
    return white(k) - white(k - 1), max(white(i) - white(i - 1) for i in range(max(k - 3, 1), k))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("seed", [3, 8])
def test_sound_starts_on_the_frame_of_the_visual_event(target, seed):
    scene, frames = clip(target, seed=seed)
    for t in scene.motion_events_s:
        k = round(t * scene.fps)
        assert abs(k - t * scene.fps) < 1e-9, "events lie on the frame grid"
        now, before = _visual_change(target, frames, k)
        assert now > 2 * before and now > 0, f"{target} seed {seed}: no visual event on frame {k} ({now} vs {before})"
        onset = onset_sample(t, scene.sample_rate)
        assert _onset_jump(scene.audio, onset) > 4, f"{target}: no sound onset at sample {onset}"
        # and no onset just before it: the sound does not lead the picture
        assert _onset_jump(scene.audio, onset - 512, w=256, broadband_only=True) < 2


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001])
def test_onsets_follow_other_frame_rates_and_sizes(fps):
    scene, frames = clip("hand", seed=5, fps=fps, width=288, height=384)
    assert frames.shape[1:] == (384, 288, 3)
    for t in scene.events_s:
        k = round(t * fps)
        onset = onset_sample(k / fps, scene.sample_rate)
        assert _onset_jump(scene.audio, onset) > 4
        now, before = _visual_change("hand", frames, k)
        assert now > before


def test_hand_events_are_irregular_and_spaced():
    gaps = []
    for seed in range(4):
        scene = render("hand", seed=seed, seconds=12.0)
        n = len(scene.events_s)
        assert 3 <= n <= 10
        d = np.diff(scene.events_s)
        assert d.min() >= 0.5 and d.max() < 4.0
        gaps.extend(d.tolist())
    assert np.std(gaps) > 0.2  # not a metronome: the model must listen


def test_fireworks_rise_before_the_burst_and_fade_within_about_a_second():
    scene, frames = clip("fireworks", seed=4)
    sky = frames[0].astype(np.int32)
    k = round(scene.motion_events_s[0] * scene.fps)
    moving = [int((np.abs(frames[i].astype(np.int32) - sky).sum(-1) > 60).sum()) for i in range(k)]
    # something moves in the 0.3 s before the burst (the rocket), nothing 1 s before launch at the start
    assert min(moving[k - 9 : k]) > 0
    lit = lambda i: float(np.clip(frames[i].astype(np.int32) - sky, 0, None).sum())  # noqa: E731
    peak = max(lit(i) for i in range(k, k + 6))
    later = [e for e in scene.motion_events_s if e > scene.motion_events_s[0]]
    if not later or later[0] - scene.motion_events_s[0] > 1.6:
        assert lit(k + round(1.5 * scene.fps)) < 0.25 * peak


@pytest.mark.parametrize("target", TARGETS)
def test_64px_strip_shows_the_motion(target):
    """After the trainer's crop 286 -> 256 and resize to 64, the moving part still changes many pixels."""
    scene, frames = clip(target, seed=3)
    k = round(scene.motion_events_s[0] * scene.fps)

    def small(img):
        side = min(img.shape[:2])
        y0, x0 = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        sq = cv2.resize(img[y0 : y0 + side, x0 : x0 + side], (286, 286), interpolation=cv2.INTER_AREA)
        return cv2.resize(sq[15:271, 15:271], (64, 64), interpolation=cv2.INTER_AREA).astype(np.int32)

    before = 0 if target == "hand" else k - 1
    after = k if target == "hand" else k + 3  # a mouth open, sparks spread, foam on the sand
    changed = (np.abs(small(frames[after]) - small(frames[before])).sum(-1) > 40).sum()
    assert changed >= 40


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb)
    return dx, dy


@pytest.mark.parametrize("strength", [1.0, 4.0])
def test_pan_moves_the_camera_by_strength_pixels_per_frame(strength):
    scene, frames = clip("hand", seed=6, defect="pan", strength=strength, width=384, height=288, n=60)
    expected = strength * 288 / 286
    speeds = [np.hypot(*_shift(frames[i - 1], frames[i])) for i in range(1, 60)]
    assert np.median(speeds) == pytest.approx(expected, rel=0.15)
    assert scene.audio.tobytes() != b"" and scene.events_s == scene.motion_events_s


def test_pan_keeps_the_sound_and_the_clean_scene_underneath():
    clean, cf = clip("hand", seed=6, n=30)
    pan, pf = clip("hand", seed=6, defect="pan", strength=2.0, n=30)
    assert pan.audio.tobytes() == clean.audio.tobytes()
    assert frame_hash(pf) != frame_hash(cf)
    # frame 0 is the clean view (the camera starts where the fixed camera stands)
    assert np.abs(pf[0].astype(int) - cf[0].astype(int)).mean() < 1.0


def test_shake_jitters_by_up_to_strength_pixels():
    clean, cf = clip("sea", seed=1, n=60)
    scene, frames = clip("sea", seed=1, defect="shake", strength=6.0, n=60)
    px = 6.0 * 320 / 286
    offsets = np.array([_shift(cf[i], frames[i]) for i in range(60)])
    assert np.abs(offsets).max() <= px + 0.6
    assert np.abs(offsets).max() >= 0.7 * px
    assert np.std(offsets[:, 0]) > 0.3 * px  # random, not a constant offset


def test_zoom_scales_the_view_by_strength_percent_per_second():
    clean, cf = clip("hand", seed=2, n=31)
    scene, frames = clip("hand", seed=2, defect="zoom", strength=10.0, n=31)
    i = 30  # one second in: scale 1.10
    centre = np.array([160.0, 160.0])

    def scaled(img, z):
        mat = np.array([[z, 0, centre[0] * (1 - z)], [0, z, centre[1] * (1 - z)]])
        return cv2.warpAffine(img, mat, (320, 320), flags=cv2.INTER_LINEAR)

    err = lambda z: float(np.abs(scaled(cf[i], z).astype(int) - frames[i].astype(int))[40:280, 40:280].mean())  # noqa: E731
    assert err(1.10) < 0.5 * err(1.0)
    assert err(1.10) < err(1.05) and err(1.10) < err(1.15)


def test_unrelated_moves_the_sounds_away_from_the_motion():
    clean, cf = clip("hand", seed=9, n=30)
    scene, frames = clip("hand", seed=9, defect="unrelated", strength=1.0, n=30)
    assert frame_hash(frames) == frame_hash(cf)
    assert scene.motion_events_s == clean.motion_events_s
    assert len(scene.events_s) == len(clean.events_s)
    for t in scene.events_s:
        assert min(abs(t - m) for m in scene.motion_events_s) >= 0.3
        assert _onset_jump(scene.audio, onset_sample(t, scene.sample_rate)) > 4
    for m in scene.motion_events_s:  # the contact frames are silent now
        assert _onset_jump(scene.audio, onset_sample(m, scene.sample_rate)) < 2


def test_music_bed_is_tonal_continuous_and_at_the_asked_level():
    clean, cf = clip("hand", seed=4, n=30)
    scene, frames = clip("hand", seed=4, defect="music", strength=-20.0, n=30)
    assert frame_hash(frames) == frame_hash(cf)
    bed = scene.audio.astype(np.float64) - clean.audio
    assert np.abs(bed).max() / np.abs(clean.audio).max() == pytest.approx(10 ** (-20 / 20), rel=0.05)
    # continuous: every half second holds music
    half = scene.sample_rate // 2
    levels = [rms(bed[i : i + half]) for i in range(0, len(bed) - half, half)]
    assert min(levels) > 0.1 * max(levels)
    # tonal, not noise: a few spectral lines hold most of the energy
    power = np.abs(np.fft.rfft(bed)) ** 2
    top = np.sort(power)[::-1]
    assert top[: len(top) // 100].sum() > 0.6 * top.sum()


def test_silent_is_digital_silence_and_still_is_one_frame():
    clean, cf = clip("fireworks", seed=5, n=30)
    silent, sf = clip("fireworks", seed=5, defect="silent", n=30)
    assert frame_hash(sf) == frame_hash(cf)
    assert 20 * np.log10(rms(silent.audio)) < -70 and silent.events_s == []
    still, stf = clip("fireworks", seed=5, defect="still", n=30)
    assert (stf == cf[0]).all()
    assert still.audio.tobytes() == clean.audio.tobytes() and still.motion_events_s == []


def test_cut_switches_to_another_scene_mid_source():
    clean, cf = clip("mouth", seed=7)
    scene, frames = clip("mouth", seed=7, defect="cut")
    half = len(frames) // 2
    assert frame_hash(frames[:half]) == frame_hash(cf[:half])
    jump = [np.abs(frames[i].astype(int) - frames[i - 1].astype(int)).mean() for i in range(1, len(frames))]
    assert int(np.argmax(jump)) + 1 == half
    assert jump[half - 1] > 10 * np.median(jump)
    cut_sample = onset_sample(half / scene.fps, scene.sample_rate)
    assert scene.audio[:cut_sample].tobytes() == clean.audio[:cut_sample].tobytes()


def test_bad_arguments_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="choose one of mouth, hand, fireworks, sea"):
        render("guitar", seed=0)
    with pytest.raises(ValueError, match="unknown defect 'blur'"):
        render("hand", seed=0, defect="blur")
    with pytest.raises(ValueError, match="must be even"):
        render("hand", seed=0, width=301)
    assert set(DEFECTS) >= {None, "pan", "zoom", "shake", "unrelated", "music", "silent", "still", "cut"}


@pytest.mark.slow
def test_synth_sources_writes_mp4_that_probe_and_decode_back(tmp_path):
    from s2vdata.media import load_audio, probe
    from s2vdata.registry import Registry

    report = synth_sources(target="hand", count=3, seed=11, data_dir=tmp_path, seconds=3.0)
    assert (report.added, report.failed) == (3, 0)
    rows = {r["origin"]: r for r in Registry(tmp_path).rows()}
    assert set(rows) == {f"synth://hand/11/{i}" for i in range(3)}
    for i in range(3):
        row = rows[f"synth://hand/11/{i}"]
        path = tmp_path / row["path"]
        info = probe(path)
        assert info["has_video"] and info["has_audio"] and path.suffix == ".mp4"
        assert (info["width"], info["height"]) in SIZES
        assert info["duration_s"] == pytest.approx(3.0, abs=0.1)
        # the same scene, rendered again, has its first clap where the file has it (within a frame)
        assert info["audio_rate"] in SAMPLE_RATES
        scene = render(
            "hand",
            seed=(11, i),
            seconds=3.0,
            fps=info["fps"],
            sample_rate=info["audio_rate"],
            width=info["width"],
            height=info["height"],
        )
        audio = load_audio(path)
        onset = onset_sample(scene.events_s[0], 44100)
        env = np.convolve(audio.astype(np.float64) ** 2, np.ones(64), "same")
        found = int(np.argmax(env[: onset + 5000] > 0.25 * env[onset : onset + 2000].max()))
        assert abs(found - onset) < 1470
    # seed 11 happens to draw 25, 30 and 29.97 fps, 44.1 and 48 kHz, square and landscape
    infos = [probe(tmp_path / r["path"]) for r in rows.values()]
    assert len({round(x["fps"], 2) for x in infos}) == 3 and len({x["audio_rate"] for x in infos}) == 2
    assert not list(tmp_path.glob(".synth-*")), "the temporary folder is removed"
    again = synth_sources(target="hand", count=3, seed=11, data_dir=tmp_path, seconds=3.0)
    assert (again.added, again.existing) == (0, 3)


def test_synth_sources_labels_defective_sources_in_the_origin(tmp_path):
    report = synth_sources(target="sea", count=1, seed=2, data_dir=tmp_path, seconds=1.0, defect="pan", strength=3.0)
    assert report.added == 1
    assert report.rows[0]["origin"] == "synth://sea/2/0?defect=pan&strength=3.0"
