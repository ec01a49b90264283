"""`evaluate`: per-clip generation from frame 0 and the whole sound, scored against `still` and `real`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from s2vdata.manifest import clip_sha256, write_manifest
from s2vdata.media import encode_clip
from s2vdata.shards import write_shard
from s2vmodel.checkpoint import save_checkpoint
from s2vmodel.config import resolve_config
from s2vmodel.data import DataError
from s2vmodel.evaluate import evaluate, write_json

SPF = 1470


def save_tiny_checkpoint(path: Path, *, residual: bool, seed: int = 0) -> Path:
    """Returns path after saving a randomly initialised tiny-preset generator there (the trainer's format)."""
    from s2vmodel.model import S2VGenerator

    config = resolve_config(preset="tiny", overrides={"model": {"residual": residual}})
    torch.manual_seed(seed)
    model = S2VGenerator(config.model)
    return save_checkpoint(path, {"step": 0, "config": config.to_dict(), "generator": model.state_dict()})


def flash_clip(seed: int, *, first: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Returns (frames (120, 286, 286, 3) uint8, audio (176400,)): a square flashes at each click (from frame `first` on)."""
    rng = np.random.default_rng(seed)
    events = np.sort(rng.choice(np.arange(first, 115), size=6, replace=False))
    audio = rng.normal(0, 1e-3, 120 * SPF).astype(np.float32)
    brightness = np.zeros(120)
    for k in events:
        audio[k * SPF : k * SPF + 300] += (rng.normal(0, 0.5, 300) * np.exp(-np.arange(300) / 60)).astype(np.float32)
        brightness[k:] += 180 * np.exp(-np.arange(120 - k) / 2.0)
    frames = np.empty((120, 286, 286, 3), np.uint8)
    frames[:] = rng.integers(30, 90, size=3, dtype=np.uint8)
    for t in range(120):
        frames[t, 90:200, 90:200] = np.clip(60 + brightness[t], 0, 255)
    return frames, np.clip(audio, -1, 1)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """A manifest with two good test clips, one malformed test clip and one train clip, in one shard."""
    root = tmp_path_factory.mktemp("data")
    samples, rows = [], []
    for i, split in enumerate(["test", "test", "train"]):
        mp4, flac = encode_clip(*flash_clip(i))
        key = f"clip{i:03d}"
        samples.append((key, {"mp4": mp4, "flac": flac, "json": b"{}"}))
        rows.append(
            {"clip_id": key, "shard": "shards/t-000000.tar", "key": key, "split": split, "sha256": clip_sha256(mp4, flac)}
        )
    # truncated video bytes: a clip the decoder cannot read
    samples.append(("broken", {"mp4": samples[0][1]["mp4"][:500], "flac": samples[0][1]["flac"], "json": b"{}"}))
    rows.append({"clip_id": "broken", "shard": "shards/t-000000.tar", "key": "broken", "split": "test", "sha256": "0"})
    write_shard(root / "shards" / "t-000000.tar", samples)
    write_manifest(root / "t.csv", rows)
    return root / "t.csv"


@pytest.fixture(scope="module")
def identity_result(tmp_path_factory, manifest) -> dict:
    tmp = tmp_path_factory.mktemp("eval")
    ckpt = save_tiny_checkpoint(tmp / "identity.pt", residual=True)
    return evaluate(checkpoint=ckpt, manifest=manifest, split="test", strips_dir=tmp / "strips")


def test_every_test_clip_is_scored_and_the_malformed_one_is_skipped(identity_result):
    assert identity_result["clips"] == 2
    assert identity_result["split"] == "test"
    assert identity_result["skipped"] == ["broken"]
    assert [c["clip_id"] for c in identity_result["per_clip"]] == ["clip000", "clip001"]
    for name in ("model", "still", "real"):
        assert set(identity_result[name]) == {"l1", "psnr", "ssim", "av_sync", "av_align", "fvd"}


def test_fvd_of_a_model_that_returns_the_input_image_is_the_still_images(identity_result):
    model, still, real = identity_result["model"], identity_result["still"], identity_result["real"]
    # the flashes move and a still image does not: I3D tells them apart
    assert still["fvd"] > 1.0
    assert model["fvd"] == pytest.approx(still["fvd"], rel=1e-4)
    assert real["fvd"] is None
    protocol = identity_result["fvd"]
    assert (protocol["frames"], protocol["size"], protocol["clips"], protocol["windows"]) == (16, 224, 2, 14)
    assert "2 clips" in protocol["note"]


def test_fvd_features_of_real_and_still_clips_are_kept_by_frame_hash(tmp_path, manifest):
    ckpt = save_tiny_checkpoint(tmp_path / "c.pt", residual=False)
    first = evaluate(checkpoint=ckpt, manifest=manifest, split="test", limit=1, fvd_cache=tmp_path / "fvd")
    second = evaluate(checkpoint=ckpt, manifest=manifest, split="test", limit=1, fvd_cache=tmp_path / "fvd")
    assert first["fvd"]["cached"] == 0 and second["fvd"]["cached"] == 2  # the real and the still clip's features
    assert len(list((tmp_path / "fvd").glob("*.npy"))) == 2
    assert second["model"]["fvd"] == first["model"]["fvd"] and second["still"]["fvd"] == first["still"]["fvd"]


def test_a_model_that_returns_the_input_image_scores_exactly_like_still(identity_result):
    # an untrained residual G is the identity: it is the `still` baseline
    model, still = identity_result["model"], identity_result["still"]
    assert model["l1"] == pytest.approx(still["l1"], abs=1e-12) and model["l1"] > 0.01
    assert model["ssim"] == pytest.approx(still["ssim"], abs=1e-12)
    assert model["av_sync"] == still["av_sync"] == 0.0


def test_motion_against_the_real_clip_is_one_for_real_and_zero_for_a_still_video(identity_result):
    motion = identity_result["motion"]
    assert motion["real"]["time"] == pytest.approx(1.0) and motion["real"]["place"] == pytest.approx(1.0)
    for name in ("model", "still"):  # the identity model is the still image
        assert motion[name]["time"] == 0.0 and motion[name]["place"] == 0.0 and motion[name]["amount"] == 0.0
    assert identity_result["events"]["clips"] == 0  # the flashes start after frame 0
    assert identity_result["events"]["model"]["ghost"] is None


def test_a_clip_that_starts_mid_flash_gets_ghost_and_hole(tmp_path):
    frames, audio = flash_clip(7, first=0)
    frames[0, 90:200, 90:200] = 255  # frame 0 holds a flash at its brightest
    mp4, flac = encode_clip(frames, audio)
    write_shard(tmp_path / "shards" / "m-000000.tar", [("mid", {"mp4": mp4, "flac": flac, "json": b"{}"})])
    row = {"clip_id": "mid", "shard": "shards/m-000000.tar", "key": "mid", "split": "test", "sha256": clip_sha256(mp4, flac)}
    write_manifest(tmp_path / "m.csv", [row])
    result = evaluate(checkpoint=save_tiny_checkpoint(tmp_path / "c.pt", residual=True), manifest=tmp_path / "m.csv", fvd=False)
    events = result["events"]
    assert events["clips"] == 1 and events["clip_ids"] == ["mid"]
    # the identity model keeps the flash in every frame: all ghost, no hole, exactly as still
    assert events["model"]["ghost"] == events["still"]["ghost"] > 0.1
    assert events["model"]["hole"] == events["still"]["hole"] < 0.01


def test_real_clips_move_with_their_sound_and_have_no_appearance_scores(identity_result):
    real = identity_result["real"]
    assert real["av_sync"] > 0.5
    assert real["av_align"] > 0.3
    assert real["l1"] is None and real["psnr"] is None and real["ssim"] is None


def test_strips_are_written_for_the_first_clips(identity_result, tmp_path_factory):
    strips = sorted(Path(identity_result["checkpoint"]).parent.joinpath("strips").glob("*.png"))
    assert [p.name for p in strips] == ["clip000.png", "clip001.png"]


def test_json_is_strict_and_has_the_three_baselines(identity_result, tmp_path):
    path = write_json(tmp_path / "eval.json", identity_result)
    doc = json.loads(path.read_text())
    assert {"model", "still", "real", "clips", "split"} <= set(doc)
    assert doc["clips"] == 2


def test_a_split_without_clips_is_a_clear_error(tmp_path, manifest):
    ckpt = save_tiny_checkpoint(tmp_path / "c.pt", residual=True)
    with pytest.raises(DataError, match="no 'val' clips"):
        evaluate(checkpoint=ckpt, manifest=manifest, split="val")


def test_cli_evaluate_prints_the_table_writes_json_and_exits_1_on_an_empty_split(tmp_path, manifest):
    from typer.testing import CliRunner

    from s2vmodel.cli import app

    ckpt = save_tiny_checkpoint(tmp_path / "c.pt", residual=True)
    runner = CliRunner()
    result = runner.invoke(
        app, ["evaluate", str(manifest), "--checkpoint", str(ckpt), "--json", str(tmp_path / "e.json"), "--limit", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "av_sync" in result.output and "still" in result.output and "fvd" in result.output
    assert "1 clips is biased" in " ".join(result.output.split())
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["clips"] == 1
    assert doc["model"]["fvd"] == pytest.approx(doc["still"]["fvd"], rel=1e-4) and doc["still"]["fvd"] > 1.0
    assert doc["real"]["fvd"] is None and doc["fvd"]["windows"] == 7
    result = runner.invoke(
        app,
        ["evaluate", str(manifest), "--checkpoint", str(ckpt), "--json", str(tmp_path / "n.json"), "--limit", "1", "--no-fvd"],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "n.json").read_text())
    assert doc["model"]["fvd"] is None and doc["fvd"] is None
    result = runner.invoke(app, ["evaluate", str(manifest), "--checkpoint", str(ckpt), "--split", "val"])
    assert result.exit_code == 1
    assert "no 'val' clips" in result.output
