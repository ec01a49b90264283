"""The decode path on its own: memory bounded by construction, and timestamps followed through holes and overlaps."""

from __future__ import annotations

import numpy as np
import pytest

from s2vdata.config import CLIP
from s2vdata.media import GridReader

from flashclick import make_source, remux_with_gap


@pytest.mark.parametrize("rate,ext", [(22_050, "mkv"), (44_100, "mp4"), (48_000, "mp4"), (48_000, "webm")])
def test_the_audio_buffer_stays_bounded_over_a_long_source(tmp_path, rate, ext):
    path = tmp_path / f"long.{ext}"
    make_source(path, fps=10.0, sample_rate=rate, seconds=40.0, size=(64, 48), n_flashes=0)
    most = 0
    with GridReader(path) as reader:
        slots = 0
        for _ in reader.slots():
            most = max(most, reader.audio.buffered)
            slots += 1
    assert slots >= 39 * CLIP.fps
    # what one read needs and one decoded frame ahead (an AAC frame at 22.05 kHz is 2048 samples at 44.1 kHz):
    # never the soundtrack so far
    assert most <= CLIP.samples_per_frame + 4096, most


def test_a_long_hole_is_silence_and_costs_no_memory(tmp_path):
    clean, path = tmp_path / "clean.mkv", tmp_path / "hole.mkv"
    events = make_source(
        clean, fps=30.0, sample_rate=48_000, seconds=12.0, avoid=(3.0, 9.5), n_flashes=6, seed=4, acodec="pcm_s16le"
    )
    remux_with_gap(clean, path, at_s=3.0, drop_s=6.0)
    most, audio = 0, []
    with GridReader(path) as reader:
        for slot in reader.slots():
            audio.append(slot.audio)
            most = max(most, reader.audio.buffered)
        gaps = reader.audio_gaps
    audio = np.concatenate(audio)
    assert most <= CLIP.samples_per_frame + 4096, most
    assert len(gaps) == 1 and gaps[0][1] == pytest.approx(6.0, abs=0.03)
    t0, t1 = gaps[0][0], gaps[0][0] + gaps[0][1]
    hole = audio[round(t0 * CLIP.sample_rate) + 50 : round(t1 * CLIP.sample_rate) - 50]
    assert np.abs(hole).max() == 0.0
    # the clicks after the hole at their own time (the stream keeps milliseconds: within 1 ms)
    loud = np.flatnonzero(np.abs(audio) > 0.4)
    starts = loud[np.concatenate([[True], np.diff(loud) > 100])]
    after = [t for t in events if t > 9.5]
    assert after and len(starts) == len(events)
    for t, j in zip(events, starts):
        assert abs(j - round(t * CLIP.sample_rate)) <= 46, (t, j)


def test_one_thread_per_decoder_gives_the_same_pixels(tmp_path):
    """A build with a worker per core decodes and scales on one thread each: the frames must be the same bytes."""
    from s2vdata import media

    src = tmp_path / "s.mp4"
    make_source(src, seconds=3.0, size=(1280, 720))

    def frames():
        with GridReader(src, clip=CLIP) as r:
            return np.stack([s.frame for s in r.slots()])

    default = frames()
    media.set_threads(1)
    try:
        one = frames()
    finally:
        media.set_threads(0)
    assert len(default) == 90 and np.array_equal(default, one)
