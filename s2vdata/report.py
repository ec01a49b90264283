"""The HTML report of a build: one self-contained page showing why each window was kept or rejected.

Reads what `build` left: manifests/<target>.csv (kept clips),
manifests/<target>.rejects.csv (rejected sources and windows, with check,
value, threshold and reason) and the per-source sidecars
data/work/<target>/<source_id>.json (every window's scores and curves, and the
path of its contact sheet). Images are embedded (base64 JPEG for the contact
sheets, PNG for the plots), so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: the report is written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from s2vdata.checks import CHECKS  # noqa: E402

log = logging.getLogger(__name__)

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;font-size:.9em;text-align:left}
table.scores td,table.scores th{font-size:.75em;padding:.1em .35em}
.kept{border-left:6px solid #2a9d47}.rejected{border-left:6px solid #c8372d}
.window{margin:.8em 0;padding:.4em .8em;background:#fafafa}.window img{display:block;max-width:100%;margin:.3em 0}
.fail{color:#c8372d}.ok{color:#2a9d47}.muted{color:#777;font-size:.85em}
"""


def _read_csv(path: Path) -> pd.DataFrame:
    """Returns the CSV as text cells, or an empty frame when the file is missing or has no rows."""
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _slot(start_s) -> int | None:
    """Returns a window's start on the 30 fps grid (start_s is written with rounding), None for a whole source."""
    try:
        value = float(start_s)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else round(value * 30)


def _b64(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def plot_curves(curves: dict, *, title: str = "") -> bytes:
    """Returns a PNG: onset envelope and motion energy (each scaled to its peak) over frames, camera shift on the right axis."""
    onset = np.asarray(curves.get("onset", []), dtype=float)
    motion = np.asarray(curves.get("motion", []), dtype=float)
    shift = np.asarray(curves.get("shift", []), dtype=float)
    fig, ax = plt.subplots(figsize=(7.2, 1.8), dpi=80)
    for values, label, colour in ((onset, "sound onsets", "#1f5fbf"), (motion, "motion energy", "#e07b00")):
        if len(values):
            peak = values.max() if values.max() > 0 else 1.0
            ax.plot(values / peak, label=label, color=colour, linewidth=1.2)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("frame", fontsize=8)
    ax.tick_params(labelsize=7)
    if len(shift):
        right = ax.twinx()
        right.plot(shift, label="camera shift (px/frame)", color="#777777", linewidth=0.9, linestyle="--")
        right.set_ylim(0, max(1.0, float(shift.max()) * 1.1))
        right.tick_params(labelsize=7)
        right.set_ylabel("px/frame", fontsize=7)
        lines = ax.get_lines() + right.get_lines()
    else:
        lines = ax.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right", ncol=3, frameon=False)
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _load_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        log.warning("%s: unreadable sidecar, its windows are left out of the report: %s", path, e)
        return None


def _fmt(value) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    if math.isnan(v):
        return "nan"
    return f"{v:.4g}"


def _window_html(*, window: dict, kept: bool, failures: list[dict], work: Path) -> str:
    """Returns the HTML block of one window: verdict, failing checks, scores, contact sheet, plot."""
    start = float(window.get("start_s", 0.0))
    parts = [f'<div class="window {"kept" if kept else "rejected"}">']
    verdict = '<b class="ok">kept</b>' if kept else '<b class="fail">rejected</b>'
    parts.append(f"<div>{start:.2f} s - {start + 4:.2f} s: {verdict}</div>")
    if failures:
        rows = "".join(
            f"<tr><td>{html.escape(f['check'])}</td><td>{_fmt(f['value'])}</td><td>{_fmt(f['threshold'])}</td>"
            f"<td>{html.escape(f['reason'])}</td></tr>"
            for f in failures
        )
        parts.append(f'<table class="fail"><tr><th>failed check</th><th>value</th><th>threshold</th><th>reason</th></tr>{rows}</table>')
    scores = window.get("scores", {})
    if scores:
        shown = [k for k in CHECKS if k in scores] + sorted(set(scores) - set(CHECKS))
        parts.append('<table class="scores"><tr>' + "".join(f"<th>{html.escape(k)}</th>" for k in shown) + "</tr><tr>"
                     + "".join(f"<td>{_fmt(scores[k])}</td>" for k in shown) + "</tr></table>")
    sheet = window.get("sheet")
    if sheet:
        try:
            data = (work / sheet).read_bytes()
            parts.append(f'<img class="sheet" alt="frames 0, 20, 40, 60, 80, 100 at {start:.2f} s" src="{_b64(data, "image/jpeg")}">')
        except OSError as e:
            parts.append(f'<div class="muted">contact sheet {html.escape(str(sheet))} missing: {html.escape(str(e))}</div>')
    if window.get("curves"):
        png = plot_curves(window["curves"])
        parts.append(f'<img class="plot" alt="onset envelope, motion energy and camera shift at {start:.2f} s" src="{_b64(png, "image/png")}">')
    parts.append("</div>")
    return "".join(parts)


def write_report(*, target: str, data_dir: Path | str, manifests_dir: Path | str, out: Path | str) -> Path:
    """Returns the path of the HTML report written for `target` (one self-contained file, written atomically).

    Raises FileNotFoundError when neither the manifest nor the rejects file of
    the target exists (nothing was built yet).
    """
    data_dir, manifests_dir, out = Path(data_dir), Path(manifests_dir), Path(out)
    manifest_path = manifests_dir / f"{target}.csv"
    rejects_path = manifests_dir / f"{target}.rejects.csv"
    if not manifest_path.exists() and not rejects_path.exists():
        raise FileNotFoundError(f"no {manifest_path} or {rejects_path}: run `s2vdata build --target {target}` first")
    kept_rows = _read_csv(manifest_path)
    reject_rows = _read_csv(rejects_path)
    work = data_dir / "work" / target

    order: list[str] = []
    origins: dict[str, str] = {}
    kept_slots: dict[str, set[int]] = defaultdict(set)
    splits: dict[str, str] = {}
    for r in kept_rows.to_dict("records"):
        sid = r["source_id"]
        order.append(sid)
        origins.setdefault(sid, r.get("origin", ""))
        kept_slots[sid].add(_slot(r["start_s"]))
        splits[sid] = r.get("split", "")
    window_fails: dict[tuple[str, int], list[dict]] = defaultdict(list)
    source_fails: dict[str, list[dict]] = defaultdict(list)
    for r in reject_rows.to_dict("records"):
        sid = r["source_id"]
        order.append(sid)
        origins.setdefault(sid, r.get("origin", ""))
        slot = _slot(r.get("start_s"))
        (source_fails[sid] if slot is None else window_fails[(sid, slot)]).append(r)
    order = list(dict.fromkeys(order))

    n_windows = n_kept = 0
    by_check: Counter = Counter()
    sections = []
    for sid in order:
        sidecar = _load_sidecar(work / f"{sid}.json") or {}
        windows = sidecar.get("windows") or []
        known = {_slot(w.get("start_s")) for w in windows}
        # windows in the CSVs but not in a sidecar (deleted work folder): shown from the CSV rows alone
        for slot in sorted((kept_slots[sid] | {s for (x, s) in window_fails if x == sid}) - known):
            windows.append({"start_s": slot / 30})
        windows.sort(key=lambda w: float(w.get("start_s", 0.0)))
        blocks = []
        kept_here = 0
        for w in windows:
            slot = _slot(w.get("start_s"))
            kept = slot in kept_slots[sid]
            fails = window_fails.get((sid, slot), [])
            n_windows += 1
            kept_here += kept
            if fails:
                by_check[fails[0]["check"]] += 1
            blocks.append(_window_html(window=w, kept=kept, failures=fails, work=work))
        n_kept += kept_here
        head = [f"<h2>{html.escape(sid)}</h2>", f'<div class="muted">{html.escape(origins.get(sid, ""))}</div>']
        summary = f"{kept_here} of {len(windows)} windows kept"
        if splits.get(sid):
            summary += f", split {html.escape(splits[sid])}"
        head.append(f"<p>{summary}</p>")
        for f in source_fails.get(sid, []):
            head.append(f'<p class="fail">source rejected: <b>{html.escape(f["check"])}</b> = {_fmt(f["value"])} '
                        f'(threshold {_fmt(f["threshold"])}): {html.escape(f["reason"])}</p>')
        sections.append("".join(head + blocks))

    rejected_sources = Counter(f["check"] for fs in source_fails.values() for f in fs[:1])
    totals = (f"<table><tr><th>sources</th><td>{len(order)}</td></tr>"
              f"<tr><th>windows measured</th><td>{n_windows}</td></tr>"
              f"<tr><th>windows kept (clips)</th><td>{n_kept}</td></tr>"
              f"<tr><th>windows rejected</th><td>{n_windows - n_kept}</td></tr>"
              f"<tr><th>sources rejected whole</th><td>{sum(rejected_sources.values())}</td></tr></table>")
    counts = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in by_check.most_common() if v)
    source_counts = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in rejected_sources.most_common())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>s2v report: {html.escape(target)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>s2v build report: target {html.escape(target)}</h1><p class=\"muted\">written {stamp} from {html.escape(str(manifests_dir))}</p>"
        f"{totals}"
        + (f"<h3>windows rejected, by first failing check</h3><table><tr><th>check</th><th>windows</th></tr>{counts}</table>" if counts else "")
        + (f"<h3>sources rejected whole</h3><table><tr><th>check</th><th>sources</th></tr>{source_counts}</table>" if source_counts else "")
        + "<p class=\"muted\">Each window: its verdict, the checks it failed (value against threshold), its scores, "
        "frames 0, 20, 40, 60, 80, 100 (as in the paper's Figure 2) and the sound's onset envelope against the "
        "picture's motion energy, with the camera shift.</p>"
        + "".join(sections)
        + "</body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
