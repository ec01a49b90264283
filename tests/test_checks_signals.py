"""The per-frame signals: onsets land in their frame slot, motion in its frame, and they align."""

import numpy as np
import pytest

from s2vdata.checks.signals import av_align, av_sync, motion_energy, onset_envelope

HOP = 1470


def _clicks(slots, *, n_slots=120, offset=400, seed=0):
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 1e-4, n_slots * HOP).astype(np.float32)
    for s in slots:
        start = s * HOP + offset
        audio[start : start + 200] += rng.normal(0, 0.5, 200).astype(np.float32)
    return audio


@pytest.mark.parametrize("offset", [0, 200, 735, 1200])
def test_click_lands_in_its_frame_slot(offset):
    env = onset_envelope(_clicks([37], offset=offset))
    assert env.shape == (120,)
    assert int(np.argmax(env)) == 37
    assert env.min() >= 0


def test_onset_envelope_pads_short_audio_and_mixes_channels():
    audio = _clicks([5], n_slots=10)
    stereo = np.stack([audio, audio], axis=1)
    env = onset_envelope(stereo, n_slots=16)
    assert env.shape == (16,)
    assert int(np.argmax(env)) == 5
    assert onset_envelope(audio[: HOP * 3 + 10]).shape == (4,)


def test_motion_energy_marks_the_frame_that_changed_at_any_size():
    for size in (64, 286):
        frames = np.full((30, size, size, 3), 50, np.uint8)
        frames[12:, : size // 3] = 200
        m = motion_energy(frames)
        assert m.shape == (30,) and m[0] == 0
        assert int(np.argmax(m)) == 12
        assert m[13:].max() == 0


def test_motion_energy_accepts_grey_float_frames():
    frames = np.zeros((5, 20, 30), np.float32)
    frames[3] = 1.0
    np.testing.assert_allclose(motion_energy(frames), [0, 0, 0, 1, 1])


def test_av_sync_finds_the_lag_by_which_motion_leads():
    rng = np.random.default_rng(3)
    events = sorted(rng.choice(np.arange(10, 100), 8, replace=False).tolist())
    onset = onset_envelope(_clicks([e + 4 for e in events]))
    motion = np.zeros(120)
    motion[events] = 1.0
    corr, lag = av_sync(onset, motion)
    assert lag == 4
    assert corr > 0.8
    corr0, lag0 = av_sync(onset_envelope(_clicks(events)), motion)
    assert lag0 == 0 and corr0 > 0.8


def test_av_sync_is_zero_not_nan_without_motion_or_sound():
    onset = onset_envelope(_clicks([10, 50]))
    assert av_sync(onset, np.zeros(120)) == (0.0, 0)
    assert av_sync(np.zeros(120), np.zeros(120)) == (0.0, 0)
    assert av_sync(onset[:5], np.ones(5)) == (0.0, 0)


def test_av_sync_low_for_clicks_unrelated_to_motion():
    motion = np.zeros(120)
    motion[[10, 30, 50, 70, 90]] = 1.0
    onset = onset_envelope(_clicks([20, 41, 62, 84, 105]))
    corr, _ = av_sync(onset, motion, max_lag=3)
    assert corr < 0.2


def test_av_align_is_one_for_matched_peaks_and_low_for_unmatched():
    motion = np.zeros(120)
    motion[[10, 30, 50, 70, 90]] = 1.0
    matched = onset_envelope(_clicks([10, 31, 50, 69, 90]))
    unmatched = onset_envelope(_clicks([20, 41, 62, 84, 105]))
    assert av_align(matched, motion) == pytest.approx(1.0)
    assert av_align(unmatched, motion) == pytest.approx(0.0)
    assert av_align(np.zeros(120), np.zeros(120)) == 0.0
