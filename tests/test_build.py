"""Build behaviour: bad sources end with reasons, rebuilds change nothing, kills lose nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from s2vdata.cli import app
from s2vdata.media import write_video
from s2vdata.registry import Registry

from flashclick import lenient_targets, make_source

runner = CliRunner()
S2VDATA = [sys.executable, "-m", "s2vdata.cli"]


def run(*args, cwd: Path):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


def good_sources(folder: Path, n: int, *, seconds: float = 8.5) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"good{i}.mp4"
        make_source(p, fps=(30.0, 25.0)[i % 2], seconds=seconds, seed=i, size=(320, 288))
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.mp4").write_bytes(b"")
    (d / "notvideo.mp4").write_text("this is not a video\n" * 100)
    make_source(d / "full.mp4", seconds=6, size=(320, 288))
    data = (d / "full.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (d / "full.mp4").unlink()
    make_source(d / "nosound.mp4", seconds=5, audio=False, size=(320, 288))
    t = np.arange(44_100 * 5) / 44_100
    write_video(d / "soundonly.mkv", [np.zeros((64, 64, 3), np.uint8)], None, fps=30)  # placeholder, replaced below
    (d / "soundonly.mkv").unlink()
    import soundfile as sf

    sf.write(d / "soundonly.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44_100)
    make_source(d / "small.mp4", seconds=5, size=(200, 150))
    make_source(d / "short.mp4", seconds=3, size=(320, 288))
    make_source(d / "silent.mp4", seconds=5, size=(320, 288), silent=True)
    make_source(d / "still.mp4", seconds=5, size=(320, 288), still=True, n_flashes=0)
    return d


def test_bad_sources_each_end_with_a_reason(tmp_path, bad_dir):
    files = sorted(bad_dir.iterdir())
    res = run("ingest", *map(str, files), "--target", "hand", cwd=tmp_path)
    assert res.exit_code == 1, res.output  # some files could not be opened at all
    rows = {Path(r["origin"]).name: r for r in Registry(tmp_path / "data").rows()}
    assert set(rows) == {f.name for f in files}
    for name in ("empty.mp4", "notvideo.mp4"):
        assert rows[name]["status"] == "failed" and rows[name]["reason"], rows[name]
    for name in ("nosound.mp4", "soundonly.wav", "small.mp4", "short.mp4", "silent.mp4", "still.mp4"):
        assert rows[name]["status"] == "ok", rows[name]  # ingest registers; build judges
    res = run("build", "--target", "hand", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "manifests" / "hand.csv").empty
    rej = pd.read_csv(tmp_path / "manifests" / "hand.rejects.csv", keep_default_na=False)
    by_source = {}
    for r in rej.to_dict("records"):
        by_source.setdefault(Path(rows_by_id(tmp_path)[r["source_id"]]["origin"]).name, set()).add(r["check"])
    expected = {
        "empty.mp4": "decode",
        "notvideo.mp4": "decode",
        "nosound.mp4": "streams",
        "soundonly.wav": "streams",
        "small.mp4": "size",
        "short.mp4": "duration",
        "silent.mp4": "audio_db",
        "still.mp4": "motion",
    }
    for name, check in expected.items():
        assert check in by_source.get(name, set()), (name, by_source.get(name))
    assert "truncated.mp4" in by_source  # decoded up to where the data stops: too short or unreadable, never a crash
    assert all(rej["reason"].str.len() > 0)


def rows_by_id(tmp_path: Path) -> dict:
    return {r["source_id"]: r for r in Registry(tmp_path / "data").rows()}


def test_ingest_twice_adds_nothing(tmp_path):
    src = good_sources(tmp_path / "src", 1, seconds=4.5)
    assert run("ingest", str(tmp_path / "src"), "--target", "hand", cwd=tmp_path).exit_code == 0
    copy = tmp_path / "copy.mp4"
    shutil.copy(src[0], copy)
    res = run("ingest", str(copy), str(tmp_path / "src"), "--target", "hand", cwd=tmp_path)
    assert res.exit_code == 0
    rows = Registry(tmp_path / "data").rows()
    assert len(rows) == 1 and (tmp_path / "data" / rows[0]["path"]).read_bytes() == src[0].read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted one-job build of six sources, and the sources."""
    root = tmp_path_factory.mktemp("ref")
    good_sources(root / "src", 6)
    lenient_targets(root)
    assert run("ingest", str(root / "src"), "--target", "lenient", "--targets", "targets.toml", cwd=root).exit_code == 0
    res = run("build", "--target", "lenient", "--jobs", "1", "--targets", "targets.toml", cwd=root)
    assert res.exit_code == 0, res.output
    return root


def same_but_origin(a: Path, b: Path) -> bool:
    """Returns whether two manifests are byte for byte the same once the origin column (absolute paths) is blanked."""

    def text(p: Path) -> str:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        df["origin"] = ""
        return df.to_csv(index=False)

    return text(a) == text(b)


def fresh_copy(reference: Path, dest: Path) -> Path:
    dest.mkdir()
    shutil.copytree(reference / "src", dest / "src")
    shutil.copy(reference / "targets.toml", dest / "targets.toml")
    assert run("ingest", str(dest / "src"), "--target", "lenient", "--targets", "targets.toml", cwd=dest).exit_code == 0
    return dest


def test_reference_build_keeps_clips(reference):
    df = pd.read_csv(reference / "manifests" / "lenient.csv")
    assert len(df) >= 6 and set(df["split"]) <= {"train", "val", "test"}
    assert df.groupby("source_id")["split"].nunique().max() == 1


def test_rebuild_changes_nothing(reference):
    manifest = (reference / "manifests" / "lenient.csv").read_bytes()
    shards = {p: p.stat().st_mtime_ns for p in (reference / "data" / "shards").rglob("*.tar")}
    res = run("build", "--target", "lenient", "--targets", "targets.toml", cwd=reference)
    assert res.exit_code == 0
    assert (reference / "manifests" / "lenient.csv").read_bytes() == manifest
    assert {p: p.stat().st_mtime_ns for p in shards} == shards
    counts = json.loads((reference / "manifests" / "lenient.build.json").read_text())["counts"]
    assert counts["cut_this_run"] == 0 and counts["clips"] == len(pd.read_csv(reference / "manifests" / "lenient.csv"))


def test_same_manifest_whatever_jobs(reference, tmp_path):
    other = fresh_copy(reference, tmp_path / "jobs2")
    assert run("build", "--target", "lenient", "--targets", "targets.toml", "--jobs", "2", cwd=other).exit_code == 0
    assert same_but_origin(other / "manifests" / "lenient.csv", reference / "manifests" / "lenient.csv")


@pytest.mark.slow
def test_three_kills_then_a_build_equal_an_uninterrupted_build(reference, tmp_path):
    other = fresh_copy(reference, tmp_path / "killed")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    shards = other / "data" / "shards" / "lenient"
    # two kills while sources are worked on, one as soon as the commit writes its first shard
    for when in (1.5, 3.0, "commit"):
        proc = subprocess.Popen(
            S2VDATA + ["build", "--target", "lenient", "--targets", "targets.toml", "--jobs", "2"],
            cwd=other,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if when == "commit":
            while proc.poll() is None and not any(shards.glob("*.tar")) and not any(shards.glob(".*.tmp")):
                time.sleep(0.005)
            assert proc.poll() is None, "the build ended before its commit could be interrupted"
        else:
            time.sleep(when)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, at once
        proc.wait()
    # the commit was under way: a manifest exists, and whatever the kills left, no row points at a missing or partial clip
    assert (other / "manifests" / "lenient.csv").exists()
    assert run("verify", "--target", "lenient", cwd=other).exit_code == 0
    res = run("build", "--target", "lenient", "--targets", "targets.toml", cwd=other)
    assert res.exit_code == 0, res.output
    assert same_but_origin(other / "manifests" / "lenient.csv", reference / "manifests" / "lenient.csv")
    assert run("verify", "--target", "lenient", cwd=other).exit_code == 0


def test_verify_finds_a_damaged_clip(reference, tmp_path):
    other = tmp_path / "damaged"
    shutil.copytree(reference, other)
    assert run("verify", "--target", "lenient", cwd=other).exit_code == 0
    shard = sorted((other / "data" / "shards" / "lenient").glob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    i = data.find(b"mdat")
    data[i + 200 : i + 260] = bytes(60)
    shard.write_bytes(bytes(data))
    res = run("verify", "--target", "lenient", cwd=other)
    assert res.exit_code == 1 and "sha256 differs" in res.output


def test_verify_reports_every_clip_of_a_shard_whose_tar_header_is_damaged(reference, tmp_path):
    other = tmp_path / "header"
    shutil.copytree(reference, other)
    df = pd.read_csv(other / "manifests" / "lenient.csv", dtype=str)
    shard = df["shard"].iloc[0]
    path = other / "manifests" / shard
    data = bytearray(path.read_bytes())
    data[100:160] = b"\xff" * 60  # mode, owner, size and checksum of the first member's header
    path.write_bytes(bytes(data))
    res = run("verify", "--target", "lenient", cwd=other)
    assert res.exit_code == 1, res.output
    damaged = set(df[df["shard"] == shard]["clip_id"])
    reported = {line.split(":")[0].strip() for line in res.output.splitlines() if "damaged" in line}
    assert damaged and damaged <= reported, res.output
    assert f"{len(damaged)} problems" in res.output


def test_max_clips_per_source_keeps_a_seeded_subset(reference, tmp_path):
    other = fresh_copy(reference, tmp_path / "maxclips")
    assert (
        run(
            "build", "--target", "lenient", "--targets", "targets.toml", "--max-clips-per-source", "1", "--seed", "3", cwd=other
        ).exit_code
        == 0
    )
    df = pd.read_csv(other / "manifests" / "lenient.csv")
    ref = pd.read_csv(reference / "manifests" / "lenient.csv")
    assert df.groupby("source_id").size().max() == 1
    assert set(df["clip_id"]) <= set(ref["clip_id"])
    # the clips that are cut are the same bytes as in the full build
    assert set(df["sha256"]) <= set(ref["sha256"])
    rej = pd.read_csv(other / "manifests" / "lenient.rejects.csv")
    assert (rej["check"] == "max_clips_per_source").sum() == len(ref) - len(df)


def test_overlapping_stride_cuts_the_same_clips_where_windows_coincide(reference, tmp_path):
    other = fresh_copy(reference, tmp_path / "stride2")
    assert run("build", "--target", "lenient", "--targets", "targets.toml", "--stride", "2", cwd=other).exit_code == 0
    df = pd.read_csv(other / "manifests" / "lenient.csv")
    ref = pd.read_csv(reference / "manifests" / "lenient.csv")
    # 8.5 s sources: windows at 0, 2, 4 s (half overlapping); those at 0 and 4 s are the back-to-back ones
    assert sorted(set(df["start_s"].round(6))) == [0.0, 2.0, 4.0]
    both = df.merge(ref, on="clip_id", suffixes=("", "_ref"))
    assert len(both) == len(ref) and (both["sha256"] == both["sha256_ref"]).all()
    # and the same scores: overlapping windows share each slot's frame shrunk once for the checks
    for col in ("motion", "camera_shift", "scene_cut", "av_sync", "speech", "music"):
        assert (both[col] == both[f"{col}_ref"]).all(), col
    assert run("build", "--target", "lenient", "--targets", "targets.toml", "--stride", "0.05", cwd=other).exit_code == 2


def test_damaged_avi_keeps_its_intact_windows_and_rejects_the_damaged_ones(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_source(src / "clean.avi", fps=25.0, seconds=13, size=(320, 288))
    data = bytearray((src / "clean.avi").read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 2, len(data) // 2 + 20_000, 30):  # damage the middle of the file
        data[pos : pos + 50] = rng.integers(0, 255, 50, dtype=np.uint8).tobytes()
    (src / "clean.avi").unlink()
    (src / "damaged.avi").write_bytes(bytes(data))
    lenient_targets(tmp_path)
    assert run("ingest", str(src), "--target", "lenient", "--targets", "targets.toml", cwd=tmp_path).exit_code == 0
    res = run("build", "--target", "lenient", "--targets", "targets.toml", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "manifests" / "lenient.csv")
    rej = pd.read_csv(tmp_path / "manifests" / "lenient.rejects.csv")
    assert len(df) == 1 and df["start_s"][0] < 1.0  # the window before the damage
    decode = rej[rej["check"] == "decode"]
    first = df["start_s"][0]
    assert sorted(decode["start_s"].round(6)) == [round(first + 4, 6), round(first + 8, 6)] and decode["value"].min() >= 1
    assert run("verify", "--target", "lenient", cwd=tmp_path).exit_code == 0


def test_without_a_terminal_a_build_prints_plain_progress_lines(reference, tmp_path, monkeypatch):
    """Under nohup, Slurm or a Ray job there is no terminal: progress comes as plain lines (done, rate, time left)."""
    monkeypatch.setenv("S2V_PROGRESS_SECONDS", "0")
    other = fresh_copy(reference, tmp_path / "plain")
    res = run("build", "--target", "lenient", "--targets", "targets.toml", cwd=other)
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("build lenient: ")]
    assert len(lines) >= 6, res.output  # one per source, and the last
    assert lines[0].startswith("build lenient: 1/6 sources (17%)") and " left" in lines[0] and "sources/s" in lines[0]
    assert lines[-1].startswith("build lenient: 6/6 sources (100%)")


def test_the_sources_with_the_most_work_start_first():
    """A long 1080p source started last would run alone at the end of a build; unknown facts count as the most work."""
    from types import SimpleNamespace

    from s2vdata.build import longest_first

    rows = {
        "short360": {"duration_s": "10", "width": "640", "height": "360", "fps": "30"},
        "long1080": {"duration_s": "20", "width": "1920", "height": "1080", "fps": "29.97"},
        "mid720x60": {"duration_s": "12", "width": "1280", "height": "720", "fps": "60"},
        "unknown": {"duration_s": "", "width": "", "height": "", "fps": ""},
    }
    jobs = [SimpleNamespace(source_id=k) for k in ("short360", "unknown", "mid720x60", "long1080")]
    assert [j.source_id for j in longest_first(jobs, rows)] == ["unknown", "long1080", "mid720x60", "short360"]
