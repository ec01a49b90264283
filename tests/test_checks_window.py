"""measure_window + decide on labelled scenes: each defect fails its own check, a clean scene passes all."""

import json

import numpy as np
import pytest

from s2vdata.checks import CHECKS, CheckResult, SmallFrames, decide, measure_window
from s2vdata.targets import get_target

from checks_scenes import scene

HAND = get_target("hand")


def _failed(defect, strength=0.0, seed=0):
    frames, audio, _ = scene(defect, strength=strength, seed=seed)
    m = measure_window(frames, audio)
    return {r.check: r for r in decide(m["scores"], HAND) if not r.passed}, m


@pytest.mark.parametrize("seed", [0, 1])
def test_clean_scene_passes_every_check(seed):
    failed, m = _failed(None, seed=seed)
    assert failed == {}
    assert m["scores"]["camera_shift"] < 0.05
    assert abs(m["scores"]["av_lag_frames"]) <= 5


@pytest.mark.parametrize("strength", [0.5, 2.0])
def test_pan_fails_the_camera_check_with_its_speed(strength):
    failed, m = _failed("pan", strength)
    assert "camera_shift" in failed
    assert m["scores"]["camera_shift"] == pytest.approx(strength, rel=0.15)


def test_shake_and_zoom_fail_the_camera_check():
    shaken, _ = _failed("shake", 3.0)
    zoomed, _ = _failed("zoom", 20.0)
    assert "camera_shift" in shaken and shaken["camera_shift"].value > 1.5
    assert "camera_shift" in zoomed and zoomed["camera_shift"].value > 0.5


def test_clicks_unrelated_to_the_motion_fail_av_sync():
    failed, m = _failed("unrelated")
    assert "av_sync" in failed
    assert "sound does not follow" in failed["av_sync"].reason


@pytest.mark.parametrize("level_db", [-10.0, 0.0])
def test_music_bed_fails_unrelated_audio(level_db):
    failed, m = _failed("music", level_db)
    assert "unrelated_audio" in failed
    assert m["scores"]["tonal_bed"] > 0.5


def test_silent_still_and_cut_fail_their_plain_checks():
    silent, _ = _failed("silent")
    still, _ = _failed("still")
    cut, m = _failed("cut")
    assert "audio_db" in silent and silent["audio_db"].value < -100
    assert "motion" in still and still["motion"].value == 0.0
    assert set(cut) == {"scene_cut"}
    # the cut is placed at frame 60: the curve peaks there
    assert int(np.argmax(m["curves"]["cut"])) == 60


def test_measure_window_is_json_and_has_one_curve_value_per_frame():
    frames, audio, _ = scene(None, seed=3)
    m = measure_window(frames, audio)
    again = json.loads(json.dumps(m))
    assert again["scores"] == m["scores"]
    assert set(CHECKS) <= set(m["scores"])
    for name in ("onset", "motion", "shift", "cut"):
        assert len(m["curves"][name]) == 120


def test_measure_window_takes_small_and_short_windows():
    frames, audio, _ = scene(None, seed=0, n=40)
    small = np.stack([f[::4, ::4] for f in frames])  # 72x72
    m = measure_window(small, audio[: 40 * 1470])
    assert all(np.isfinite(v) for v in m["scores"].values())
    assert len(m["curves"]["onset"]) == 40


@pytest.mark.parametrize("defect", [None, "pan", "cut"])
def test_frames_shrunk_as_they_arrive_give_the_same_scores_and_curves(defect):
    """The build shrinks each frame for the checks as it is decoded: the window's measures must not change."""
    frames, audio, _ = scene(defect, strength=2.0, seed=3)
    small = SmallFrames(len(frames), size=frames.shape[1])
    for i, f in enumerate(frames):
        small.add(i, f)
    assert small.colour.shape == (len(frames), 143, 143, 3) and small.grey.shape == (len(frames), 143, 143)
    assert measure_window(frames, audio, small=small) == measure_window(frames, audio)


def test_measure_window_rejects_frames_that_are_not_rgb_uint8():
    with pytest.raises(ValueError, match="uint8 RGB"):
        measure_window(np.zeros((120, 32, 32), np.float32), np.zeros(176400, np.float32))


def test_decide_reports_every_check_in_order_and_fails_missing_scores():
    results = decide({"audio_db": -20.0, "motion": 0.01}, HAND)
    assert [r.check for r in results] == list(CHECKS)
    assert all(isinstance(r, CheckResult) for r in results)
    missing = [r for r in results if r.check == "av_sync"][0]
    assert not missing.passed and "not measured" in missing.reason


def test_decide_applies_the_targets_thresholds():
    frames, audio, _ = scene(None, seed=0)
    scores = measure_window(frames, audio)["scores"]
    strict = get_target("hand").__class__("strict", av_sync_min=0.99, av_lag_max_frames=0)
    failed = {r.check for r in decide(scores, strict) if not r.passed}
    assert "av_sync" in failed
    assert ("av_lag_frames" in failed) == (scores["av_lag_frames"] != 0)


def test_an_object_moving_over_a_bare_wall_is_not_a_moving_camera():
    """Two blocks clapping in front of a plain wall: the only corners move, the camera does not."""
    from s2vdata.checks.camera import camera_shift

    frames = np.full((60, 286, 286), 90, np.uint8)
    for i in range(60):
        gap = int(abs((i % 20) - 10) * 6)
        for x in (143 - 30 - gap, 143 + 10 + gap):
            frames[i, 120:160, max(0, x) : x + 20] = 220
    score, _ = camera_shift(frames)
    assert score < 0.1


def test_a_pan_over_a_textured_wall_still_reads_as_camera_motion():
    from s2vdata.checks.camera import camera_shift

    rng = np.random.default_rng(0)
    world = (rng.random((286, 600)) * 255).astype(np.uint8)
    world = np.asarray(__import__("cv2").GaussianBlur(world, (5, 5), 0))
    frames = np.stack([world[:, int(i * 1.5) : int(i * 1.5) + 286] for i in range(60)])
    score, _ = camera_shift(frames)
    assert 1.2 < score < 1.8


def test_a_camera_check_that_measured_nothing_fails_as_unmeasured():
    """A textured view that goes black every other pair (a strobe): tracked points are lost each time, no pair is
    measured, and an unmeasured camera is not a fixed one."""
    import cv2

    from s2vdata.checks import decide
    from s2vdata.checks.camera import camera_shift

    rng = np.random.default_rng(0)
    world = cv2.GaussianBlur((rng.random((286, 286)) * 255).astype(np.uint8), (3, 3), 0)
    frames = np.stack([world if i % 4 < 2 else np.zeros_like(world) for i in range(60)])
    score, _ = camera_shift(frames)
    assert np.isnan(score)
    result = next(r for r in decide({"camera_shift": score}, get_target("hand")) if r.check == "camera_shift")
    assert not result.passed and "was not measured" in result.reason
    # a view with nothing to track at all looks the same whatever the camera does: fixed
    assert camera_shift(np.full((60, 286, 286), 90, np.uint8))[0] == 0.0


def test_the_cut_edges_taken_for_all_frames_at_once_are_each_frames_own():
    """Gradients and dilation run on the frames stacked into one picture: no frame's edges may read its neighbours'."""
    import cv2

    from s2vdata.checks.cut import _Features

    rng = np.random.default_rng(3)
    grey = np.zeros((6, 40, 50), np.uint8)
    grey[0] = rng.integers(0, 256, (40, 50))  # noise: edges everywhere, up to the borders
    grey[1, :3] = 255  # a bright band on the top rows, next to the noise above it in the stack
    grey[2, -2:] = 255  # and on the bottom rows
    grey[3] = 255 - grey[0]
    grey[4, 10:30, 10:40] = 200  # a plain rectangle
    frames = np.repeat(grey[..., None], 3, axis=3)
    feats = _Features(frames, grey)
    kernel = np.ones((3, 3), np.uint8)
    edges = np.stack([cv2.Canny(g, 40, 120) for g in grey])
    grown = np.stack([cv2.dilate(e, kernel) for e in edges])
    assert edges.any() and not edges[5].any()
    assert np.array_equal(feats.edges, np.packbits(edges.reshape(6, -1), axis=1))
    assert np.array_equal(feats.grown, np.packbits(grown.reshape(6, -1), axis=1))
