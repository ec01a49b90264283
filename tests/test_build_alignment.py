"""Known answers through the whole build: a flash and a click at the same instant stay in the same slot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flashclick import click_slots, flash_slots, lenient_targets, make_source, marker_position
from s2vdata.build import build
from s2vdata.config import CLIP, BuildSettings
from s2vdata.ingest import ingest_paths
from s2vdata.manifest import read_manifest
from s2vdata.media import decode_clip_audio, decode_clip_video
from s2vdata.shards import read_shard
from s2vdata.targets import get_target

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
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("align")
    src = tmp / "src"
    src.mkdir()
    events = {}
    for name, case in CASES.items():
        case = dict(case)
        ext = case.pop("ext")
        path = src / f"{name}.{ext}"
        events[path.resolve().as_posix()] = (name, make_source(path, seed=len(events), **case))
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
    origin = next(o for o, (n, _) in built["events"].items() if n == name)
    events = built["events"][origin][1]
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
        inside = [t for t in events if start <= t and t + 1 / 30 < start + CLIP.seconds]
        flashes = _first_slots(flash_slots(frames))
        clicks = click_slots(audio)
        assert len(flashes) == len(inside) and len(clicks) == len(inside), (name, flashes, clicks, inside)
        for t, f, c in zip(inside, flashes, clicks):
            # known answer: the flash is first on screen at slot ceil(30 (t - start)), the click sounds in slot floor(...)
            assert abs(f - math.ceil((t - start) * 30 - 1e-6)) <= 0, (name, t, f)
            assert abs(c - math.floor((t - start) * 30 + 1e-6)) <= 1, (name, t, c)
            assert abs(f - c) <= 1, f"{name}: flash in slot {f}, click in slot {c}"
            seen += 1
    assert seen >= 3


def _first_slots(slots: list[int]) -> list[int]:
    return [s for i, s in enumerate(slots) if i == 0 or slots[i - 1] != s - 1]


@pytest.mark.parametrize("name,expected", [("30fps-44k-mp4", (0.17, 0.5)), ("rot90-mp4", (0.5, 0.83)), ("rot270-mov", (0.5, 0.17))])
def test_rotation_is_applied_as_a_player_shows_it(built, name, expected):
    origin = next(o for o, (n, _) in built["events"].items() if n == name)
    row = built["df"][built["df"]["origin"] == origin].iloc[0]
    frames = decode_clip_video(built["clips"][row["key"]]["mp4"])
    flash = frames[flash_slots(frames)[0]]
    x, y = marker_position(flash)
    assert abs(x - expected[0]) < 0.08 and abs(y - expected[1]) < 0.08, (name, x, y)


def test_late_stream_sets_the_first_window(built):
    df = built["df"]
    for name, first in (("video-late-mp4", 0.5), ("audio-late-mkv", 0.7)):
        origin = next(o for o, (n, _) in built["events"].items() if n == name)
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
