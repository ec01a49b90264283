"""Calibrate the window checks on a labelled set; print precision and recall of "keep".

    .venv/bin/python benchmarks/calibrate.py [--seeds 4] [--files 1] [--jobs 2] [--out benchmarks/out/calibration.json]
    .venv/bin/python benchmarks/calibrate.py --base 8 --recordings held --out benchmarks/out/heldout.json   # held-out set
    .venv/bin/python benchmarks/calibrate.py --scores benchmarks/out/calibration.json   # re-decide only
    .venv/bin/python benchmarks/calibrate.py --scores benchmarks/out/calibration.json --heldout benchmarks/out/heldout.json

Scenes come from the project's generator (s2vdata.synth.render): for every
shipped target, clean scenes and the same scenes with one defect at several
strengths; plus, for fireworks, fixed-camera night skies with one to three
short bursts and their short bangs (tests/checks_scenes.burst_scene), where a
window often holds a single event in four seconds of quiet. Recorded beds
(benchmarks/beds.py: game soundtracks, recorded and synthesized speech, from
Debian packages) are mixed under the events of every target at -10, -20 and
-30 dB (bed peak against the events' peak). The tuning set is `--base 7
--recordings tune`; the held-out set `--base 8 --recordings held` has other
scenes and other recordings (other soundtracks, other voices). Each scene is cut into back-to-back 4-second windows and measured
by s2vdata.checks.measure_window; the shipped thresholds (s2vdata.targets)
then decide. Two paths, so codec and frame-rate effects are in the numbers:

- memory: frames rendered at 30 fps, cropped and resized as build does;
- files: the scene written with s2vdata.media.write_video (H.264 + AAC, MP4)
  at the generator's per-source sizes and frame rates (25, 29.97, 30 fps),
  then decoded on the clip grid by s2vdata.media.GridReader, the build's reader.

Labels, per window: a clean window is good if a sound event falls inside it
(a window with nothing happening is neither: it is reported, not counted);
a window with a defect is bad (for `cut`, only the window the cut falls in).
Scores are saved, so `--scores` re-decides with changed thresholds in a second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from s2vdata.checks import CHECKS, decide, measure_window
from s2vdata.config import CLIP
from s2vdata.targets import SHIPPED, load_targets

TARGETS = ("mouth", "hand", "fireworks", "sea")
# (defect, strengths): pans in px/frame at 286 px, zoom in %/s, shake in px, music in dB under the events
GRID = [
    (None, [None]),
    ("pan", [0.5, 1.0, 2.0, 5.0]),
    ("zoom", [5.0, 10.0, 20.0]),
    ("shake", [1.0, 3.0, 10.0]),
    ("unrelated", [1.0]),
    ("music", [-30.0, -20.0, -10.0, 0.0]),
    ("silent", [None]),
    ("still", [None]),
    ("cut", [None]),
    ("music bed", [-30.0, -20.0, -10.0]),
    ("speech bed", [-30.0, -20.0, -10.0]),
]
BED_KINDS = {"music bed": "music", "speech bed": "speech"}
BURST_SEEDS_FACTOR = 3  # burst scenes per seed (fireworks only): single events are what they test
SECONDS = 8.2  # two back-to-back windows per scene (and room for a 25 fps grid)
CLEAN_SEEDS_FACTOR = 3  # clean scenes get this many times the seeds: precision needs many good windows
SIZES = ((320, 320), (384, 288), (288, 384), (352, 352))
RATES = (30.0, 25.0, 30000 / 1001)


def _square(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(frame[y : y + s, x : x + s], (CLIP.size, CLIP.size), interpolation=cv2.INTER_AREA)


def _label(scene, start_s: float, *, defect: str | None) -> str:
    """Returns "good", "bad" or "empty" (clean but nothing happens) for the window starting at start_s."""
    end_s = start_s + CLIP.seconds
    if defect == "cut":
        cut_s = (scene.n_frames // 2) / scene.fps
        return (
            "bad"
            if start_s + 1 / CLIP.fps < cut_s < end_s - 1 / CLIP.fps
            else "good"
            if _has_event(scene, start_s, end_s)
            else "empty"
        )
    if defect is not None:
        return "bad"
    return "good" if _has_event(scene, start_s, end_s) else "empty"


def _has_event(scene, start_s: float, end_s: float) -> bool:
    return any(start_s + 0.1 <= t < end_s - 0.1 for t in scene.events_s)


def _windows_memory(scene):
    """Yields (start_s, frames, audio) back to back from a scene rendered at 30 fps."""
    frames = np.stack([_square(f) for f in scene.frames()])
    n, spf = CLIP.frames, CLIP.samples_per_frame
    for start in range(0, len(frames) - n + 1, n):
        audio = scene.audio[start * spf : (start + n) * spf]
        if len(audio) == n * spf:
            yield start / CLIP.fps, frames[start : start + n], audio


def _windows_file(scene, folder: Path, name: str):
    """Yields (start_s, frames, audio) back to back from the scene written as an MP4 and decoded on the grid."""
    from s2vdata.media import GridReader, write_video

    path = folder / f"{name}.mp4"
    write_video(path, scene.frames(), scene.audio, fps=scene.fps, sample_rate=scene.sample_rate)
    n = CLIP.frames
    frames, audio, start = [], [], None
    with GridReader(path) as reader:
        for slot in reader.slots():
            if start is None:
                start = slot.index
            frames.append(slot.frame)
            audio.append(slot.audio)
            if len(frames) == n:
                yield start / CLIP.fps, np.stack(frames), np.concatenate(audio)
                frames, audio, start = [], [], None
    path.unlink(missing_ok=True)


def burst_render(*, seed: list[int], fps: float, width: int, height: int, bursts: int):
    """Returns a synth.Scene of a fixed camera on a night sky with short bursts and short bangs (checks_scenes.burst_scene)."""
    from s2vdata.synth import Scene

    from checks_scenes import HOP, burst_scene

    n = int(round(SECONDS * 30))
    rng_seed = int(np.random.default_rng(seed).integers(1 << 30))
    frames, audio, at = burst_scene(seed=rng_seed, bursts=bursts, n=n)
    # the scene is drawn on the 30 fps grid at 286 px; other rates and sizes resample it
    n_out = int(round(n / 30 * fps))
    pick = np.minimum((np.arange(n_out) * 30 / fps).astype(int), n - 1)

    def gen():
        for i in pick:
            yield cv2.resize(frames[i], (width, height), interpolation=cv2.INTER_LINEAR)

    return Scene(
        frames=gen,
        audio=audio,
        fps=fps,
        sample_rate=HOP * 30,
        width=width,
        height=height,
        events_s=[k / 30 for k in at],
        motion_events_s=[k / 30 for k in at],
        n_frames=n_out,
        target="fireworks",
    )


def with_bed(scene, *, kind: str, level_db: float, recordings: str, seed: list[int]):
    """Returns (the scene with a recorded bed mixed under its events at level_db, the bed's name)."""
    import dataclasses

    import beds

    rng = np.random.default_rng([*seed, 17, int(-level_db), 1 if kind == "music" else 2])
    bed, name = beds.bed(kind, recordings, rng, len(scene.audio))
    peak = float(np.abs(scene.audio).max()) or 0.5
    audio = scene.audio + bed * (peak * 10 ** (level_db / 20))
    audio = audio * min(1.0, 0.99 / float(np.abs(audio).max()))
    return dataclasses.replace(scene, audio=audio.astype(np.float32)), name


def measure_scene(task: dict) -> list[dict]:
    """Returns one record per window of one labelled scene: its label and scores."""
    from s2vdata import synth

    t = task
    fps, size = (
        (30.0, (320, 320)) if t["path"] == "memory" else (RATES[t["variant"] % len(RATES)], SIZES[t["variant"] % len(SIZES)])
    )
    bed_kind = BED_KINDS.get(t["defect"] or "")
    if t.get("scene") == "burst":
        scene = burst_render(seed=[t["base"], t["seed"]], fps=fps, width=size[0], height=size[1], bursts=1 + t["seed"] % 3)
    else:
        scene = synth.render(
            t["target"],
            seed=[t["base"], t["seed"]],
            seconds=SECONDS,
            fps=fps,
            width=size[0],
            height=size[1],
            defect=None if bed_kind else t["defect"],
            strength=None if bed_kind else t["strength"],
        )
    bed_name = ""
    if bed_kind:
        scene, bed_name = with_bed(
            scene, kind=bed_kind, level_db=t["strength"], recordings=t["recordings"], seed=[t["base"], t["seed"]]
        )
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        windows = _windows_memory(scene) if t["path"] == "memory" else _windows_file(scene, Path(tmp), "scene")
        for start_s, frames, audio in windows:
            t0 = time.process_time()
            m = measure_window(frames, audio)
            out.append(
                {
                    **t,
                    "fps": fps,
                    "size": list(size),
                    "start_s": start_s,
                    "bed": bed_name,
                    "label": _label(scene, start_s, defect=t["defect"]),
                    "scores": m["scores"],
                    "cpu_s": time.process_time() - t0,
                }
            )
    return out


def tasks(*, seeds: int, file_seeds: int, base: int = 7, recordings: str = "tune") -> list[dict]:
    """Returns the labelled scenes to measure: every target x defect x strength x seed, on both paths, and the burst scenes."""
    out = []
    for target in TARGETS:
        for defect, strengths in GRID:
            for strength in strengths:
                n = seeds * (CLEAN_SEEDS_FACTOR if defect is None else 1)
                nf = file_seeds * (CLEAN_SEEDS_FACTOR if defect is None else 1)
                common = {
                    "target": target,
                    "defect": defect,
                    "strength": strength,
                    "base": base,
                    "recordings": recordings,
                    "scene": "synth",
                }
                for s in range(n):
                    out.append({**common, "seed": s, "path": "memory", "variant": s})
                for s in range(nf):
                    out.append({**common, "seed": 1000 + s, "path": "files", "variant": s + len(out)})
    # fireworks as fixed-camera night skies with short bursts: clean, and under recorded beds
    for defect, strengths in [(None, [None]), ("music bed", [-20.0, -10.0]), ("speech bed", [-20.0, -10.0])]:
        for strength in strengths:
            common = {
                "target": "fireworks",
                "defect": defect,
                "strength": strength,
                "base": base,
                "recordings": recordings,
                "scene": "burst",
            }
            k = BURST_SEEDS_FACTOR * (CLEAN_SEEDS_FACTOR if defect is None else 1)
            for s in range(seeds * k):
                out.append({**common, "seed": 2000 + s, "path": "memory", "variant": s})
            for s in range(file_seeds * k):
                out.append({**common, "seed": 3000 + s, "path": "files", "variant": s + len(out)})
    return out


def _kind(r: dict) -> str:
    prefix = "bursts: " if r.get("scene") == "burst" else ""
    if r["defect"] is None:
        return prefix + "clean"
    return prefix + (r["defect"] if r["strength"] is None else f"{r['defect']} {r['strength']:g}")


def evaluate(records: list[dict], targets: dict) -> str:
    """Returns the calibration tables: per target, per kind the share of windows kept, and precision/recall of keep."""
    lines = []
    summary = []
    for name in TARGETS:
        target = targets[name]
        rows = [r for r in records if r["target"] == name]
        by_kind: dict[str, list] = defaultdict(list)
        fails_by_kind: dict[str, dict] = defaultdict(lambda: defaultdict(int))
        tp = fp = fn = 0
        for r in rows:
            results = decide(r["scores"], target)
            kept = all(x.passed for x in results)
            kind = (
                _kind(r)
                if r["label"] != "empty"
                else ("bursts: " if r.get("scene") == "burst" else "") + "clean, no event in window"
            )
            if r["defect"] == "cut" and r["label"] != "bad":
                kind = "cut: windows without the cut"
            by_kind[kind].append((kept, r["path"]))
            for x in results:
                if not x.passed:
                    fails_by_kind[kind][x.check] += 1
            if r["label"] == "good":
                tp += kept
                fn += not kept
            elif r["label"] == "bad":
                fp += kept
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / (tp + fn) if tp + fn else float("nan")
        lines.append(f"\n## {name}  (precision of keep {precision:.3f}, recall of keep {recall:.3f}; {len(rows)} windows)\n")
        lines.append("| kind | windows (memory/files) | kept | rejected | failing checks |")
        lines.append("|---|---|---|---|---|")
        for kind in sorted(by_kind, key=lambda k: (k != "clean", k)):
            v = by_kind[kind]
            kept = sum(k for k, _ in v)
            mem = sum(1 for _, p in v if p == "memory")
            fails = ", ".join(f"{c} {n}" for c, n in sorted(fails_by_kind[kind].items(), key=lambda x: -x[1]))
            lines.append(
                f"| {kind} | {len(v)} ({mem}/{len(v) - mem}) | {kept / len(v):.2f} | {1 - kept / len(v):.2f} | {fails} |"
            )
        summary.append((name, precision, recall))
        # per check: share of good windows it lets through (recall of keep if it were the only check)
        good = [r for r in rows if r["label"] == "good"]
        per_check = []
        for c in CHECKS:
            passed = sum(1 for r in good if next(x for x in decide(r["scores"], target) if x.check == c).passed)
            per_check.append(f"{c} {passed / max(1, len(good)):.3f}")
        lines.append(f"\ngood windows passing each check alone: {'; '.join(per_check)}")
    head = ["| target | precision of keep | recall of keep |", "|---|---|---|"]
    head += [f"| {n} | {p:.3f} | {r:.3f} |" for n, p, r in summary]
    return "\n".join(head + lines)


def summary(records: list[dict], targets: dict) -> str:
    """Returns one markdown table: per kind (rows) and target (columns) the share rejected.

    For good windows the share kept; the number of windows in brackets.
    """
    cells, pr = _cells(records, targets)
    order = sorted(cells, key=lambda k: (not k.startswith("clean"), k.startswith("bursts"), k))
    lines = ["| kind (share rejected unless noted) | " + " | ".join(TARGETS) + " |", "|---" * (len(TARGETS) + 1) + "|"]
    for kind in order:
        row = [f"{np.mean(v):.2f} ({len(v)})" if (v := cells[kind].get(t)) else "" for t in TARGETS]
        lines.append(f"| {kind} | " + " | ".join(row) + " |")
    lines.append(
        "| **precision / recall of keep** | "
        + " | ".join(f"{tp / max(1, tp + fp):.3f} / {tp / max(1, tp + fn):.3f}" for tp, fp, fn in (pr[t] for t in TARGETS))
        + " |"
    )
    return "\n".join(lines)


def summary_pair(tuning: list[dict], held: list[dict], targets: dict) -> str:
    """Returns the table of docs/checks.md: per kind and target, "tuning / held-out" share rejected (kept, for good windows)."""
    a, pa = _cells(tuning, targets)
    b, pb = _cells(held, targets)
    order = sorted(set(a) | set(b), key=lambda k: (not k.startswith("clean"), k.startswith("bursts"), k))

    def cell(c: dict, kind: str, t: str) -> str:
        v = c.get(kind, {}).get(t)
        return f"{np.mean(v):.2f} ({len(v)})" if v else "-"

    lines = [
        "| kind (share rejected unless noted) | " + " | ".join(f"{t}: tuning / held-out" for t in TARGETS) + " |",
        "|---" * (len(TARGETS) + 1) + "|",
    ]
    for kind in order:
        row = ["" if cell(a, kind, t) == cell(b, kind, t) == "-" else f"{cell(a, kind, t)} / {cell(b, kind, t)}" for t in TARGETS]
        lines.append(f"| {kind} | " + " | ".join(row) + " |")
    for i, what in ((0, "precision"), (1, "recall")):
        vals = []
        for t in TARGETS:
            q = [(tp / max(1, tp + fp), tp / max(1, tp + fn))[i] for tp, fp, fn in (pa[t], pb[t])]
            vals.append(f"{q[0]:.3f} / {q[1]:.3f}")
        lines.append(f"| **{what} of keep** | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _cells(records: list[dict], targets: dict) -> tuple[dict, dict]:
    """Returns ({kind: {target: [right, ...]}}, {target: [tp, fp, fn]}): each window's decision, right or wrong, by kind."""
    cells: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    pr: dict[str, list[int]] = {}
    for name in TARGETS:
        tp = fp = fn = 0
        for r in records:
            if r["target"] != name or r["label"] == "empty":
                continue
            kept = all(x.passed for x in decide(r["scores"], targets[name]))
            kind = _kind(r)
            if r["defect"] == "cut" and r["label"] != "bad":
                kind = "cut: windows beside the cut"
            good = r["label"] == "good"
            cells[kind + (" (share kept)" if good else "")][name].append(kept if good else not kept)
            tp += good and kept
            fn += good and not kept
            fp += (not good) and kept
        pr[name] = [tp, fp, fn]
    return cells, pr


def quantiles(records: list[dict]) -> str:
    """Returns per target and kind the 5/50/95th percentiles of every score (to see the margins)."""
    lines = []
    for name in TARGETS:
        lines.append(f"\n## scores of {name}: p5 / p50 / p95")
        kinds: dict[str, list] = defaultdict(list)
        for r in records:
            if r["target"] == name and r["label"] != "empty":
                kinds[_kind(r) if r["label"] == "bad" else "clean"].append(r["scores"])
        lines.append("| kind | " + " | ".join(CHECKS) + " |")
        lines.append("|---" * (len(CHECKS) + 1) + "|")
        for kind, scores in sorted(kinds.items(), key=lambda kv: (kv[0] != "clean", kv[0])):
            cells = []
            for c in CHECKS:
                v = np.array([s[c] for s in scores], dtype=float)
                cells.append("/".join(f"{x:.3g}" for x in np.percentile(v, [5, 50, 95])))
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per defect and strength, memory path (clean: x3)")
    parser.add_argument("--files", type=int, default=1, help="seeds per defect and strength through real files (clean: x3)")
    parser.add_argument("--base", type=int, default=7, help="first seed word of every scene: another value gives a held-out set")
    parser.add_argument(
        "--recordings", choices=("tune", "held"), default="tune", help="which recorded beds: the tuning or the held-out ones"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/calibration.json"))
    parser.add_argument("--scores", type=Path, help="re-decide saved scores instead of measuring")
    parser.add_argument("--targets", type=Path, help="TOML file of target thresholds to try")
    parser.add_argument("--quantiles", action="store_true", help="also print score percentiles per kind")
    parser.add_argument("--heldout", type=Path, help="with --scores: saved held-out scores, printed beside the tuning set's")
    args = parser.parse_args(argv)

    targets = load_targets(args.targets) if args.targets else dict(SHIPPED)
    if args.scores and args.heldout:
        print(
            summary_pair(json.loads(args.scores.read_text())["records"], json.loads(args.heldout.read_text())["records"], targets)
        )
        return 0
    if args.scores:
        doc = json.loads(args.scores.read_text())
        records = doc["records"]
    else:
        import beds  # benchmarks/beds.py: needs Debian's recordings only when scenes are measured

        lacking = beds.missing(args.recordings)
        if lacking:
            sys.exit(f"calibrate: the recorded beds cannot be drawn: {lacking}")
        todo = tasks(seeds=args.seeds, file_seeds=args.files, base=args.base, recordings=args.recordings)
        t0 = time.time()
        records = []
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for i, recs in enumerate(pool.map(measure_scene, todo, chunksize=2)):
                records.extend(recs)
                if (i + 1) % 50 == 0:
                    print(f"  {i + 1}/{len(todo)} scenes, {time.time() - t0:.0f} s", file=sys.stderr)
        doc = {
            "command": " ".join(["benchmarks/calibrate.py", *(argv if argv is not None else sys.argv[1:])]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "wall_s": round(time.time() - t0, 1),
            "records": records,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc))
    cpu = [r["cpu_s"] for r in records]
    print(
        f"# calibration: {len(records)} windows; measure_window {1000 * np.mean(cpu):.0f} ms CPU per window (median "
        f"{1000 * np.median(cpu):.0f}); {doc.get('date', '')}; {doc.get('machine', '')}; wall {doc.get('wall_s', '?')} s\n"
    )
    print(summary(records, targets))
    print(evaluate(records, targets))
    if args.quantiles:
        print(quantiles(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
