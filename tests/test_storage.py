"""Object storage: sources, shards and manifests in a bucket (a local S3 server), with the guarantees of a local disk."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from s2vdata.cli import app

from flashclick import lenient_targets, make_source
from s3server import make_bucket, s3_environ

runner = CliRunner()
S2VDATA = [sys.executable, "-m", "s2vdata.cli"]
pytestmark = pytest.mark.slow


def run(*args, cwd: Path):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def s3():
    """The environment of a local S3 server, set in this process for the module's tests."""
    with s3_environ() as env:
        yield env


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("s3src")
    (root / "src").mkdir()
    for i in range(4):
        make_source(root / "src" / f"s{i}.mp4", fps=(30.0, 25.0)[i % 2], seconds=8.5, seed=i, size=(320, 288))
    lenient_targets(root)
    return root


@pytest.fixture(scope="module")
def local_build(sources, tmp_path_factory) -> Path:
    """The reference: the same sources built on a local disk."""
    root = tmp_path_factory.mktemp("s3ref")
    shutil.copy(sources / "targets.toml", root / "targets.toml")
    assert run("ingest", str(sources / "src"), "--target", "lenient", "--targets", "targets.toml", cwd=root).exit_code == 0
    res = run("build", "--target", "lenient", "--targets", "targets.toml", "--jobs", "2", cwd=root)
    assert res.exit_code == 0, res.output
    return root


def _fs():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def _clip_hashes(manifest_text: str) -> dict[str, str]:
    df = pd.read_csv(io.StringIO(manifest_text), dtype=str)
    return dict(zip(df["clip_id"], df["sha256"]))


def _ingest(sources: Path, bucket: str) -> None:
    res = run(
        "ingest",
        str(sources / "src"),
        "--target",
        "lenient",
        "--targets",
        "targets.toml",
        "--data",
        f"s3://{bucket}/data",
        cwd=sources,
    )
    assert res.exit_code == 0, res.output


def test_a_build_in_a_bucket_equals_a_local_build(s3, sources, local_build):
    make_bucket(s3, "one")
    _ingest(sources, "one")
    fs = _fs()
    assert len(fs.glob("one/data/sources/*.mp4")) == 4 and fs.exists("one/data/sources.csv")
    res = run(
        "build",
        "--target",
        "lenient",
        "--targets",
        "targets.toml",
        "--jobs",
        "2",
        "--data",
        "s3://one/data",
        "--manifests",
        "s3://one/manifests",
        cwd=sources,
    )
    assert res.exit_code == 0, res.output
    assert not (sources / "s3:").exists() and not (sources / "data").exists(), "nothing lands in a local folder"
    remote = fs.cat_file("one/manifests/lenient.csv").decode()
    local = (local_build / "manifests" / "lenient.csv").read_text()
    assert remote == local  # origins, shard paths relative to the manifest, splits, scores, clip hashes: all the same
    assert (
        fs.cat_file("one/manifests/lenient.rejects.csv").decode()
        == (local_build / "manifests" / "lenient.rejects.csv").read_text()
    )
    # the shards' bytes too
    for shard in sorted(set(pd.read_csv(io.StringIO(remote), dtype=str)["shard"])):
        key = "one/" + os.path.normpath(os.path.join("manifests", shard))
        assert fs.cat_file(key) == (local_build / "manifests" / shard).read_bytes()
    res = run("verify", "--target", "lenient", "--manifests", "s3://one/manifests", cwd=sources)
    assert res.exit_code == 0 and "0 problems" in res.output, res.output
    # the trainer reads the bucket's manifest and shards (through the clip API) and caches them locally
    from s2vmodel.cli import app as model_app

    out = sources / "run-from-bucket"
    args = [
        "train",
        "s3://one/manifests/lenient.csv",
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--split",
        "train",
        "--workers",
        "0",
        "--cache",
        str(sources / "model-cache"),
        "--set",
        "model.se_hidden=8",
        "--set",
        "model.ndf=8",
        "--set",
        "data.frames=16",
        "--set",
        "data.val_clips=1",
        "--set",
        "train.threads=1",
    ]
    res = runner.invoke(model_app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    import torch

    assert torch.load(out / "checkpoints" / "latest.pt", weights_only=True)["step"] == 2
    n_train = int(
        (pd.read_csv(io.StringIO(fs.cat_file("one/manifests/lenient.csv").decode()), dtype=str)["split"] == "train").sum()
    )
    index = json.loads(next((sources / "model-cache").glob("*/index.json")).read_text())
    assert len(index["names"]) == n_train and not index["errors"], "the cache holds every train clip of the bucket's manifest"
    # a rebuild redoes nothing
    res = run(
        "build",
        "--target",
        "lenient",
        "--targets",
        "targets.toml",
        "--data",
        "s3://one/data",
        "--manifests",
        "s3://one/manifests",
        cwd=sources,
    )
    assert res.exit_code == 0 and "clips cut this run" in res.output
    counts = json.loads(fs.cat_file("one/manifests/lenient.build.json"))["counts"]
    assert counts["cut_this_run"] == 0 and counts["shards_written"] == 0


def test_a_killed_build_in_a_bucket_resumes_to_the_same_result_and_never_shows_a_partial_object(s3, sources, local_build):
    make_bucket(s3, "two")
    _ingest(sources, "two")
    fs = _fs()
    problems: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        # whatever the moment, every shard under its final name reads whole, and a manifest names only such shards
        while not stop.is_set():
            for key in fs.glob("two/data/shards/lenient/*.tar"):
                try:
                    data = fs.cat_file(key)
                except FileNotFoundError:
                    continue  # replaced or removed between listing and reading
                try:
                    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                        for m in tar:
                            tar.extractfile(m).read()
                except (tarfile.TarError, EOFError) as e:
                    problems.append(f"{key}: {e}")
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    args = [
        "build",
        "--target",
        "lenient",
        "--targets",
        "targets.toml",
        "--jobs",
        "2",
        "--data",
        "s3://two/data",
        "--manifests",
        "s3://two/manifests",
    ]
    try:
        for delay in (2.0, 4.0):
            proc = subprocess.Popen(
                S2VDATA + args, cwd=sources, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        res = subprocess.run(S2VDATA + args, cwd=sources, env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        stop.set()
        thread.join()
    assert not problems, problems
    assert fs.cat_file("two/manifests/lenient.csv").decode() == (local_build / "manifests" / "lenient.csv").read_text()
    res = run("verify", "--target", "lenient", "--manifests", "s3://two/manifests", cwd=sources)
    assert res.exit_code == 0, res.output


def test_a_ray_build_against_a_bucket_equals_a_local_build(s3, sources, local_build):
    pytest.importorskip("ray")
    make_bucket(s3, "three")
    _ingest(sources, "three")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "RAY_USAGE_STATS_ENABLED": "0"}
    res = subprocess.run(
        S2VDATA
        + [
            "build",
            "--target",
            "lenient",
            "--targets",
            "targets.toml",
            "--executor",
            "ray",
            "--data",
            "s3://three/data",
            "--manifests",
            "s3://three/manifests",
        ],
        cwd=sources,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert _fs().cat_file("three/manifests/lenient.csv").decode() == (local_build / "manifests" / "lenient.csv").read_text()


def test_a_url_scheme_that_is_not_installed_or_not_known_is_a_usage_error(tmp_path):
    res = run("build", "--target", "hand", "--data", "gs://bucket/data", cwd=tmp_path)
    assert res.exit_code == 2 and "pip install 's2v[gcs]'" in res.output
    res = run("build", "--target", "hand", "--data", "zzz://bucket/data", cwd=tmp_path)
    assert res.exit_code == 2 and "not a storage scheme" in res.output
    res = run("report", "--target", "hand", "--data", "s3://bucket/data", cwd=tmp_path)
    assert res.exit_code == 2
    assert not any(tmp_path.iterdir()), "no local folder named after a URL"


def test_storage_options_reach_the_store(s3, sources, tmp_path):
    """Credentials and endpoint given as --storage-option instead of the environment."""
    make_bucket(s3, "four")
    saved = {k: os.environ.pop(k) for k in ("AWS_ENDPOINT_URL",)}
    try:
        res = run(
            "ingest",
            str(sources / "src" / "s0.mp4"),
            "--target",
            "hand",
            "--data",
            "s3://four/data",
            "--storage-option",
            f"client_kwargs.endpoint_url={s3['AWS_ENDPOINT_URL']}",
            cwd=tmp_path,
        )
        assert res.exit_code == 0, res.output
    finally:
        os.environ.update(saved)
    rows = pd.read_csv(io.BytesIO(_fs().cat_file("four/data/sources.csv")), dtype=str)
    sha = hashlib.sha256((sources / "src" / "s0.mp4").read_bytes()).hexdigest()
    assert list(rows["sha256"]) == [sha]
