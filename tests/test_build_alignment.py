"""Known answers through the whole build: a flash and a click at the same instant stay in the same slot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s2vdata.build import build
from s2vdata.config import CLIP, BuildSettings
from s2vdata.ingest import ingest_paths
from s2vdata.manifest import read_manifest
from s2vdata.media import decode_clip_audio, decode_clip_video
from s2vdata.shards import read_shard
from s2vdata.targets import get_target

from flashclick import click_slots, flash_slots, lenient_targets, make_source, marker_position, remux_with_gap

CASES = {
    "30fps-44k-mp4": dict(fps=30.0, sample_rate=44_100, ext="mp4"),
    "25fps-48k-mp4": dict(fps=25.0, sample_rate=48_000, ext="mp4"),
    "2997fps-22k-mkv": dict(fps=30000 / 1001, sample_rate=22_050, ext="mkv"),
    "60fps-44k-webm": dict(fps=60.0, sample_rate=44_100, ext="webm"),
    "vfr-48k-mp4": dict(fps=None, vfr_seed=3, sample_rate=48_000, ext="mp4"),
    "video-late-mp4": dict(fps=30.0, sample_rate=44_100, ext="mp4", video_start=0.5),
    "audio-late-mkv": dict(fps=25.0, sample_rate=48_000, ext="mkv", audio_start=0.7),
    "audio-late-mp4": dict(fps=30.0, sample_rate=44_100, ext="mp4", audio_start=0.37),
    "portrait-mp4": dict(fps=30.0, sample_rate=44_100, ext="mp4", size=(300, 400)),
    "rot90-mp4": dict(fps=30.0, sample_rate=44_100, ext="mp4", rotation=90),
    "rot270-mov": dict(fps=30.0, sample_rate=44_100, ext="mov", rotation=270),
    "6ch-48k-mkv": dict(fps=30.0, sample_rate=48_000, ext="mkv", channels=6),
    # faults in the audio timestamps at 5 s (inside the second clip): the sound after them stays at its time
    "hole-pcm-44k-mkv": dict(fps=30.0, sample_rate=44_100, ext="mkv", acodec="pcm_s16le", fault=dict(drop_s=0.03)),
    "hole-aac-48k-mp4": dict(fps=25.0, sample_rate=48_000, ext="mp4", fault=dict(drop_s=0.045)),
    "hole-opus-webm": dict(fps=30.0, sample_rate=48_000, ext="webm", fault=dict(drop_s=0.02)),
    "jump-aac-44k-mp4": dict(fps=30.0, sample_rate=44_100, ext="mp4", fault=dict(shift_s=0.03)),
    "overlap-aac-48k-mp4": dict(fps=30.0, sample_rate=48_000, ext="mp4", fault=dict(shift_s=-0.01)),
    "overlap-pcm-48k-mkv": dict(fps=25.0, sample_rate=48_000, ext="mkv", acodec="pcm_s16le", fault=dict(shift_s=-0.012)),
}
FAULT_AT = 5.0


def click_bound(case: dict) -> int:
    """Returns how many samples a click may land from its known place: what the decode path guarantees (docs/decode.md).

    0 where the timestamps are exact (MP4/MOV keep audio time in samples) and the sound is not resampled.
    Resampled sound (22.05 or 48 kHz): the resampler's filter moves a click's first loud sample by up to 2.
    Matroska and WebM keep time in milliseconds: a packet's time is off by up to half a millisecond (22
    samples), and a stream start or a timestamp fault inherits that (the bound is one millisecond). So does
    a late stream in MP4/MOV: the edit list that delays it counts in the movie's milliseconds.
    """
    bound = 0 if case["sample_rate"] == 44_100 else 2
    if case["ext"] in ("mkv", "webm") or case.get("audio_start") or case.get("video_start"):
        bound += 44
    return bound


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("align")
    src = tmp / "src"
    src.mkdir()
    events = {}
    for name, case in CASES.items():
        case = dict(case)
        ext = case.pop("ext")
        fault = case.pop("fault", None)
        path = src / f"{name}.{ext}"
        if fault is None:
            times = make_source(path, seed=len(events), **case)
            events[path.resolve().as_posix()] = (name, times, times)
            continue
        # no event where packets are lost or moved: what is known there is only that it is silence
        clean = tmp / f"clean-{name}.{ext}"
        times = make_source(clean, seed=len(events), avoid=(FAULT_AT - 0.15, FAULT_AT + 0.15), **case)
        remux_with_gap(clean, path, at_s=FAULT_AT, **fault)
        shift = fault.get("shift_s", 0.0)
        # the flashes stay; the clicks after the fault are where their new timestamps put them
        events[path.resolve().as_posix()] = (name, times, [t + shift if t > FAULT_AT else t for t in times])
    targets_file = lenient_targets(tmp)
    target = get_target("lenient", targets_file)
    ingest_paths([src], target="lenient", data_dir=tmp / "data")
    report = build(target=target, data_dir=tmp / "data", manifests_dir=tmp / "manifests", settings=BuildSettings(), jobs=2)
    df = read_manifest(tmp / "manifests" / "lenient.csv")
    clips = {}
    for shard in sorted(set(df["shard"])):
        for key, parts in read_shard(tmp / "manifests" / shard):
            clips[key] = parts
    return {"report": report, "df": df, "clips": clips, "events": events}


@pytest.mark.parametrize("name", list(CASES))
def test_flash_and_click_share_a_slot(built, name):
    df = built["df"]
    origin = next(o for o, (n, *_) in built["events"].items() if n == name)
    _, events, sounds = built["events"][origin]
    rows = df[df["origin"] == origin]
    assert len(rows) == 2, f"{name}: expected two back-to-back 4 s clips from 9 s, got {len(rows)}"
    seen = 0
    for row in rows.to_dict("records"):
        parts = built["clips"][row["key"]]
        frames = decode_clip_video(parts["mp4"])
        audio, rate = decode_clip_audio(parts["flac"])
        assert frames.shape == (CLIP.frames, CLIP.size, CLIP.size, 3)
        assert audio.shape == (CLIP.samples,) and rate == CLIP.sample_rate
        start = float(row["start_s"])
        assert abs(start * 30 - round(start * 30)) < 1e-6, "start_s lies on the 30 fps grid"
        # a flash is in this clip when its first slot is; a click when its first sample is
        seen_t = [t for t in events if 0 <= math.ceil((t - start) * 30 - 1e-6) < CLIP.frames]
        heard_t = [u for u in sounds if 0 <= round((u - start) * CLIP.sample_rate) < CLIP.samples - 100]
        flashes = _first_slots(flash_slots(frames))
        samples = click_samples(audio)
        clicks = click_slots(audio)
        assert len(flashes) == len(seen_t), (name, flashes, seen_t)
        assert len(samples) == len(heard_t) and len(clicks) == len(heard_t), (name, samples, heard_t)
        bound = click_bound(CASES[name])
        for t, f in zip(seen_t, flashes):
            # known answer: the flash is first on screen at slot ceil(30 (t - start))
            assert f == math.ceil((t - start) * 30 - 1e-6), (name, t, f)
        for u, j, c in zip(heard_t, samples, clicks):
            # known answer: the click's first sample is 44100 (u - start)
            off = j - round((u - start) * CLIP.sample_rate)
            assert abs(off) <= bound, f"{name}: click at {u:.4f} s lands {off} samples off (bound {bound})"
            assert c == j // CLIP.samples_per_frame
        for t, u in zip(events, sounds):
            if t in seen_t and u in heard_t:
                f, c = flashes[seen_t.index(t)], clicks[heard_t.index(u)]
                # an event whose sound was not moved by a fault: flash and click in the same slot, or the click one slot early
                # (it starts at its instant, the flash at the first grid instant on or after it)
                assert f - c in ((0, 1) if t == u else (-1, 0, 1, 2)), f"{name}: flash in slot {f}, click in slot {c}"
                seen += 1
    assert seen >= 3


def click_samples(audio) -> list[int]:
    """Returns the first loud sample of each click."""
    loud = np.flatnonzero(np.abs(audio) > 0.4)
    return [] if not loud.size else loud[np.concatenate([[True], np.diff(loud) > 100])].tolist()


@pytest.mark.parametrize("name", [n for n in CASES if "fault" in CASES[n]])
def test_timestamp_faults_are_measured_in_the_window_that_holds_them(built, name):
    case = CASES[name]
    origin = next(o for o, (n, *_) in built["events"].items() if n == name)
    rows = built["df"][built["df"]["origin"] == origin].sort_values("start_s").to_dict("records")
    fault_ms = 1000 * abs(case["fault"].get("drop_s") or case["fault"].get("shift_s"))
    first, second = rows
    assert first["audio_gap_ms"] == 0
    # the hole or overlap as the packets made it: within one packet of what was cut or moved
    assert fault_ms * 0.5 <= second["audio_gap_ms"] <= fault_ms + 25, (name, second["audio_gap_ms"])


def _first_slots(slots: list[int]) -> list[int]:
    return [s for i, s in enumerate(slots) if i == 0 or slots[i - 1] != s - 1]


@pytest.mark.parametrize(
    "name,expected", [("30fps-44k-mp4", (0.17, 0.5)), ("rot90-mp4", (0.5, 0.83)), ("rot270-mov", (0.5, 0.17))]
)
def test_rotation_is_applied_as_a_player_shows_it(built, name, expected):
    origin = next(o for o, (n, *_) in built["events"].items() if n == name)
    row = built["df"][built["df"]["origin"] == origin].iloc[0]
    frames = decode_clip_video(built["clips"][row["key"]]["mp4"])
    flash = frames[flash_slots(frames)[0]]
    x, y = marker_position(flash)
    assert abs(x - expected[0]) < 0.08 and abs(y - expected[1]) < 0.08, (name, x, y)


def test_late_stream_sets_the_first_window(built):
    df = built["df"]
    for name, first in (("video-late-mp4", 0.5), ("audio-late-mkv", 0.7)):
        origin = next(o for o, (n, *_) in built["events"].items() if n == name)
        starts = sorted(df[df["origin"] == origin]["start_s"].astype(float))
        # windows begin at the first grid instant where both streams are present, back to back
        assert starts[0] == pytest.approx(math.ceil(first * 30 - 1e-6) / 30, abs=1e-6)
        assert starts[1] - starts[0] == pytest.approx(4.0)


def test_synced_flash_click_scenes_pass_the_hand_checks(tmp_path):
    """A fixed camera where every sound has its flash is what the checks exist to keep."""
    src = tmp_path / "src"
    src.mkdir()
    for i, (fps, ext) in enumerate(((30.0, "mp4"), (25.0, "mkv"), (60.0, "webm"))):
        make_source(src / f"s{i}.{ext}", fps=fps, seconds=8.5, seed=10 + i, n_flashes=6)
    ingest_paths([src], target="hand", data_dir=tmp_path / "data")
    build(target=get_target("hand"), data_dir=tmp_path / "data", manifests_dir=tmp_path / "manifests", settings=BuildSettings())
    df = read_manifest(tmp_path / "manifests" / "hand.csv")
    rejects = (tmp_path / "manifests" / "hand.rejects.csv").read_text()
    assert len(df) == 6, rejects
