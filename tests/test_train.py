"""The trainer end to end: CLI run + resume, exact resumption, overfitting one clip, DDP on gloo, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import av
import cv2
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from s2vdata.manifest import read_manifest
from s2vmodel.checkpoint import load_generator
from s2vmodel.cli import app
from s2vmodel.config import ConfigError, resolve_config
from s2vmodel.model import S2VGenerator
from s2vmodel.train import RunCost, estimate_cost, train

sys.path.insert(0, str(Path(__file__).parent))
from test_model_data import make_dataset  # noqa: E402

# small enough for a test step in well under a second: few frames, few channels
FAST = {
    "model": {"se_hidden": 8, "ngf": 8, "ndf": 8},
    "data": {"frames": 16, "workers": 0, "val_clips": 1},
    "train": {"log_every": 1, "sample_every": 100, "ckpt_every": 100, "threads": 1},
}
FAST_SET = [
    "--set",
    "model.se_hidden=8",
    "--set",
    "model.ngf=8",
    "--set",
    "model.ndf=8",
    "--set",
    "data.frames=16",
    "--set",
    "data.val_clips=1",
    "--set",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("train-data"), clips=3, shards=1)


def fast_config(*, steps: int, data: dict | None = None, model: dict | None = None, **train_changes):
    overrides = {k: dict(v) for k, v in FAST.items()}
    overrides["train"].update(steps=steps, **train_changes)
    overrides["data"].update(data or {})
    overrides["model"].update(model or {})
    return resolve_config(preset="tiny", overrides=overrides)


def test_cli_trains_then_resumes_to_the_new_total(manifest, tmp_path):
    runner = CliRunner()
    out = tmp_path / "runs" / "t"
    args = [
        "train",
        str(manifest),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--workers",
        "0",
        "--cache",
        str(tmp_path / "cache"),
        *FAST_SET,
    ]
    first = runner.invoke(app, [*args, "--steps", "4"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, [*args, "--steps", "6", "--resume"])
    assert second.exit_code == 0, second.output
    state = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 6
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [4, 6]
    assert {"loss_d", "loss_g", "l1", "val_l1", "steps_per_s", "clips_per_s"} <= set(lines[-1])
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["steps"] == 6 and config["model"]["ngf"] == 8
    # without a terminal: what the run costs, then plain progress lines
    assert "cost: 4 steps of the tiny preset on cpu at" in first.output and "train: 4/4 steps (100%)" in first.output
    assert "cost: 2 steps of the tiny preset" in second.output  # the resumed run has 2 steps left
    # the sample strip: input image (green), generated frame 0 (orange) over the real one (red); 16 frames give 1 pick
    strip = cv2.cvtColor(cv2.imread(str(out / "samples" / "step-000006.png")), cv2.COLOR_BGR2RGB)
    assert strip.shape == (2 * 134, 2 * 134, 3)
    assert (
        tuple(strip[0, 0]) == (40, 180, 40) and tuple(strip[0, 134]) == (255, 150, 0) and tuple(strip[134, 134]) == (220, 30, 30)
    )
    assert (strip[134:, :134] == 255).all()
    with av.open(str(out / "samples" / "step-000006.mp4")) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 16 and frames[0].shape == (128, 256, 3)  # generated | real, twice the size
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/l1")] == [4, 6]
    assert [e.step for e in events.Scalars("train/val_l1")] == [4, 6]
    model, model_config = load_generator(out / "checkpoints" / "latest.pt")
    assert model_config.ngf == 8 and not model.training
    # the tiny preset keeps an EMA of G's weights, and the EMA is what generates
    assert "generator_ema" in state
    assert torch.equal(model.state_dict()["generator.out.weight"], state["generator_ema"]["generator.out.weight"])
    assert not torch.equal(state["generator_ema"]["generator.out.weight"], state["generator"]["generator.out.weight"])


def test_cli_refuses_to_overwrite_a_run_and_resume_without_one(manifest, tmp_path):
    runner = CliRunner()
    args = ["train", str(manifest), "--out", str(tmp_path / "r"), "--preset", "tiny", "--no-cache", "--workers", "0", *FAST_SET]
    missing = runner.invoke(app, [*args, "--steps", "1", "--resume"])
    assert missing.exit_code == 1 and "no checkpoint" in missing.output
    assert runner.invoke(app, [*args, "--steps", "1"]).exit_code == 0
    again = runner.invoke(app, [*args, "--steps", "2"])
    assert again.exit_code == 1 and "--resume" in again.output


def test_four_steps_equal_two_plus_resume_plus_two(manifest, tmp_path):
    common = {"manifests": [manifest]}
    streamed = {"cache": ""}  # the harder case: resuming inside a shard stream
    train(**common, out=tmp_path / "a", config=fast_config(steps=4, ema=0.9, data=streamed))
    train(**common, out=tmp_path / "b", config=fast_config(steps=2, ema=0.9, data=streamed))
    train(**common, out=tmp_path / "b", config=fast_config(steps=4, ema=0.9, data=streamed), resume=True)
    a = torch.load(tmp_path / "a" / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "latest.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    assert torch.equal(a["data"], b["data"])
    for part in ("generator", "generator_ema", "d_image", "d_video"):
        for name, tensor in a[part].items():
            assert torch.allclose(tensor.float(), b[part][name].float(), atol=1e-6), f"{part}.{name}"
    # and training did change the weights, so the equality above is not trivial
    torch.manual_seed(0)
    initial = S2VGenerator(fast_config(steps=1).model).state_dict()
    assert not torch.allclose(initial["generator.out.weight"], a["generator"]["generator.out.weight"])


@pytest.mark.slow
def test_tiny_model_overfits_one_clip(tmp_path):
    one = make_dataset(tmp_path / "one", clips=1)
    # no random crop and reconstruction only: what is left to learn is this clip's motion
    config = fast_config(
        steps=40,
        batch_size=1,
        lr=5e-3,
        lambda_image=0.0,
        lambda_video=0.0,
        ema=0.0,  # val_l1 is measured on the weights that generate: here the trained ones, not a lagging average
        data={"crop": 286, "cache": str(tmp_path / "c")},
    )
    result = train([one], out=tmp_path / "run", config=config)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    start = sum(line["l1"] for line in lines[:3]) / 3
    end = sum(line["l1"] for line in lines[-3:]) / 3
    assert result.step == 40
    assert end < 0.8 * start, (start, end)
    assert lines[-1]["val_l1"] < 0.85 * lines[-1]["val_l1_still"]


def test_four_steps_equal_two_plus_resume_plus_two_with_the_previous_frame_and_scheduled_sampling(manifest, tmp_path):
    def config(steps: int):
        model = {"previous_frame": True, "residual_mode": "blend"}
        return fast_config(steps=steps, scheduled_sampling=0.5, model=model, data={"cache": str(tmp_path / "cache")})

    train([manifest], out=tmp_path / "a", config=config(4))
    train([manifest], out=tmp_path / "b", config=config(2))
    train([manifest], out=tmp_path / "b", config=config(4), resume=True)
    a = torch.load(tmp_path / "a" / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "latest.pt", weights_only=True)
    assert a["config"]["model"]["previous_frame"] and a["config"]["train"]["scheduled_sampling"] == 0.5
    for name, tensor in a["generator"].items():
        assert torch.allclose(tensor.float(), b["generator"][name].float(), atol=1e-6), name
    assert not torch.equal(a["generator"]["generator.out.weight"], torch.zeros_like(a["generator"]["generator.out.weight"]))


def test_the_cost_of_a_run_is_measured_and_said_with_the_preset_that_trains_in_minutes(tmp_path):
    from s2vmodel.cli import cost_lines

    cost = estimate_cost(fast_config(steps=50), device=torch.device("cpu"), step=10)
    assert cost.steps == 40 and cost.seconds_per_step > 0 and cost.seconds == pytest.approx(40 * cost.seconds_per_step)
    assert cost.tiny_seconds is not None and cost.tiny_seconds > 0  # no GPU: what the tiny preset's whole run costs here
    lines = cost_lines(RunCost(steps=100_000, seconds_per_step=1.7, device="cpu", tiny_seconds=300.0), preset="paper")
    assert lines == [
        "cost: 100000 steps of the paper preset on cpu at 1.70 s/step: about 47.2 h",
        "no GPU here: --preset tiny trains its whole run in about 5.0 min on this machine",
    ]
    assert len(cost_lines(RunCost(steps=600, seconds_per_step=0.3, device="cuda:0"), preset="paper")) == 1


def test_plain_progress_prints_a_line_every_so_often_with_the_rate_and_time_left():
    from io import StringIO

    from rich.console import Console

    from s2vmodel.progress import PlainProgress

    out = StringIO()
    progress = PlainProgress(Console(file=out, width=40), every_s=3600)
    progress.update("train", done=1, total=100, unit="steps")
    progress.update("train", done=50, total=100, unit="steps")  # within the interval: no line
    progress.update("train", done=100, total=100, unit="steps", info="L1 0.0123")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0] == "train: 1/100 steps (1%)"
    assert lines[1].startswith("train: 100/100 steps (100%), ") and " left, L1 0.0123" in lines[1]


def test_a_csv_that_is_not_a_manifest_and_a_bad_config_file_are_one_line_errors(manifest, tmp_path):
    runner = CliRunner()
    other = tmp_path / "sources.csv"
    other.write_text("source_id,path\nabc,videos/abc.mp4\n")
    result = runner.invoke(app, ["train", str(other), "--out", str(tmp_path / "x"), "--preset", "tiny"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {other}: not an s2v manifest (missing columns ['clip_id', 'shard', 'key', 'split', 'sha256'])"
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = ")
    result = runner.invoke(app, ["train", str(manifest), "--config", str(bad), "--dry-run"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1 and "bad.toml: cannot read it" in result.output


def test_empty_manifest_and_missing_shards_exit_1(manifest, tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty.csv"
    empty.write_text(manifest.read_text().splitlines()[0] + "\n")
    result = runner.invoke(app, ["train", str(empty), "--out", str(tmp_path / "e"), "--preset", "tiny", "--steps", "1"])
    assert result.exit_code == 1 and "no 'train' clips" in result.output
    gone = tmp_path / "gone.csv"
    gone.write_text(manifest.read_text().replace("shards/hand-000000.tar", "shards/nowhere.tar"))
    result = runner.invoke(app, ["train", str(gone), "--out", str(tmp_path / "g"), "--preset", "tiny", "--steps", "1"])
    assert result.exit_code == 1 and "missing" in result.output


def test_dry_run_prints_the_resolved_config_and_bad_settings_exit_2(manifest, tmp_path):
    runner = CliRunner()
    config_file = tmp_path / "c.toml"
    config_file.write_text("[train]\nlr = 0.001\n[model]\nd_norm = 'instance'\n")
    result = runner.invoke(
        app,
        [
            "train",
            str(manifest),
            "--preset",
            "tiny",
            "--config",
            str(config_file),
            "--set",
            "train.ema=0.99",
            "--steps",
            "7",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.stdout)
    assert resolved["train"]["lr"] == 0.001 and resolved["train"]["ema"] == 0.99 and resolved["train"]["steps"] == 7
    assert resolved["model"]["d_norm"] == "instance" and resolved["preset"] == "tiny"
    bad = runner.invoke(app, ["train", str(manifest), "--set", "train.nope=1", "--dry-run"])
    assert bad.exit_code == 2 and "unknown setting train.nope" in bad.output
    assert not (tmp_path / "runs").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_with_gloo_runs_two_steps_on_two_processes(manifest, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [
        str(torchrun),
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "s2vmodel.cli",
        "train",
        str(manifest),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--cache",
        str(tmp_path / "cache"),
        "--batch-size",
        "1",
        *FAST_SET,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 2
    assert state["data"].shape[0] == 2  # both ranks' data positions are kept
    assert len(state["rng"]["picks"]) == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 2 and len(lines) == 1


@pytest.mark.slow
def test_end_to_end_synth_build_train_resume(tmp_path):
    """The real pipeline: synthetic sources -> build -> shards + manifest -> tiny training -> resume."""
    from s2vdata.cli import app as data_app

    runner = CliRunner()
    data, manifests = str(tmp_path / "data"), str(tmp_path / "manifests")
    synth = runner.invoke(
        data_app, ["synth", "--target", "hand", "--count", "3", "--seed", "0", "--seconds", "4", "--data", data]
    )
    assert synth.exit_code == 0, synth.output
    build = runner.invoke(data_app, ["build", "--target", "hand", "--jobs", "1", "--data", data, "--manifests", manifests])
    assert build.exit_code == 0, build.output
    manifest = Path(manifests) / "hand.csv"
    out = tmp_path / "runs" / "t"
    args = [
        "train",
        str(manifest),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--workers",
        "1",
        "--split",
        "train",
        "--cache",
        str(tmp_path / "cache"),
        *FAST_SET,
    ]
    splits = set(read_manifest(manifest)["split"])
    assert splits, build.output
    if "train" not in splits:  # three sources may all land in another split: train on what there is
        args[args.index("--split") + 1] = sorted(splits)[0]
    assert runner.invoke(app, [*args, "--steps", "2"]).exit_code == 0
    result = runner.invoke(app, [*args, "--steps", "3", "--resume"])
    assert result.exit_code == 0, result.output
    state = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 3
    strip = cv2.imread(str(out / "samples" / "step-000003.png"))
    assert strip.shape == (2 * 134, 2 * 134, 3)  # input + one generated frame over the real one (16 frames)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # logged every log_every steps and at the end of each run: the first run ends at 2, the resumed one at 3
    assert [line["step"] for line in lines] == [2, 3] and all(line["skipped"] == 0 for line in lines)


def test_four_steps_equal_two_plus_resume_plus_two_with_noise_and_the_closest_of_three_samples(manifest, tmp_path):
    def config(steps: int):
        return fast_config(steps=steps, samples=3, model={"noise": 1}, data={"cache": str(tmp_path / "cache")})

    train([manifest], out=tmp_path / "a", config=config(4))
    train([manifest], out=tmp_path / "b", config=config(2))
    train([manifest], out=tmp_path / "b", config=config(4), resume=True)
    a = torch.load(tmp_path / "a" / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "latest.pt", weights_only=True)
    assert a["config"]["model"]["noise"] == 1 and a["config"]["train"]["samples"] == 3
    # the first convolution reads the image's 3 channels and the map's 1
    assert a["generator"]["generator.down.0.0.weight"].shape[1] == 4
    for name, tensor in a["generator"].items():
        assert torch.allclose(tensor.float(), b["generator"][name].float(), atol=1e-6), name


def test_samples_without_noise_are_a_config_error():
    with pytest.raises(ConfigError, match="model.noise"):
        fast_config(steps=1, samples=2, model={"noise": 0})
