"""The `s2vmodel` command: one typer function per command, each calling one library function.

Commands: `train` (this file's first section). `generate` and `evaluate` are added below it,
each as its own self-contained function.
"""

from __future__ import annotations

import json
import logging
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from s2vmodel.config import PRESETS
from s2vmodel.progress import PLAIN_EVERY_S, duration, progress_for

if TYPE_CHECKING:
    from s2vmodel.train import RunCost

app = typer.Typer(help="Train and use the image + sound -> video model (Tsuchiya et al., CVPR-W 2019).", no_args_is_help=True)
console = Console(stderr=True)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details to stderr.")) -> None:
    """s2vmodel: train on s2vdata manifests, generate videos, evaluate."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------- train


def fail(message: str, *, code: int) -> typer.Exit:
    """Return the Exit to raise after printing `error: message` as one line (never wrapped, no markup read in it)."""
    console.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code=code)


def say(message: str) -> None:
    """Print one plain line to stderr (never wrapped)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


Preset = Enum("Preset", {name.replace("-", "_"): name for name in PRESETS}, type=str)  # the presets of config.py
PAPER = Preset("paper")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def cost_lines(cost: RunCost, *, preset: str) -> list[str]:
    """Return what `train` says at start about the run's cost here (and, without a GPU, which preset trains in minutes)."""
    lines = [
        f"cost: {cost.steps} steps of the {preset} preset on {cost.device} at {cost.seconds_per_step:.2f} s/step: "
        f"about {duration(cost.seconds)}"
    ]
    if cost.tiny_seconds is not None and preset != "tiny":
        lines.append(f"no GPU here: --preset tiny trains its whole run in about {duration(cost.tiny_seconds)} on this machine")
    return lines


@app.command()
def train(
    manifests: Annotated[
        list[str],
        typer.Argument(help="Manifest CSV(s) written by `s2vdata build`: a path or a URL (s3://bucket/manifests/hand.csv)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder (config.json, checkpoints/, metrics.jsonl, samples/).")] = Path(
        "runs/train"
    ),
    preset: Annotated[
        Preset,
        typer.Option(
            "--preset",
            help="paper: the paper's settings; tiny: trains in minutes on CPU; tiny-prev: tiny with G seeing its previous frame.",
        ),
    ] = PAPER,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Total optimisation steps of the run.")] = None,
    config_files: Annotated[
        Optional[list[Path]],
        typer.Option("--config", exists=True, dir_okay=False, help="TOML/JSON overrides {section: {field: value}}."),
    ] = None,
    assignments: Annotated[
        Optional[list[str]], typer.Option("--set", help="One override, e.g. --set train.lr=1e-4 (repeatable).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from checkpoints/latest.pt.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")] = False,
    device: Annotated[Optional[Device], typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Clips per step per rank (paper: 2).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of weights, data order and augmentation.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=0, help="DataLoader worker processes per rank.")] = None,
    cache: Annotated[Optional[str], typer.Option("--cache", help="Decoded-clip cache folder (default data/cache).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Stream and decode the shards every epoch.")] = False,
    split: Annotated[Optional[str], typer.Option("--split", help="Manifest split to train on (default train).")] = None,
    progress_every: Annotated[
        float, typer.Option("--progress-every", min=0.0, help="Seconds between progress lines when there is no terminal.")
    ] = PLAIN_EVERY_S,
) -> None:
    """Train the model on the clips of MANIFESTS into a run folder (exit 1 on unusable data, 2 on bad settings)."""
    from s2vmodel.checkpoint import CheckpointError
    from s2vmodel.clipio import DataError
    from s2vmodel.config import ConfigError, parse_assignments, resolve_config
    from s2vmodel.train import TrainError
    from s2vmodel.train import train as run_training

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
        for section, values in parse_assignments(assignments or []).items():
            overrides.setdefault(section, {}).update(values)
        config = resolve_config(preset=preset.value, files=config_files or [], overrides=overrides)
    except ConfigError as err:
        raise fail(str(err), code=2) from None
    if dry_run:
        typer.echo(json.dumps(config.to_dict(), indent=2))
        return

    reporter = progress_for(console, every_s=progress_every)
    rate = ""

    def on_step(step: int, total: int, m: dict[str, float]) -> None:
        nonlocal rate
        # steps/s is measured on logging steps; show the last measure in between
        rate = f"{m['steps_per_s']:.2f} steps/s " if "steps_per_s" in m else rate
        eta = m.get("eta_s", float("nan"))
        info = f"D {m['loss_d']:.3f} G {m['loss_g']:.3f} L1 {m['l1']:.4f}" + (
            f" {rate}{duration(eta)} left" if console.is_terminal else ""
        )
        reporter.update("train", done=step, total=total, unit="steps", info=info)

    try:
        result = run_training(
            manifests,
            out=out,
            config=config,
            resume=resume,
            on_step=on_step,
            on_cache=lambda done, total: reporter.update("decode cache", done=done, total=total, unit="clips"),
            on_cost=lambda cost: [say(line) for line in cost_lines(cost, preset=config.preset)],
        )
    except (DataError, TrainError, CheckpointError) as err:
        reporter.close()
        raise fail(str(err), code=1) from None
    reporter.close()

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
        say(f"skipped clip: {name}")


# ---------------------------------------------------------------- generate


@app.command()
def generate(
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint",
            exists=True,
            dir_okay=False,
            help="A checkpoint .pt of `s2vmodel train`, e.g. runs/NAME/checkpoints/latest.pt.",
        ),
    ],
    image: Annotated[
        Path,
        typer.Option(
            "--image", exists=True, dir_okay=False, help="Input image (PNG, JPEG, ...; any size: its centre square is used)."
        ),
    ],
    audio: Annotated[
        Path,
        typer.Option(
            "--audio",
            exists=True,
            dir_okay=False,
            help="Input sound (WAV, FLAC, OGG, MP3, M4A, or a video with sound; any length, rate, channels).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output video, .mp4 (H.264 + AAC, 30 fps, the input sound muxed in).")],
    scale: Annotated[
        int, typer.Option("--scale", min=1, max=16, help="Enlarge the frames K times (nearest neighbour) for viewing.")
    ] = 1,
    strip: Annotated[
        Optional[Path],
        typer.Option("--strip", dir_okay=False, help="Also write a Figure-2 style strip PNG (input image, frames every 20)."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
) -> None:
    """Generate a video that moves with AUDIO from one IMAGE, with the sound muxed in (exit 1 on unreadable input)."""
    from s2vdata.clips import MediaError
    from s2vmodel.checkpoint import CheckpointError
    from s2vmodel.generate import generate as run_generate

    try:
        report = run_generate(checkpoint=checkpoint, image=image, audio=audio, out=out, scale=scale, strip=strip, device=device)
    except (CheckpointError, MediaError, ValueError, OSError) as err:
        raise fail(str(err), code=1) from None
    speed = report.seconds / report.elapsed_s if report.elapsed_s > 0 else float("inf")
    say(
        f"wrote {report.out}: {report.frames} frames ({report.size}x{report.size}, 30 fps) for {report.seconds:.2f} s of sound "
        f"in {report.elapsed_s:.1f} s ({speed:.1f}x real time)"
    )
    if report.strip:
        say(f"strip: {report.strip}")


# ---------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    manifest: Annotated[
        str, typer.Argument(help="Manifest CSV written by `s2vdata build`: a path or a URL (s3://bucket/manifests/hand.csv).")
    ],
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", exists=True, dir_okay=False, help="A checkpoint .pt of `s2vmodel train`.")
    ],
    split: Annotated[str, typer.Option("--split", help="Manifest split to evaluate: train, val or test.")] = "test",
    json_out: Annotated[
        Optional[Path], typer.Option("--json", dir_okay=False, help="Write the results (means and per clip) as JSON.")
    ] = None,
    strips: Annotated[
        Optional[Path],
        typer.Option("--strips", file_okay=False, help="Folder for Figure-2 strips (generated over real) of a few clips."),
    ] = None,
    strip_count: Annotated[int, typer.Option("--strip-count", min=1, help="How many clips get a strip.")] = 4,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Evaluate only the first N clips (0 = all).")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    fvd: Annotated[
        bool,
        typer.Option("--fvd/--no-fvd", help="Also compute FVD (Kinetics-400 I3D, 16 frames at 224 px) against the real clips."),
    ] = True,
    fvd_cache: Annotated[
        Optional[Path],
        typer.Option(
            "--fvd-cache",
            file_okay=False,
            help="Folder keeping the I3D features of real and still clips by frame hash (default data/cache/fvd; '': none).",
        ),
    ] = None,
    progress_every: Annotated[
        float, typer.Option("--progress-every", min=0.0, help="Seconds between progress lines when there is no terminal.")
    ] = PLAIN_EVERY_S,
) -> None:
    """Score a checkpoint on a split: appearance, motion against the sound and the real clip, the input's own events, FVD."""
    from s2vmodel.checkpoint import CheckpointError
    from s2vmodel.clipio import DataError
    from s2vmodel.evaluate import BASELINES, TABLE, table_rows, write_json
    from s2vmodel.evaluate import evaluate as run_evaluate
    from s2vmodel.i3d import I3DWeightsError

    reporter = progress_for(console, every_s=progress_every)
    try:
        result = run_evaluate(
            checkpoint=checkpoint,
            manifest=manifest,
            split=split,
            strips_dir=strips,
            strips=strip_count,
            limit=limit,
            device=device,
            fvd=fvd,
            fvd_cache=Path("data/cache/fvd") if fvd_cache is None else (fvd_cache if str(fvd_cache) else None),
            on_clip=lambda done, total: reporter.update(f"evaluate {split}", done=done, total=total, unit="clips"),
        )
    except (CheckpointError, DataError, I3DWeightsError) as err:
        reporter.close()
        raise fail(str(err), code=1) from None
    reporter.close()
    table = Table(title=f"{manifest} split {split}: {result['clips']} clips")
    table.add_column("")
    for column in TABLE:
        table.add_column(column, justify="right")
    rows = table_rows(result)
    for name in BASELINES:
        table.add_row(name, *[("—" if rows[name][c] is None else f"{rows[name][c]:.4f}") for c in TABLE])
    typer.echo("")
    Console(width=max(130, console.width)).print(table)
    events = result["events"]
    if events["clips"]:
        say(
            f"input's own events ({events['clips']} of {result['clips']} clips start mid-event): ghost model "
            f"{events['model']['ghost']:.4f} still {events['still']['ghost']:.4f}; hole model {events['model']['hole']:.4f} "
            f"still {events['still']['hole']:.4f}"
        )
    else:
        say("input's own events: no clip of the split starts mid-event")
    if result["fvd"] is not None:
        protocol = result["fvd"]
        say(
            f"fvd: {protocol['windows']} windows of {protocol['frames']} frames at {protocol['size']} px from "
            f"{protocol['clips']} clips, against the real clips' windows"
        )
        if protocol["note"]:
            say(f"note: {protocol['note']}")
    for name in result["skipped"]:
        say(f"skipped clip: {name}")
    if json_out is not None:
        write_json(json_out, result)
        say(f"results: {json_out}")
    if strips is not None:
        say(f"strips: {strips}")
    if result["clips"] == 0:
        raise fail(f"{manifest}: no clip of split {split!r} could be read: see the skipped clips above", code=1)


if __name__ == "__main__":
    app()
