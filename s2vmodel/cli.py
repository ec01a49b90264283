"""The `s2vmodel` command: one typer function per command, each calling one library function.

Commands: `train` (this file's first section). `generate` and `evaluate` are added below it,
each as its own self-contained function.
"""

from __future__ import annotations

import json
import logging
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="Train and use the image + sound -> video model (Tsuchiya et al., CVPR-W 2019).", no_args_is_help=True)
console = Console(stderr=True)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details to stderr.")) -> None:
    """s2vmodel: train on s2vdata manifests, generate videos, evaluate."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------- train


class Preset(str, Enum):
    paper = "paper"
    tiny = "tiny"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@app.command()
def train(
    manifests: list[Path] = typer.Argument(..., help="Manifest CSV(s) written by `s2vdata build`, e.g. manifests/hand.csv."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Run folder (config.json, checkpoints/, metrics.jsonl, samples/)."),
    preset: Preset = typer.Option(Preset.paper, "--preset", help="paper: the paper's settings; tiny: trains in minutes on CPU."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Total optimisation steps of the run."),
    config_files: list[Path] = typer.Option([], "--config", exists=True, dir_okay=False, help="TOML/JSON overrides {section: {field: value}}."),
    assignments: list[str] = typer.Option([], "--set", help="One override, e.g. --set train.lr=1e-4 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoints/latest.pt."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
    device: Optional[Device] = typer.Option(None, "--device", help="auto (CUDA when present), cpu or cuda."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast on CUDA."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Clips per step per rank (paper: 2)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of weights, data order and augmentation."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="DataLoader worker processes per rank."),
    cache: Optional[str] = typer.Option(None, "--cache", help="Decoded-clip cache folder (default data/cache)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Stream and decode the shards every epoch."),
    split: Optional[str] = typer.Option(None, "--split", help="Manifest split to train on (default train)."),
) -> None:
    """Train the model on the clips of MANIFESTS into a run folder (exit 1 on unusable data)."""
    from s2vmodel.checkpoint import CheckpointError
    from s2vmodel.config import ConfigError, parse_assignments, resolve_config
    from s2vmodel.data import DataError
    from s2vmodel.train import TrainError, train as run_training

    overrides: dict[str, dict] = {"train": {}, "data": {}}
    for key, value in (("steps", steps), ("batch_size", batch_size), ("seed", seed), ("amp", amp)):
        if value is not None:
            overrides["train"][key] = value
    if device is not None:
        overrides["train"]["device"] = device.value
    for key, value in (("workers", workers), ("split", split), ("cache", cache)):
        if value is not None:
            overrides["data"][key] = value
    if no_cache:
        overrides["data"]["cache"] = ""
    try:
        for section, values in parse_assignments(assignments).items():
            overrides.setdefault(section, {}).update(values)
        config = resolve_config(preset=preset.value, files=config_files, overrides=overrides)
    except ConfigError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(code=2) from None
    if dry_run:
        typer.echo(json.dumps(config.to_dict(), indent=2))
        return

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        cache_task = None
        step_task = progress.add_task("train", total=config.train.steps, info="")

        def on_cache(done: int, total: int) -> None:
            nonlocal cache_task
            if cache_task is None:
                cache_task = progress.add_task("decode cache", total=total, info="")
            progress.update(cache_task, completed=done)

        rate = ""

        def on_step(step: int, total: int, m: dict[str, float]) -> None:
            nonlocal rate
            eta = m.get("eta_s", float("nan"))
            left = f"{eta / 60:.1f} min left" if eta == eta else ""
            # steps/s is measured on logging steps; show the last measure in between
            rate = f"{m['steps_per_s']:.2f} steps/s " if "steps_per_s" in m else rate
            info = f"D {m['loss_d']:.3f} G {m['loss_g']:.3f} L1 {m['l1']:.4f} {rate}{left}"
            progress.update(step_task, completed=step, total=total, info=info)

        try:
            result = run_training(manifests, out=out, config=config, resume=resume, on_step=on_step, on_cache=on_cache)
        except (DataError, TrainError, CheckpointError) as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(code=1) from None

    table = Table(title=f"run {result.run_dir}")
    table.add_column("item")
    table.add_column("value")
    table.add_row("steps", str(result.step))
    for key in ("l1", "val_l1", "val_l1_still", "steps_per_s"):
        if key in result.metrics:
            table.add_row(key, f"{result.metrics[key]:.4f}")
    table.add_row("checkpoint", str(result.run_dir / "checkpoints" / "latest.pt"))
    table.add_row("skipped clips", str(len(result.skipped)))
    console.print(table)
    for name in result.skipped:
        console.print(f"[yellow]skipped malformed clip:[/yellow] {name}")


# ---------------------------------------------------------------- generate / evaluate (added below)


@app.command()
def generate(
    checkpoint: Path = typer.Option(..., "--checkpoint", exists=True, dir_okay=False, help="A checkpoint .pt of `s2vmodel train`, e.g. runs/NAME/checkpoints/latest.pt."),
    image: Path = typer.Option(..., "--image", exists=True, dir_okay=False, help="Input image (PNG, JPEG, ...; any size: its centre square is used)."),
    audio: Path = typer.Option(..., "--audio", exists=True, dir_okay=False, help="Input sound (WAV, FLAC, OGG, MP3, M4A, or a video with sound; any length, rate, channels)."),
    out: Path = typer.Option(..., "--out", help="Output video, .mp4 (H.264 + AAC, 30 fps, the input sound muxed in)."),
    scale: int = typer.Option(1, "--scale", min=1, max=16, help="Enlarge the frames K times (nearest neighbour) for viewing."),
    strip: Optional[Path] = typer.Option(None, "--strip", dir_okay=False, help="Also write a Figure-2 style strip PNG (input image, frames every 20)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Generate a video that moves with AUDIO from one IMAGE, with the sound muxed in (exit 1 on unreadable input)."""
    from s2vdata.media import MediaError
    from s2vmodel.checkpoint import CheckpointError
    from s2vmodel.generate import generate as run_generate

    try:
        report = run_generate(checkpoint=checkpoint, image=image, audio=audio, out=out, scale=scale, strip=strip, device=device)
    except (CheckpointError, MediaError, ValueError, OSError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(code=1) from None
    speed = report.seconds / report.elapsed_s if report.elapsed_s > 0 else float("inf")
    console.print(
        f"wrote {report.out}: {report.frames} frames ({report.size}x{report.size}, 30 fps) for {report.seconds:.2f} s of sound "
        f"in {report.elapsed_s:.1f} s ({speed:.1f}x real time)"
    )
    if report.strip:
        console.print(f"strip: {report.strip}")


@app.command()
def evaluate(
    manifest: Path = typer.Argument(..., exists=True, dir_okay=False, help="Manifest CSV written by `s2vdata build`, e.g. manifests/hand.csv."),
    checkpoint: Path = typer.Option(..., "--checkpoint", exists=True, dir_okay=False, help="A checkpoint .pt of `s2vmodel train`."),
    split: str = typer.Option("test", "--split", help="Manifest split to evaluate: train, val or test."),
    json_out: Optional[Path] = typer.Option(None, "--json", dir_okay=False, help="Write the results (means and per clip) as JSON."),
    strips: Optional[Path] = typer.Option(None, "--strips", file_okay=False, help="Folder for Figure-2 strips (generated over real) of a few clips."),
    strip_count: int = typer.Option(4, "--strip-count", min=1, help="How many clips get a strip."),
    limit: int = typer.Option(0, "--limit", min=0, help="Evaluate only the first N clips (0 = all)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    fvd: bool = typer.Option(True, "--fvd/--no-fvd", help="Also compute FVD (Kinetics-400 I3D, 16 frames at 224 px) against the real clips."),
) -> None:
    """Score a checkpoint on every clip of a split: l1/psnr/ssim against the real frames, av_sync/av_align against the sound, FVD."""
    from s2vmodel.checkpoint import CheckpointError
    from s2vmodel.data import DataError
    from s2vmodel.evaluate import BASELINES, COLUMNS, evaluate as run_evaluate, write_json
    from s2vmodel.i3d import I3DWeightsError

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"evaluate {split}", total=None)
        try:
            result = run_evaluate(
                checkpoint=checkpoint, manifest=manifest, split=split, strips_dir=strips, strips=strip_count, limit=limit,
                device=device, fvd=fvd, on_clip=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except (CheckpointError, DataError, I3DWeightsError, FileNotFoundError, ValueError) as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(code=1) from None
    table = Table(title=f"{manifest} split {split}: {result['clips']} clips")
    table.add_column("")
    for metric in COLUMNS:
        table.add_column(metric, justify="right")
    for name in BASELINES:
        cells = [("—" if result[name][m] is None else f"{result[name][m]:.4f}") for m in COLUMNS]
        table.add_row(name, *cells)
    typer.echo("")
    Console().print(table)
    if result["fvd"] is not None:
        protocol = result["fvd"]
        console.print(f"fvd: {protocol['windows']} windows of {protocol['frames']} frames at {protocol['size']} px from "
                      f"{protocol['clips']} clips, against the real clips' windows")
        if protocol["note"]:
            console.print(f"[yellow]note:[/yellow] {protocol['note']}")
    for name in result["skipped"]:
        console.print(f"[yellow]skipped malformed clip:[/yellow] {name}")
    if json_out is not None:
        write_json(json_out, result)
        console.print(f"results: {json_out}")
    if strips is not None:
        console.print(f"strips: {strips}")
    if result["clips"] == 0:
        console.print("[red]error:[/red] no clip could be read: see the skipped clips above")
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
