"""Ray executor: the same manifest as the local executor, a killed worker is retried, a killed driver is resumed.

One local Ray instance (2 CPUs) serves the in-process tests; the driver-kill
test runs the real CLI, which starts (and loses) its own instance.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from s2vdata import executors
from s2vdata.build import build, plan_jobs
from s2vdata.cli import app
from s2vdata.config import BuildSettings
from s2vdata.ingest import register_files
from s2vdata.manifest import read_manifest
from s2vdata.media import write_video
from s2vdata.ray_executor import INSTALL_HINT, run_ray, start_ray
from s2vdata.synth import synth_sources
from s2vdata.targets import get_target

# the README's hand install (.[dev]) has no Ray: these tests need the `ray` extra
ray = pytest.importorskip("ray")

TARGET = "hand"
SEED = 3
SECONDS = 8.0  # two windows per source
LONG_SECONDS = 48.0  # twelve windows: one source still running when the others are done
S2VDATA = Path(sys.executable).with_name("s2vdata")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Returns a data folder with sources to keep and to reject: 2 clean, 1 panned, 1 silent, 1 without a sound stream, 1 long.

    The long clean source (LONG_SECONDS) is planned first and still runs when
    the short ones are done, on any number of cores: the driver-kill test
    kills the driver then, mid-run.
    """
    root = tmp_path_factory.mktemp("ray-sources")
    data = root / "data"
    synth_sources(target=TARGET, count=2, seed=5, data_dir=data, seconds=SECONDS)
    synth_sources(target=TARGET, count=1, seed=8, data_dir=data, seconds=LONG_SECONDS)
    synth_sources(target=TARGET, count=1, seed=6, data_dir=data, seconds=SECONDS, defect="pan")
    synth_sources(target=TARGET, count=1, seed=7, data_dir=data, seconds=SECONDS, defect="silent")
    rng = np.random.default_rng(0)
    mute = root / "mute.mp4"
    write_video(mute, (rng.integers(0, 255, (300, 300, 3), dtype=np.uint8) for _ in range(150)), None, fps=30)
    register_files([mute], target=TARGET, data_dir=data)
    return data


def copy_data(data: Path, root: Path) -> Path:
    """Returns a fresh project folder holding a copy of the data folder (and no manifests yet)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(data, root / "data")
    return root


def build_in(root: Path, *, executor: str, on_source=None):
    return build(
        target=get_target(TARGET),
        data_dir=root / "data",
        manifests_dir=root / "manifests",
        settings=BuildSettings(seed=SEED),
        executor=executor,
        on_source=on_source,
    )


def outputs(root: Path) -> tuple[bytes, bytes]:
    """Returns the bytes of the manifest and of the rejects file a build wrote."""
    return (root / "manifests" / f"{TARGET}.csv").read_bytes(), (root / "manifests" / f"{TARGET}.rejects.csv").read_bytes()


@pytest.fixture(scope="module")
def reference(sources, tmp_path_factory) -> Path:
    """Returns a project folder built once with the local executor: the answer every Ray build must give."""
    root = copy_data(sources, tmp_path_factory.mktemp("ray-local"))
    rep = build_in(root, executor="local")
    assert rep.failed == 0, rep.failures
    return root


@pytest.fixture(scope="module")
def ray_instance():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
        mp.delenv("RAY_ADDRESS", raising=False)
        assert start_ray(num_cpus=2) is True
        assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
        try:
            yield
        finally:
            ray.shutdown()


def test_the_reference_build_keeps_some_sources_and_rejects_others(reference):
    rows = read_manifest(reference / "manifests" / f"{TARGET}.csv")
    rejects = (reference / "manifests" / f"{TARGET}.rejects.csv").read_text()
    assert len(rows) > 0 and rows["source_id"].nunique() >= 1
    assert "no audio stream" in rejects
    # the panned and the silent sources lose their windows to a check, with a reason
    assert rejects.count("\n") - 1 > 1


def test_ray_build_gives_the_local_manifest_byte_for_byte(sources, reference, ray_instance, tmp_path):
    root = copy_data(sources, tmp_path / "ray")
    seen = []
    rep = build_in(root, executor="ray", on_source=seen.append)
    assert rep.failed == 0, rep.failures
    assert sorted(o.source_id for o in seen) == sorted(
        j.source_id for j in plan_jobs(target=get_target(TARGET), data_dir=root / "data", settings=BuildSettings(seed=SEED))[0]
    )
    assert ray.is_initialized(), "run_ray must not shut down an instance it did not start"
    manifest, rejects = outputs(root)
    assert (manifest, rejects) == outputs(reference)
    assert read_manifest(root / "manifests" / f"{TARGET}.csv")["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()


def test_a_worker_killed_mid_task_is_retried_and_the_build_completes(sources, reference, ray_instance, tmp_path, monkeypatch):
    root = copy_data(sources, tmp_path / "ray-crash")
    marker = tmp_path / "died-once"
    original = executors.run_one

    def dies_once(job):
        # the source's work is done and written, then the worker dies before reporting: the retry must redo nothing
        outcome = original(job)
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return outcome
        os._exit(1)

    monkeypatch.setattr(executors, "run_one", dies_once)
    rep = build_in(root, executor="ray")
    assert marker.exists(), "no worker died: the test did not test a retry"
    assert rep.failed == 0, rep.failures
    assert outputs(root) == outputs(reference)


def test_a_task_that_raises_is_a_failed_source_with_its_reason(reference, ray_instance, tmp_path):
    root = tmp_path / "again"
    shutil.copytree(reference, root)
    jobs, _, _ = plan_jobs(target=get_target(TARGET), data_dir=root / "data", settings=BuildSettings(seed=SEED))
    bad = jobs[1].source_id

    def breaks_on_one(job):
        if job.source_id == bad:
            raise OSError(f"{job.path}: stale NFS file handle")
        return executors.run_one(job)

    outcomes = {o.source_id: o for o in run_ray(jobs, run=breaks_on_one)}
    assert set(outcomes) == {j.source_id for j in jobs}
    assert outcomes[bad].status == "failed"
    assert outcomes[bad].reason.startswith("task raised: OSError") and "stale NFS file handle" in outcomes[bad].reason
    # the others were finished by the reference build: read back, nothing cut again
    assert all(o.status == "done" and o.cut == 0 for s, o in outcomes.items() if s != bad)


def test_without_ray_installed_the_build_says_how_to_install_it(reference, tmp_path, monkeypatch):
    root = tmp_path / "noray"
    shutil.copytree(reference, root)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"--executor ray needs Ray: pip install 's2v\[ray\]'"):
        next(
            run_ray(
                plan_jobs(target=get_target(TARGET), data_dir=root / "data", settings=BuildSettings())[0], run=executors.run_one
            )
        )
    result = CliRunner().invoke(
        app,
        ["build", "--target", TARGET, "--executor", "ray", "--data", str(root / "data"), "--manifests", str(tmp_path / "fresh")],
    )
    assert result.exit_code == 2, result.output
    assert "--executor ray needs Ray: pip install" in result.output
    assert not (tmp_path / "fresh" / f"{TARGET}.csv").exists()


def test_the_cli_shows_the_install_command_whole(reference, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(
        app,
        [
            "build",
            "--target",
            TARGET,
            "--executor",
            "ray",
            "--data",
            str(reference / "data"),
            "--manifests",
            str(tmp_path / "manifests"),
        ],
    )
    assert INSTALL_HINT in result.output


def test_a_ray_address_where_nothing_listens_is_a_usage_error_not_a_hang(reference, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [
            str(S2VDATA),
            "build",
            "--target",
            TARGET,
            "--executor",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
            "--data",
            str(reference / "data"),
            "--manifests",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    said = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    assert result.returncode == 2, said
    assert f"127.0.0.1:{port}" in said and "nothing answers there" in said
    assert "ray start --head" in said


def session_pids(sid: int) -> list[int]:
    """Returns the ids of the live processes in a session (the killed driver's Ray processes)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command name: state, ppid, pgrp, session; zombies are already gone for our purpose
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.slow
def test_a_driver_killed_mid_run_is_finished_by_a_local_rerun_without_redoing_sources(sources, reference, tmp_path):
    root = copy_data(sources, tmp_path / "killed")
    work = root / "data" / "work" / TARGET
    n_jobs = len(plan_jobs(target=get_target(TARGET), data_dir=root / "data", settings=BuildSettings(seed=SEED))[0])
    log = (tmp_path / "driver.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_USAGE_STATS_ENABLED", "RAY_ADDRESS")}
    driver = subprocess.Popen(
        [
            str(S2VDATA),
            "build",
            "--target",
            TARGET,
            "--executor",
            "ray",
            "--seed",
            str(SEED),
            "--data",
            "data",
            "--manifests",
            "manifests",
        ],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        # wait for a source whose clips are cut (its part tar is written before its sidecar)
        while not [p for p in work.glob("*.clips.tar") if (work / p.name.replace(".clips.tar", ".json")).exists()]:
            assert driver.poll() is None, f"the build ended before any source was done:\n{(tmp_path / 'driver.log').read_text()}"
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        # the driver's Ray processes die with it or linger (its agents): end them, so nothing writes after this
        for pid in session_pids(driver.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while session_pids(driver.pid):
            time.sleep(0.1)
        log.close()
    done = {p.stem: p.stat().st_mtime_ns for p in work.glob("*.json")}
    assert 0 < len(done) < n_jobs, "the driver was not killed mid-run"
    assert not (root / "manifests" / f"{TARGET}.csv").exists()

    seen = {}
    rep = build_in(root, executor="local", on_source=lambda o: seen.setdefault(o.source_id, o))
    assert rep.failed == 0, rep.failures
    assert {s: (work / f"{s}.json").stat().st_mtime_ns for s in done} == done
    assert all(seen[s].cut == 0 for s in done)
    assert outputs(root) == outputs(reference)
