"""Faults cost what they touch: a killed worker its source, a read error one build, stale measures nothing; splits hold."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from typer.testing import CliRunner

from s2vdata.build import build
from s2vdata.cli import app
from s2vdata.config import BuildSettings
from s2vdata.ingest import ingest_paths
from s2vdata.media import write_video
from s2vdata.registry import Registry
from s2vdata.targets import get_target
from s2vdata.windows import split_of

from flashclick import lenient_targets, make_source

runner = CliRunner()


def run(*args, cwd: Path):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


def _children_with_open(path: Path) -> list[int]:
    """Returns the pids of this process's children that have `path` open."""
    me, found = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            if ppid != me:
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == str(path) for fd in fds):
                found.append(int(pid))
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
    return found


def test_a_killed_worker_costs_its_source_alone(tmp_path):
    """A worker killed with SIGKILL (as the out-of-memory killer does), twice: that source fails with the signal, the
    others are built and committed, and the build exits 1."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        make_source(src / f"short{i}.mp4", seconds=4.5, seed=i, size=(320, 288))
    make_source(src / "long.mp4", seconds=40.0, seed=9, size=(320, 288))
    lenient_targets(tmp_path)
    assert run("ingest", str(src), "--target", "lenient", "--targets", "targets.toml", cwd=tmp_path).exit_code == 0
    long_row = next(r for r in Registry(tmp_path / "data").rows() if r["origin"].endswith("long.mp4"))
    long_path = (tmp_path / "data" / long_row["path"]).resolve()
    killed: list[int] = []
    done = threading.Event()

    def killer() -> None:
        while not done.is_set() and len(killed) < 2:
            for pid in _children_with_open(long_path):
                if pid not in killed:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        res = run("build", "--target", "lenient", "--targets", "targets.toml", "--jobs", "2", cwd=tmp_path)
    finally:
        done.set()
        thread.join()
    assert len(killed) == 2, killed
    assert res.exit_code == 1, res.output
    info = json.loads((tmp_path / "manifests" / "lenient.build.json").read_text())
    assert list(info["counts"]["failures"]) == [long_row["source_id"]]
    assert "killed by SIGKILL" in info["counts"]["failures"][long_row["source_id"]]
    df = pd.read_csv(tmp_path / "manifests" / "lenient.csv", dtype=str)
    assert set(df["source_id"]) == {r["source_id"] for r in Registry(tmp_path / "data").rows()} - {long_row["source_id"]}
    # left alone, the next build finishes the job
    res = run("build", "--target", "lenient", "--targets", "targets.toml", "--jobs", "2", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    assert long_row["source_id"] in set(pd.read_csv(tmp_path / "manifests" / "lenient.csv", dtype=str)["source_id"])


def _setup(tmp_path: Path, n: int) -> tuple[list[dict], Path]:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        make_source(src / f"s{i}.mp4", seconds=4.5, seed=i, size=(320, 288))
    lenient_targets(tmp_path)
    ingest_paths([src], target="lenient", data_dir=tmp_path / "data")
    return Registry(tmp_path / "data").rows(), tmp_path / "targets.toml"


def test_a_read_error_fails_the_source_for_this_build_only(tmp_path):
    """An OS error while reading (EIO from the kernel) is not the decoder's verdict: nothing is stored, the next build
    reads the file."""
    rows, targets = _setup(tmp_path, 2)
    target = get_target("lenient", targets)
    victim = tmp_path / "data" / rows[0]["path"]
    saved = victim.with_suffix(".saved")
    victim.rename(saved)
    victim.symlink_to("/proc/self/mem")  # reading it at offset 0 fails with EIO
    rep = build(target=target, data_dir=tmp_path / "data", manifests_dir=tmp_path / "manifests", settings=BuildSettings())
    assert rep.failed == 1 and "cannot read" in rep.failures[rows[0]["source_id"]], rep.failures
    assert not (tmp_path / "data" / "work" / "lenient" / f"{rows[0]['source_id']}.json").exists()
    rejects = pd.read_csv(tmp_path / "manifests" / "lenient.rejects.csv", dtype=str)
    assert rows[0]["source_id"] not in set(rejects["source_id"])
    victim.unlink()
    saved.rename(victim)
    rep = build(target=target, data_dir=tmp_path / "data", manifests_dir=tmp_path / "manifests", settings=BuildSettings())
    assert rep.failed == 0 and rep.clips == 2


def test_commit_never_uses_measures_of_other_settings(tmp_path):
    """A source whose worker fails under new settings is failed with its reason: its old measures and clips stay out."""
    rows, targets = _setup(tmp_path, 2)
    target = get_target("lenient", targets)
    data, manifests = tmp_path / "data", tmp_path / "manifests"
    assert build(target=target, data_dir=data, manifests_dir=manifests, settings=BuildSettings()).clips == 2
    victim = data / rows[0]["path"]
    saved = victim.with_suffix(".saved")
    victim.rename(saved)
    victim.symlink_to("/proc/self/mem")
    rep = build(target=target, data_dir=data, manifests_dir=manifests, settings=BuildSettings(stride_s=0.5))
    sid = rows[0]["source_id"]
    assert rep.failed == 1 and "other settings" in rep.failures[sid], rep.failures
    df = pd.read_csv(manifests / "lenient.csv", dtype=str)
    assert sid not in set(df["source_id"]) and len(df) == 2  # the other source: its windows at 0 and 0.5 s


def _pattern_source(path: Path, bits: np.ndarray) -> None:
    """Writes a silent, still 4.5 s source whose frames have exactly these dHash bits (8x8)."""
    values = np.zeros((8, 9))
    values[:, 0] = 128
    for c in range(8):
        values[:, c + 1] = values[:, c] + np.where(bits[:, c], 12, -12)
    grey = cv2.resize(values.astype(np.uint8), (286, 286), interpolation=cv2.INTER_NEAREST)
    frame = np.repeat(grey[:, :, None], 3, axis=2)
    write_video(path, [frame] * 135, np.zeros(int(4.5 * 44_100), np.float32), fps=30.0)


def test_a_source_that_joins_two_groups_moves_no_clip_to_another_split(tmp_path):
    """A and B are different recordings in different splits; C is a near-duplicate of both. Once C arrives, A and B
    form one group, and still every published clip keeps its split; C takes the split of the group's first source."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for attempt in range(40):
        a = rng.random((8, 8)) < 0.5
        flips = rng.permutation(64)[:12]
        c = a.copy()
        c.flat[flips[:6]] ^= True  # C: 6 bits from A
        b = c.copy()
        b.flat[flips[6:]] ^= True  # B: 6 bits from C, 12 from A (near-duplicates are within 10)
        paths = {k: src / f"{k}{attempt}.mp4" for k in "abc"}
        for k, bits in zip("abc", (a, b, c)):
            _pattern_source(paths[k], bits)
        sids = {k: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for k, p in paths.items()}
        if split_of(sids["a"], (0.8, 0.1, 0.1)) != split_of(sids["b"], (0.8, 0.1, 0.1)):
            break
        for p in paths.values():
            p.unlink()
    else:
        raise AssertionError("no pair of patterns in different splits")
    lenient_targets(tmp_path)
    target = get_target("lenient", tmp_path / "targets.toml")
    data, manifests = tmp_path / "data", tmp_path / "manifests"
    ingest_paths([paths["a"], paths["b"]], target="lenient", data_dir=data)
    build(target=target, data_dir=data, manifests_dir=manifests, settings=BuildSettings())
    before = pd.read_csv(manifests / "lenient.csv", dtype=str).set_index("source_id")
    assert set(before.index) == {sids["a"], sids["b"]} and before.loc[sids["a"], "split"] != before.loc[sids["b"], "split"]
    ingest_paths([paths["c"]], target="lenient", data_dir=data)
    build(target=target, data_dir=data, manifests_dir=manifests, settings=BuildSettings())
    after = pd.read_csv(manifests / "lenient.csv", dtype=str).set_index("source_id")
    # the bridge happened: one group, named by its first source
    assert set(after["group_id"]) == {sids["a"]}
    assert after.loc[sids["a"], "split"] == before.loc[sids["a"], "split"]
    assert after.loc[sids["b"], "split"] == before.loc[sids["b"], "split"]
    assert after.loc[sids["c"], "split"] == before.loc[sids["a"], "split"]


def test_ingest_exits_1_when_every_file_failed(tmp_path):
    (tmp_path / "a.mp4").write_text("not a video\n")
    (tmp_path / "b.mp4").write_bytes(b"")
    for attempt in range(2):
        # the second time, both are in the registry as failed: still nothing usable, still exit 1
        res = run("ingest", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "--target", "hand", cwd=tmp_path)
        assert res.exit_code == 1, (attempt, res.output)
        assert "a.mp4" in res.output and "b.mp4" in res.output
    (tmp_path / "empty").mkdir()
    res = run("ingest", str(tmp_path / "empty"), "--target", "hand", cwd=tmp_path)
    assert res.exit_code == 2 and "no video files" in res.output


def test_a_build_without_the_voice_model_stops_at_once_with_the_install_command(tmp_path, monkeypatch):
    """silero-vad absent: exit 2 before any source is measured, naming the pip command; nothing is written."""
    from s2vdata.checks import speech

    _setup(tmp_path, 1)
    real_find_spec = speech.importlib.util.find_spec
    monkeypatch.setattr(speech, "_MODEL", None)
    monkeypatch.setattr(
        speech.importlib.util, "find_spec", lambda name, *a: None if name == "silero_vad" else real_find_spec(name, *a)
    )
    res = run("build", "--target", "lenient", "--targets", "targets.toml", cwd=tmp_path)
    assert res.exit_code == 2, res.output
    assert "silero-vad" in res.output and "pip install" in res.output
    assert not (tmp_path / "data" / "work").exists() and not (tmp_path / "manifests" / "lenient.csv").exists()
