"""Metric functions on inputs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s2vmodel import metrics

SPF = 1470  # samples per frame slot


def _noise_video(seed: int, shape=(8, 32, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_identical_videos_have_infinite_psnr_ssim_one_and_zero_l1():
    video = _noise_video(0)
    assert metrics.psnr(video, video.copy()) == math.inf
    assert metrics.ssim(video, video.copy()) == pytest.approx(1.0, abs=1e-12)
    assert metrics.l1(video, video.copy()) == 0.0


def test_psnr_and_l1_of_a_constant_offset():
    a = np.full((4, 16, 16, 3), 100, np.uint8)
    b = a + 51  # 0.2 on the unit scale everywhere: MSE 0.04
    assert metrics.l1(a, b) == pytest.approx(0.2)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.04))


def test_ssim_of_flat_pictures_is_the_luminance_term():
    # no structure anywhere: SSIM reduces to (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    a = np.full((2, 20, 20, 3), 0.5)
    b = np.full((2, 20, 20, 3), 0.6)
    c1 = (0.01) ** 2
    expected = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert metrics.ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_ssim_falls_as_noise_grows_and_is_symmetric():
    rng = np.random.default_rng(1)
    clean = np.clip(rng.normal(0.5, 0.15, size=(3, 40, 40, 3)), 0, 1)
    noisy = [np.clip(clean + rng.normal(0, s, size=clean.shape), 0, 1) for s in (0.02, 0.1, 0.3)]
    scores = [metrics.ssim(clean, n) for n in noisy]
    assert scores[0] > scores[1] > scores[2]
    assert metrics.ssim(noisy[1], clean) == pytest.approx(scores[1], rel=1e-12)


def test_metrics_reject_videos_of_different_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.l1(_noise_video(0, (4, 16, 16, 3)), _noise_video(0, (4, 32, 32, 3)))
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        metrics.ssim(_noise_video(0, (2, 8, 8, 3)), _noise_video(1, (2, 8, 8, 3)))


def _clicks_and_flashes(n_frames: int = 120, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Returns (frames, audio): a square lights up at each click and fades, on irregular frames."""
    events = [7, 19, 26, 44, 58, 63, 81, 97, 104]
    rng = np.random.default_rng(3)
    audio = (rng.normal(0, 1e-3, n_frames * SPF)).astype(np.float32)
    for k in events:
        burst = rng.normal(0, 0.6, 400) * np.exp(-np.arange(400) / 80)
        audio[k * SPF : k * SPF + 400] += burst.astype(np.float32)
    frames = np.full((n_frames, size, size, 3), 40, np.uint8)
    brightness = np.zeros(n_frames)
    for k in events:
        brightness[k:] += 200 * np.exp(-np.arange(n_frames - k) / 2.0)
    for t in range(n_frames):
        frames[t, 16:48, 16:48] = np.clip(40 + brightness[t], 0, 255)
    return frames, np.clip(audio, -1, 1)


def test_av_sync_is_higher_when_motion_follows_the_clicks_than_when_shifted_by_ten_frames():
    frames, audio = _clicks_and_flashes()
    shifted = np.concatenate([np.repeat(frames[:1], 10, axis=0), frames[:-10]])  # the same motion 10 frames late
    in_sync = metrics.av_sync(frames, audio)
    late = metrics.av_sync(shifted, audio)
    assert in_sync > 0.5
    assert in_sync > late + 0.3


def test_av_sync_and_av_align_of_a_still_video_are_zero():
    frames, audio = _clicks_and_flashes()
    still = np.repeat(frames[:1], len(frames), axis=0)
    assert metrics.av_sync(still, audio) == 0.0
    assert metrics.av_align(still, audio) == 0.0


def test_av_align_matches_peaks_within_one_frame():
    frames, audio = _clicks_and_flashes()
    shifted = np.concatenate([np.repeat(frames[:1], 10, axis=0), frames[:-10]])
    assert metrics.av_align(frames, audio) > 0.5
    assert metrics.av_align(frames, audio) > metrics.av_align(shifted, audio)


def _square_video(*, positions: list[tuple[int, int] | None], size: int = 64) -> np.ndarray:
    """Returns a grey video with a white 12x12 square at each frame's (y, x), or none."""
    video = np.full((len(positions), size, size, 3), 60, np.uint8)
    for t, pos in enumerate(positions):
        if pos is not None:
            video[t, pos[0] : pos[0] + 12, pos[1] : pos[1] + 12] = 255
    return video


def test_motion_against_the_real_clip_rewards_the_right_time_and_place_and_not_flicker():
    rng = np.random.default_rng(0)
    jumps = set(rng.choice(np.arange(3, 60), size=6, replace=False).tolist())
    spot, other = (10, 10), (40, 40)
    positions, place = [], spot
    for t in range(64):
        if t in jumps:  # the square jumps between two places at a few instants
            place = other if place == spot else spot
        positions.append(place)
    real = _square_video(positions=positions)
    assert metrics.motion_time(real, real) == pytest.approx(1.0)
    assert metrics.motion_place(real, real) == pytest.approx(1.0)
    still = np.repeat(real[:1], len(real), axis=0)
    assert metrics.motion_time(still, real) == 0.0 and metrics.motion_place(still, real) == 0.0
    # a whole-frame flicker at the very instants the square jumps: perfect timing, wrong place
    flicker = still.copy()
    for t in jumps:
        flicker[t] = np.clip(flicker[t].astype(int) + 30, 0, 255).astype(np.uint8)
    assert metrics.motion_time(flicker, real) > 0.8
    assert metrics.motion_place(flicker, real) < 0.3
    # the same jumps two places off in the frame and at other instants score low in both
    shifted = _square_video(positions=[(p[0], p[1] + 2) for p in positions[7:] + positions[:7]])
    assert metrics.motion_time(shifted, real) < 0.3
    assert metrics.motion_amount(shifted, real) == pytest.approx(1.0, rel=0.05)


def test_an_event_in_the_input_image_is_found_and_its_ghost_and_hole_are_told_apart():
    # a burst at (20, 20) in frame 0 fades over 10 frames; the scene behind it is grey 60 (the clip's median)
    real = _square_video(positions=[None] * 40)
    for t in range(10):
        real[t, 20:32, 20:32] = 60 + round(195 * (1 - t / 10))
    assert metrics.holds_event(real) and not metrics.holds_event(_square_video(positions=[None] * 40))
    mask, side = metrics.event_region(real)
    assert mask.sum() == 144 and (side[mask] == 1).all()
    still = np.repeat(real[:1], len(real), axis=0)
    ghost, hole = metrics.event_errors(still, real)  # the burst never fades: ghost only
    assert ghost > 0.5 and hole == 0.0
    assert metrics.event_errors(real, real) == (0.0, 0.0)
    holed = real.copy()
    holed[1:, 20:32, 20:32] = 0  # gone at once and darker than the scene behind: a hole
    ghost, hole = metrics.event_errors(holed, real)
    assert ghost == 0.0 and hole > 0.2
