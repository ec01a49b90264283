"""Near-duplicates: the same recording re-encoded groups; different synthetic scenes do not."""

import json

import cv2
import numpy as np
import pytest

from s2vdata import synth
from s2vdata.dedup import AUDIO_MAX_BER, audio_distance, fingerprint, frame_distance, group, same_recording
from s2vdata.media import GridReader, write_video

SECONDS = 6.0


def _fingerprint_file(path):
    """Fingerprints a file the way build does: grid slots, a frame per second, the sound of the first seconds."""
    frames, audio = [], []
    with GridReader(path) as reader:
        for slot in reader.slots():
            if (slot.index - reader.first_slot) % 30 == 0:
                frames.append(slot.frame)
            audio.append(slot.audio)
    return fingerprint(frames, np.concatenate(audio))


def _write(scene, path, *, size=None, quality=18, **kw):
    def frames():
        for f in scene.frames():
            yield f if size is None else cv2.resize(f, size, interpolation=cv2.INTER_AREA)

    write_video(path, frames(), scene.audio, fps=scene.fps, sample_rate=scene.sample_rate, quality=quality, **kw)
    return path


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    d = tmp_path_factory.mktemp("dedup")
    a = synth.render("hand", seed=11, seconds=SECONDS)
    b = synth.render("hand", seed=12, seconds=SECONDS)
    c = synth.render("mouth", seed=11, seconds=SECONDS)
    paths = {
        "a": _write(a, d / "a.mp4"),
        "a_small_lowq": _write(a, d / "a_small.mkv", size=(480, 480), quality=35),
        "a_opus": _write(a, d / "a_opus.webm", quality=33, vcodec="libvpx-vp9", acodec="libopus"),
        "b": _write(b, d / "b.mp4"),
        "c": _write(c, d / "c.mp4"),
    }
    return {k: _fingerprint_file(p) for k, p in paths.items()}


@pytest.mark.slow
def test_same_recording_re_encoded_groups_and_others_do_not(encoded):
    fp = encoded
    for other in ("a_small_lowq", "a_opus"):
        assert same_recording(fp["a"], fp[other]), (other, audio_distance(fp["a"], fp[other]), frame_distance(fp["a"], fp[other]))
    for other in ("b", "c"):
        assert not same_recording(fp["a"], fp[other])
        assert audio_distance(fp["a"], fp[other]) > AUDIO_MAX_BER + 0.05
        assert frame_distance(fp["a"], fp[other]) > 15
    order = ["b", "a_opus", "c", "a", "a_small_lowq"]
    groups = group(fp, order)
    assert groups == {"b": "b", "a_opus": "a_opus", "c": "c", "a": "a_opus", "a_small_lowq": "a_opus"}


def test_fingerprint_is_json_and_silence_has_no_sound_code():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    loud = fingerprint(frames, rng.normal(0, 0.1, 44_100 * 5).astype(np.float32))
    quiet = fingerprint(frames, np.zeros(44_100 * 5, np.float32))
    assert json.loads(json.dumps(loud)) == loud
    assert len(loud["frames"]) == 5 and loud["audio"]
    assert quiet["audio"] is None and audio_distance(loud, quiet) is None
    # the same frames with sound on one side and none on the other are not the same recording
    assert not same_recording(loud, quiet)
    assert same_recording(quiet, fingerprint(frames, np.zeros(44_100 * 5, np.float32)))


def test_group_ids_are_the_first_source_in_order_and_unfingerprinted_sources_stay_alone():
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    audio = rng.normal(0, 0.1, 44_100 * 4).astype(np.float32)
    fp = fingerprint(frames, audio)
    other = fingerprint([255 - f for f in frames], rng.normal(0, 0.1, 44_100 * 4).astype(np.float32))
    groups = group({"x": fp, "y": dict(fp), "z": other}, ["z", "y", "w", "x"])
    assert groups == {"z": "z", "y": "y", "w": "w", "x": "y"}
