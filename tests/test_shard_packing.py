"""Shards of a chosen size: many sources per shard, and a rebuild rewrites only the shards whose clips changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from s2vdata.cli import app

from flashclick import lenient_targets, make_source

runner = CliRunner()


def run(*args, cwd: Path):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


def build(cwd: Path, *extra: str) -> dict:
    res = run("build", "--target", "lenient", "--targets", "targets.toml", *extra, cwd=cwd)
    assert res.exit_code == 0, res.output
    return json.loads((cwd / "manifests" / "lenient.build.json").read_text())["counts"]


def shards(cwd: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (cwd / "data" / "shards" / "lenient").glob("*.tar")}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pack")
    (root / "src").mkdir()
    for i in range(7):
        make_source(root / "src" / f"s{i}.mp4", seconds=8.5, seed=i, size=(320, 288))
    lenient_targets(root)
    return root


def test_one_shard_per_source_or_packed_to_a_size_same_clips(sources, tmp_path):
    per = tmp_path / "per"
    per.mkdir()
    shutil.copy(sources / "targets.toml", per)
    assert run("ingest", str(sources / "src"), "--target", "lenient", "--targets", "targets.toml", cwd=per).exit_code == 0
    counts = build(per, "--shard-size", "0")
    df = pd.read_csv(per / "manifests" / "lenient.csv", dtype=str)
    assert counts["shards"] == df["source_id"].nunique() == 7  # one shard per source
    per_source = {sid: (per / "manifests" / shard).stat().st_size for sid, shard in zip(df["source_id"], df["shard"])}

    packed = tmp_path / "packed"
    packed.mkdir()
    shutil.copy(sources / "targets.toml", packed)
    assert run("ingest", str(sources / "src"), "--target", "lenient", "--targets", "targets.toml", cwd=packed).exit_code == 0
    size = int(2.5 * sum(per_source.values()) / len(per_source))  # about two sources a shard
    counts = build(packed, "--shard-size", str(size))
    pk = pd.read_csv(packed / "manifests" / "lenient.csv", dtype=str)
    by_shard = pk.groupby("shard")["source_id"].nunique()
    assert 3 <= counts["shards"] <= 4 and by_shard.max() >= 2
    assert pk.groupby("source_id")["shard"].nunique().max() == 1, "a source's clips lie in one shard"
    # the same clips, the same bytes, only packed otherwise
    assert list(pk["clip_id"]) == list(df["clip_id"]) and list(pk["sha256"]) == list(df["sha256"])
    assert run("verify", "--target", "lenient", cwd=packed).exit_code == 0


def test_a_rebuild_rewrites_only_the_shards_whose_clips_changed(sources, tmp_path):
    root = tmp_path / "grow"
    root.mkdir()
    shutil.copy(sources / "targets.toml", root)
    first = sorted((sources / "src").glob("*.mp4"))
    assert run("ingest", *map(str, first[:5]), "--target", "lenient", "--targets", "targets.toml", cwd=root).exit_code == 0
    counts = build(root, "--shard-size", "1MB")
    assert counts["shards"] >= 2
    before = shards(root)
    rows = pd.read_csv(root / "manifests" / "lenient.csv", dtype=str)
    last = max(before)
    # two more sources: they join the last shard (or new ones); the shards before it are not touched
    assert run("ingest", *map(str, first[5:]), "--target", "lenient", "--targets", "targets.toml", cwd=root).exit_code == 0
    counts = build(root, "--shard-size", "1MB")
    after = shards(root)
    assert {n: t for n, t in after.items() if n < last} == {n: t for n, t in before.items() if n < last}
    grown = pd.read_csv(root / "manifests" / "lenient.csv", dtype=str)
    old = grown[grown["source_id"].isin(rows["source_id"])]
    assert dict(zip(old["clip_id"], old["shard"])) == dict(zip(rows["clip_id"], rows["shard"])), "no clip moves"
    assert counts["cut_this_run"] == len(grown) - len(rows)
    # nothing changed: nothing is written
    assert build(root, "--shard-size", "1MB")["shards_written"] == 0 and shards(root) == after
    # a threshold that drops one source's windows: its shard alone is rewritten
    victim = grown["source_id"].iloc[0]
    victim_shard = grown["shard"].iloc[0].rsplit("/", 1)[1]
    sidecar = root / "data" / "work" / "lenient" / f"{victim}.json"
    data = json.loads(sidecar.read_text())
    for w in data["windows"]:
        w["scores"]["audio_gap_ms"] = 1e6  # as if its sound had holes: the audio_gap check now rejects it
    sidecar.write_text(json.dumps(data))
    counts = build(root, "--shard-size", "1MB")
    final = shards(root)
    assert counts["shards_written"] == 1
    assert {n: t for n, t in final.items() if n != victim_shard} == {n: t for n, t in after.items() if n != victim_shard}
    assert victim not in set(pd.read_csv(root / "manifests" / "lenient.csv", dtype=str)["source_id"])
    assert run("verify", "--target", "lenient", cwd=root).exit_code == 0
