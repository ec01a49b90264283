"""The `s2vdata` command: parse, call one library function, print, set the exit code."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from s2vdata.config import BuildSettings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Turn videos whose sound is caused by motion into 4-second training clips."
)
console = Console(stderr=True)

DataOpt = typer.Option(
    "data", "--data", help="data folder (sources, shards, work files): a path, or s3://bucket/prefix, gs://..."
)
ManifestsOpt = typer.Option("manifests", "--manifests", help="manifests folder: a path, or s3://bucket/prefix, gs://...")
StorageOpt = typer.Option(
    None, "--storage-option", help="key=value for the object store (e.g. client_kwargs.endpoint_url=...); repeatable"
)
TargetsOpt = typer.Option(None, "--targets", help="TOML file of user target presets", exists=True, dir_okay=False)


def _fail(message: str, code: int) -> typer.Exit:
    """Prints one error line (never wrapped) and returns the Exit to raise."""
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _where(url: str, options: Optional[List[str]]):
    """Returns the Location of a --data or --manifests value, or exits 2 saying why it cannot be used."""
    from s2vdata.storage import Location, StorageError, parse_options

    try:
        loc = Location(url, options=parse_options(options))
        if not loc.is_local:
            loc.fs  # noqa: B018 - makes the filesystem now: an unknown or uninstalled scheme is a usage error
    except StorageError as e:
        raise _fail(str(e), 2) from e
    return loc


def _target(name: str, targets_file: Optional[Path]):
    from s2vdata.targets import get_target

    try:
        return get_target(name, targets_file)
    except ValueError as e:
        raise _fail(str(e), 2) from None


def _progress(unit: str = "items"):
    """Returns the progress display: a bar on a terminal, a plain line every so often without one (nohup, Slurm, Ray jobs)."""
    from s2vdata.progress import progress

    return progress(console, unit=unit)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log details")) -> None:
    """s2vdata: fetch or ingest sources, check them, cut clips, write shards and a manifest."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def ingest(
    paths: List[Path] = typer.Argument(..., help="files, or folders searched for video files"),
    target: str = typer.Option(..., "--target", "-t", help="target preset the sources belong to"),
    data: str = DataOpt,
    storage_option: Optional[List[str]] = StorageOpt,
    targets_file: Optional[Path] = TargetsOpt,
) -> None:
    """Register local files (copied into data/sources/ under a content-derived id)."""
    from s2vdata.ingest import expand_paths, register_files

    _target(target, targets_file)
    try:
        files = expand_paths(paths)
    except FileNotFoundError as e:
        raise _fail(str(e), 2) from None
    with _progress("files") as progress:
        task = progress.add_task("ingest", total=len(files), info="")
        rep = register_files(
            files,
            target=target,
            data_dir=_where(data, storage_option),
            on_file=lambda p, row: progress.update(task, advance=1, info=p.name[:40]),
        )
    table = Table(title=f"ingest into {data}/sources.csv")
    for col in ("added", "already there", "failed"):
        table.add_column(col, justify="right")
    table.add_row(str(rep.added), str(rep.existing), str(rep.failed))
    console.print(table)
    for reason, n in rep.reasons.most_common(20):
        console.print(f"  failed: {escape(reason)}" + (f" (x{n})" if n > 1 else ""))
    if len(rep.reasons) > 20:
        console.print(f"  ... and {len(rep.reasons) - 20} more")
    if rep.failed:
        raise typer.Exit(1)


@app.command()
def synth(
    target: str = typer.Option(..., "--target", "-t", help="mouth, hand, fireworks or sea"),
    count: int = typer.Option(8, "--count", "-n", min=1, help="number of sources"),
    seed: int = typer.Option(0, "--seed", help="the same seed gives the same sources"),
    seconds: float = typer.Option(12.0, "--seconds", min=1.0, help="length of each source"),
    defect: Optional[str] = typer.Option(
        None, "--defect", help="pan, zoom, shake, unrelated, music, silent, still or cut (labelled bad sources)"
    ),
    strength: Optional[float] = typer.Option(None, "--strength", help="the defect's strength (units in docs/synth.md)"),
    data: str = DataOpt,
    storage_option: Optional[List[str]] = StorageOpt,
    targets_file: Optional[Path] = TargetsOpt,
) -> None:
    """Generate synthetic sources (sound caused by motion) and register them."""
    from s2vdata.synth import DEFECTS, TARGETS, synth_sources

    if target not in TARGETS:
        raise _fail(f"synth makes scenes for {', '.join(TARGETS)}; {target!r} is not one of them", 2)
    if defect is not None and defect not in DEFECTS:
        raise _fail(f"--defect must be one of {', '.join(d for d in DEFECTS if d)}", 2)
    with console.status(f"rendering {count} {target} sources"):
        rep = synth_sources(
            target=target,
            count=count,
            seed=seed,
            data_dir=_where(data, storage_option),
            seconds=seconds,
            defect=defect,
            strength=strength,
        )
    console.print(f"synth {target}: {rep.added} added, {rep.existing} already there, {rep.failed} failed -> {data}/sources.csv")
    if rep.failed:
        raise typer.Exit(1)


@app.command()
def build(
    target: str = typer.Option(..., "--target", "-t", help="target preset to build"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="sources processed at once"),
    executor: str = typer.Option("local", "--executor", help="local or ray"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (default: start a local one)"),
    seed: int = typer.Option(0, "--seed", help="seeds --max-clips-per-source sampling"),
    stride: float = typer.Option(4.0, "--stride", help="seconds between window starts (multiple of 1/30)"),
    max_clips: int = typer.Option(0, "--max-clips-per-source", min=0, help="keep a random K of the passing windows (0 = all)"),
    shard_size: str = typer.Option(
        "1GB", "--shard-size", help="shards close near this size, many sources each (0: one shard per source)"
    ),
    data: str = DataOpt,
    manifests: str = ManifestsOpt,
    storage_option: Optional[List[str]] = StorageOpt,
    targets_file: Optional[Path] = TargetsOpt,
) -> None:
    """Check every window of the target's sources and cut the kept ones into shards and a manifest."""
    from s2vdata.build import build as run_build
    from s2vdata.config import parse_size

    preset = _target(target, targets_file)
    if executor not in ("local", "ray"):
        raise _fail(f"--executor must be local or ray, not {executor!r}", 2)
    try:
        shard_bytes = parse_size(shard_size)
    except ValueError as e:
        raise _fail(f"--shard-size: {e}", 2) from e
    data_loc, manifests_loc = _where(data, storage_option), _where(manifests, storage_option)
    settings = BuildSettings(stride_s=stride, max_clips_per_source=max_clips, seed=seed, shard_bytes=shard_bytes)
    with _progress("sources") as progress:
        task = progress.add_task(f"build {target}", total=None, info="")
        state = {"clips": 0}

        def on_start(n: int) -> None:
            progress.update(task, total=n)

        def on_source(o) -> None:
            state["clips"] += o.kept
            progress.update(task, advance=1, info=f"{state['clips']} clips")

        try:
            rep = run_build(
                target=preset,
                data_dir=data_loc,
                manifests_dir=manifests_loc,
                settings=settings,
                jobs=jobs,
                executor=executor,
                ray_address=ray_address,
                on_source=on_source,
                on_start=on_start,
            )
        except (ValueError, ImportError) as e:
            raise _fail(str(e), 2) from None
    table = Table(title=f"build {target}: {rep.seconds:.1f} s")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("sources", str(rep.sources))
    table.add_row("windows measured", str(rep.windows))
    table.add_row("kept clips", f"{rep.clips}  ({', '.join(f'{k} {v}' for k, v in sorted(rep.splits.items()))})")
    table.add_row("clips cut this run", str(rep.cut))
    table.add_row("shards (written this run)", f"{rep.shards} ({rep.shards_written})")
    for check, n in rep.rejected_sources.most_common():
        table.add_row(f"rejected sources: {check}", str(n))
    for check, n in rep.rejected_windows.most_common():
        table.add_row(f"rejected windows: {check}", str(n))
    for sid, reason in rep.failures.items():
        table.add_row(f"[red]failed {sid}[/red]", reason)
    console.print(table)
    console.print(
        f"manifest: {rep.manifest}\nrejects:  {manifests_loc / f'{target}.rejects.csv'}\n"
        f"shards:   {data_loc / 'shards' / target}",
        soft_wrap=True,
    )
    if rep.failed:
        raise typer.Exit(1)


@app.command()
def verify(
    target: str = typer.Option(..., "--target", "-t"),
    manifests: str = ManifestsOpt,
    storage_option: Optional[List[str]] = StorageOpt,
) -> None:
    """Re-read every shard, re-hash every clip and check the clip contract."""
    from s2vdata.verify import verify_manifest

    manifest = _where(manifests, storage_option) / f"{target}.csv"
    with _progress("clips") as progress:
        task = progress.add_task("verify", total=None, info="")
        try:
            problems, n = verify_manifest(
                manifest, on_clip=lambda: progress.update(task, advance=1), on_total=lambda t: progress.update(task, total=t)
            )
        except (FileNotFoundError, ValueError) as e:
            raise _fail(str(e), 2) from None
    for clip_id, problem in problems:
        console.print(f"[red]{clip_id}[/red]: {escape(problem)}", soft_wrap=True)
    console.print(f"verified {n} clips of {manifest}: {len(problems)} problems")
    if problems:
        raise typer.Exit(1)


@app.command()
def targets(targets_file: Optional[Path] = TargetsOpt) -> None:
    """List the target presets and their thresholds."""
    from s2vdata.targets import format_targets

    try:
        text = format_targets(targets_file)
    except ValueError as e:
        raise _fail(str(e), 2) from None
    print(text)


@app.command()
def report(
    target: str = typer.Option(..., "--target", "-t"),
    out: Optional[str] = typer.Option(None, "--out", help="HTML file, a path or a URL (default: manifests/T.report.html)"),
    data: str = DataOpt,
    manifests: str = ManifestsOpt,
    storage_option: Optional[List[str]] = StorageOpt,
    targets_file: Optional[Path] = TargetsOpt,
) -> None:
    """Write one self-contained HTML page: why each window was kept or rejected; mark windows there for `calibrate`."""
    from s2vdata.report import write_report

    _target(target, targets_file)
    data_loc, manifests_loc = _where(data, storage_option), _where(manifests, storage_option)
    out_loc = _where(out, storage_option) if out else manifests_loc / f"{target}.report.html"
    try:
        with console.status(f"writing the report of {target}"):
            path = write_report(target=target, data_dir=data_loc, manifests_dir=manifests_loc, out=out_loc)
    except FileNotFoundError as e:
        raise _fail(str(e), 2) from e
    except OSError as e:
        raise _fail(f"cannot write the report to {out_loc}: {e}", 1) from e
    console.print(f"report: {path}", soft_wrap=True)


@app.command()
def calibrate(
    labels: Path = typer.Option(..., "--labels", help="labels file downloaded from the report (`download labels`)"),
    target: str = typer.Option(..., "--target", "-t", help="the target the report and the labels are of"),
    out: Path = typer.Option(Path("s2v-targets.toml"), "--out", help="TOML file the fitted target is written to"),
    data: str = DataOpt,
    manifests: str = ManifestsOpt,
    storage_option: Optional[List[str]] = StorageOpt,
    targets_file: Optional[Path] = TargetsOpt,
) -> None:
    """Fit a target's thresholds to your keep/reject labels, from the scores the build stored (no decoding)."""
    import json
    import math
    from dataclasses import replace

    from s2vdata.calibrate import LabelsError, write_targets_toml
    from s2vdata.calibrate import calibrate as fit_labels
    from s2vdata.targets import Target

    base = _target(target, targets_file)
    data_loc, manifests_loc = _where(data, storage_option), _where(manifests, storage_option)
    # the thresholds the build used, if it recorded them: the labels were made on its decisions
    try:
        built = json.loads((manifests_loc / f"{target}.build.json").read_bytes()).get("target") or {}
        known = {k: v for k, v in built.items() if k in Target.__dataclass_fields__ and k != "name"}
        base = replace(base, **known)
    except (OSError, ValueError, TypeError):
        pass
    with console.status(f"fitting {target}'s thresholds to {labels}"):
        try:
            result = fit_labels(labels_path=labels, target=base, data=data_loc)
        except LabelsError as e:
            raise _fail(str(e), 2) from e

    def pct(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.2f}"

    table = Table(title=f"precision / recall of keep on {len(result.labels)} labelled windows ({result.keep} keep)")
    for col in ("check", "threshold", "precision before", "after", "recall before", "after"):
        table.add_column(col, justify="left" if col == "check" else "right")
    for q in [*result.per_check, result.overall]:
        before, after = q.threshold_before, q.threshold_after
        moved = "" if before is None else f"{before:g}" if before == after else f"{before:g} -> {after:g}"
        table.add_row(q.check, moved, pct(q.precision_before), pct(q.precision_after), pct(q.recall_before), pct(q.recall_after))
    console.print(table)
    note = f"fitted by `s2vdata calibrate --labels {labels} --target {target}` on {len(result.labels)} labelled windows"
    try:
        path = write_targets_toml(out, result, note=note)
    except (OSError, ValueError) as e:
        raise _fail(str(e), 2) from e
    console.print(
        f"target {target} written to {path}: rebuild with `s2vdata build --target {target} --targets {path}`", soft_wrap=True
    )


@app.command()
def fetch(
    urls_file: Path = typer.Argument(..., exists=True, dir_okay=False, help="one URL per line, optionally followed by a target"),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="target for lines that name none"),
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, help="downloads at once (on each node with --executor ray)"),
    executor: str = typer.Option("local", "--executor", help="local, or ray: download on the nodes of a Ray cluster"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (default: start a local one)"),
    max_height: int = typer.Option(1080, "--max-height"),
    socket_timeout: float = typer.Option(30.0, "--socket-timeout"),
    retries: int = typer.Option(3, "--retries", min=0),
    retry_failed: bool = typer.Option(True, "--retry-failed/--no-retry-failed"),
    rate_limit: Optional[str] = typer.Option(None, "--rate-limit", help="e.g. 2M (bytes per second)"),
    cookies: Optional[Path] = typer.Option(None, "--cookies", exists=True, dir_okay=False, help="Netscape cookies file"),
    proxy: Optional[str] = typer.Option(None, "--proxy"),
    allow_local_urls: bool = typer.Option(False, "--allow-local-urls", help="also accept file:// URLs"),
    sections: bool = typer.Option(True, "--sections/--no-sections", help="download only the time ranges a line gives"),
    data: str = DataOpt,
    storage_option: Optional[List[str]] = StorageOpt,
) -> None:
    """Download videos with yt-dlp into data/sources/ and register every outcome."""
    from s2vdata.fetch import FetchOptions, fetch_urls

    if executor not in ("local", "ray"):
        raise _fail(f"--executor must be local or ray, not {executor!r}", 2)
    data_loc = _where(data, storage_option)
    options = FetchOptions(
        target=target,
        jobs=jobs,
        max_height=max_height,
        socket_timeout=socket_timeout,
        retries=retries,
        retry_failed=retry_failed,
        rate_limit=rate_limit,
        cookies=cookies,
        proxy=proxy,
        allow_local_urls=allow_local_urls,
        sections=sections,
    )
    with _progress("URLs") as progress:
        task = progress.add_task("fetch", total=None, info="")

        def on_event(ev: dict) -> None:
            progress.update(
                task, total=ev["total"], completed=ev["done"], info=f"{ev['bytes'] / 1e6:.1f} MB at {ev['rate'] / 1e6:.2f} MB/s"
            )

        try:
            rep = fetch_urls(
                urls_file, data_dir=data_loc, options=options, progress=on_event, executor=executor, ray_address=ray_address
            )
        except (ValueError, ImportError) as e:
            raise _fail(str(e), 2) from e
        except OSError as e:
            # the data folder failed under us (a full disk, a bucket gone): nothing partial is registered
            raise _fail(f"{data}: {e}; run the same command again once it is writable", 1) from e
    table = Table(title=f"fetch {urls_file} -> {data_loc / 'sources.csv'}")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_row("ok", str(rep.ok))
    table.add_row("already there / duplicate", str(rep.skipped))
    for reason, n in rep.reasons.most_common():
        table.add_row(f"[red]failed: {reason}[/red]", str(n))
    console.print(table)
    if rep.failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
