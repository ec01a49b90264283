"""The HTML report of a build: one self-contained page showing why each window was kept or rejected.

Reads what `build` left, on a local folder or an object store (`Location`):
manifests/<target>.csv (kept clips), manifests/<target>.rejects.csv (rejected
sources and windows, with check, value, threshold and reason) and the
per-source sidecars data/work/<target>/<source_id>.json (every window's scores
and curves, and the path of its contact sheet). Images are embedded (base64
JPEG for the contact sheets, PNG for the plots), so the file can be mailed or
archived alone and works offline.

A person marks windows keep or reject on the page (mouse or keyboard) and
downloads the marks as a labels file for `s2vdata calibrate`; the page embeds
the build's identity (the sidecars' measure key and each source's windows'
digest, `s2vdata.calibrate`) and the file carries it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: the report is written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from s2vdata.calibrate import FORMAT, FORMAT_VERSION, key_digest, windows_digest  # noqa: E402
from s2vdata.checks import CHECKS  # noqa: E402
from s2vdata.storage import Location  # noqa: E402

log = logging.getLogger(__name__)

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;font-size:.9em;text-align:left}
table.scores{display:block;max-width:100%;overflow-x:auto}table.scores td,table.scores th{font-size:.75em;padding:.1em .35em}
.kept{border-left:6px solid #2a9d47}.rejected{border-left:6px solid #c8372d}
.window{margin:.8em 0;padding:.4em .8em;background:#fafafa}.window img{display:block;max-width:100%;margin:.3em 0}
.fail{color:#c8372d}.ok{color:#2a9d47}.muted{color:#777;font-size:.85em}
#labelbar{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ccc;padding:.4em 0;font-size:.9em}
.labels button{margin-right:.4em;font-size:.85em;cursor:pointer}.window.current{outline:2px solid #1f5fbf}
.window.mark-keep .label-keep{background:#2a9d47;color:#fff}.window.mark-reject .label-reject{background:#c8372d;color:#fff}
.window.mark-keep{background:#eef8f0}.window.mark-reject{background:#fbeeed}
kbd{border:1px solid #bbb;border-radius:3px;padding:0 .25em;font-size:.85em}
"""

# The labelling: marks kept in memory (and in the browser's storage for this build, so a reload keeps them),
# downloaded as the labels file `s2vdata calibrate` reads. No network: everything is in this page.
_JS = """
(function(){
var build=JSON.parse(document.getElementById('s2v-build').textContent);
var store='s2v-labels:'+build.target+':'+build.key+':'+build.stamp;
var marks={};try{marks=JSON.parse(localStorage.getItem(store)||'{}')}catch(e){marks={}}
var wins=Array.prototype.slice.call(document.querySelectorAll('.window[data-source]'));var cur=-1;
function id(w){return w.getAttribute('data-source')+'|'+w.getAttribute('data-slot')}
function paint(w){var m=marks[id(w)];w.classList.toggle('mark-keep',m==='keep');w.classList.toggle('mark-reject',m==='reject');
 w.setAttribute('data-label',m||'')}
function count(){var k=0,r=0;for(var x in marks){if(marks[x]==='keep')k++;else if(marks[x]==='reject')r++;}
 document.getElementById('labelcount').textContent=(k+r)+' labelled ('+k+' keep, '+r+' reject)';
 try{localStorage.setItem(store,JSON.stringify(marks))}catch(e){}}
function mark(w,v){if(!w)return;if(v)marks[id(w)]=v;else delete marks[id(w)];paint(w);count()}
function go(i){if(!wins.length)return;cur=Math.max(0,Math.min(wins.length-1,i));
 wins.forEach(function(w,j){w.classList.toggle('current',j===cur)});wins[cur].scrollIntoView({block:'center'})}
function download(){var labels=[];for(var x in marks){var p=x.lastIndexOf('|');
  labels.push({source_id:x.slice(0,p),start_slot:parseInt(x.slice(p+1),10),label:marks[x]})}
 labels.sort(function(a,b){return a.source_id<b.source_id?-1:a.source_id>b.source_id?1:a.start_slot-b.start_slot});
 var doc={format:build.format,version:build.version,target:build.target,key:build.key,sources:build.sources,
  made:new Date().toISOString(),labels:labels};
 var a=document.createElement('a');a.href=URL.createObjectURL(new Blob([JSON.stringify(doc,null,1)],{type:'application/json'}));
 a.download=build.target+'.labels.json';document.body.appendChild(a);a.click();
 setTimeout(function(){URL.revokeObjectURL(a.href);a.remove()},1000)}
wins.forEach(function(w,j){paint(w);w.addEventListener('click',function(e){var b=e.target.closest('button');go(j);
 if(b&&b.hasAttribute('data-mark'))mark(w,b.getAttribute('data-mark'))})});
document.getElementById('download-labels').addEventListener('click',download);
document.addEventListener('keydown',function(e){if(e.ctrlKey||e.metaKey||e.altKey)return;var k=e.key;
 if(k==='ArrowDown'||k==='j'||k==='n'){go(cur+1);e.preventDefault()}
 else if(k==='ArrowUp'||k==='p'){go(cur-1);e.preventDefault()}
 else if(k==='k'||k==='y'){if(cur<0)go(0);mark(wins[cur],'keep');go(cur+1)}
 else if(k==='r'||k==='x'){if(cur<0)go(0);mark(wins[cur],'reject');go(cur+1)}
 else if(k==='u'||k==='0'){if(cur>=0)mark(wins[cur],'')}
 else if(k==='d'){download()}});
count();
})();
"""


def _read_csv(path: Location) -> pd.DataFrame:
    """Returns the CSV as text cells, or an empty frame when the file is missing or has no rows."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return pd.DataFrame()
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
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
    """Returns a PNG: onset envelope and motion energy (each scaled to its peak) over frames, camera shift on the right
    axis, and under them a strip per frame: the voice probability (speech) and sustained tones that are not a voice (music)."""
    onset = np.asarray(curves.get("onset", []), dtype=float)
    motion = np.asarray(curves.get("motion", []), dtype=float)
    shift = np.asarray(curves.get("shift", []), dtype=float)
    voice = np.asarray(curves.get("speech", []), dtype=float)
    tonal = np.asarray(curves.get("tonal", []), dtype=float)
    strip = len(voice) or len(tonal)
    fig = plt.figure(figsize=(7.2, 2.3 if strip else 1.8), dpi=80)
    grid = fig.add_gridspec(2 if strip else 1, 1, height_ratios=[4, 1] if strip else [1], hspace=0.08)
    ax = fig.add_subplot(grid[0])
    for values, label, colour in ((onset, "sound onsets", "#1f5fbf"), (motion, "motion energy", "#e07b00")):
        if len(values):
            peak = values.max() if values.max() > 0 else 1.0
            ax.plot(values / peak, label=label, color=colour, linewidth=1.2)
    ax.set_ylim(0, 1.05)
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
    if strip:
        n = max(len(voice), len(tonal), len(onset))
        ax.set_xlim(-0.5, n - 0.5)
        ax.tick_params(labelbottom=False)
        band = fig.add_subplot(grid[1], sharex=ax)
        rows = np.ones((2, n, 3))
        if len(voice):  # green, as dark as the voice is likely
            rows[0, : len(voice)] = 1.0 - np.clip(voice, 0, 1)[:, None] * np.array([0.85, 0.4, 0.75])
        if len(tonal):  # purple where tones sound and no voice does (what `music` counts)
            music = (tonal >= 0.5) & ~(np.pad(voice, (0, max(0, len(tonal) - len(voice))))[: len(tonal)] >= 0.5)
            rows[1, : len(tonal)][music] = np.array([0.55, 0.3, 0.75])
        band.imshow(rows, aspect="auto", interpolation="nearest", extent=(-0.5, n - 0.5, 1.5, -0.5))
        band.set_yticks([0, 1], ["speech", "music"], fontsize=7)
        band.tick_params(labelsize=7)
        band.set_xlabel("frame", fontsize=8)
    else:
        ax.set_xlabel("frame", fontsize=8)
    fig.subplots_adjust(left=0.09, right=0.92, top=0.95, bottom=0.16 if strip else 0.22)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _load_sidecar(path: Location) -> dict | None:
    """Returns a sidecar whole (curves too: the report draws them), or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
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


def _window_html(*, window: dict, kept: bool, failures: list[dict], work: Location, source_id: str) -> str:
    """Returns the HTML block of one window: verdict, label buttons, failing checks, scores, contact sheet, plot."""
    start = float(window.get("start_s", 0.0))
    slot = window.get("start_slot")
    # only windows with stored scores can be labelled: calibrate fits thresholds to those
    label = isinstance(slot, int) and "scores" in window
    data = f' data-source="{html.escape(source_id)}" data-slot="{slot}"' if label else ""
    parts = [f'<div class="window {"kept" if kept else "rejected"}"{data}>']
    verdict = '<b class="ok">kept</b>' if kept else '<b class="fail">rejected</b>'
    buttons = (
        (
            '<span class="labels"> your label: <button type="button" class="label-keep" data-mark="keep">keep</button>'
            '<button type="button" class="label-reject" data-mark="reject">reject</button>'
            '<button type="button" class="label-clear" data-mark="">clear</button></span>'
        )
        if label
        else ""
    )
    parts.append(f"<div>{start:.2f} s - {start + 4:.2f} s: {verdict}{buttons}</div>")
    if failures:
        rows = "".join(
            f"<tr><td>{html.escape(f['check'])}</td><td>{_fmt(f['value'])}</td><td>{_fmt(f['threshold'])}</td>"
            f"<td>{html.escape(f['reason'])}</td></tr>"
            for f in failures
        )
        parts.append(
            f'<table class="fail"><tr><th>failed check</th><th>value</th><th>threshold</th><th>reason</th></tr>{rows}</table>'
        )
    scores = window.get("scores", {})
    if scores:
        shown = [k for k in CHECKS if k in scores] + sorted(set(scores) - set(CHECKS))
        parts.append(
            '<table class="scores"><tr>'
            + "".join(f"<th>{html.escape(k)}</th>" for k in shown)
            + "</tr><tr>"
            + "".join(f"<td>{_fmt(scores[k])}</td>" for k in shown)
            + "</tr></table>"
        )
    sheet = window.get("sheet")
    if sheet:
        try:
            jpg = (work / sheet).read_bytes()
            parts.append(
                f'<img class="sheet" alt="frames 0, 20, 40, 60, 80, 100 at {start:.2f} s" src="{_b64(jpg, "image/jpeg")}">'
            )
        except OSError as e:
            parts.append(f'<div class="muted">contact sheet {html.escape(str(sheet))} missing: {html.escape(str(e))}</div>')
    if window.get("curves"):
        png = plot_curves(window["curves"])
        alt = f"onset envelope, motion energy, camera shift, speech and music at {start:.2f} s"
        parts.append(f'<img class="plot" alt="{alt}" src="{_b64(png, "image/png")}">')
    parts.append("</div>")
    return "".join(parts)


@dataclass
class _Verdicts:
    """What the manifest and the rejects file say, per source: its windows kept, its failures."""

    order: list[str] = field(default_factory=list)  # sources as the CSVs list them, each once
    origins: dict[str, str] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    kept_slots: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    window_fails: dict[tuple[str, int], list[dict]] = field(default_factory=lambda: defaultdict(list))
    source_fails: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def read(cls, kept_rows: pd.DataFrame, reject_rows: pd.DataFrame) -> _Verdicts:
        """Returns the verdicts of a build from its manifest's rows and its rejects' rows."""
        v = cls()
        for r in kept_rows.to_dict("records"):
            sid = r["source_id"]
            v.order.append(sid)
            v.origins.setdefault(sid, r.get("origin", ""))
            v.kept_slots[sid].add(_slot(r["start_s"]))
            v.splits[sid] = r.get("split", "")
        for r in reject_rows.to_dict("records"):
            sid = r["source_id"]
            v.order.append(sid)
            v.origins.setdefault(sid, r.get("origin", ""))
            slot = _slot(r.get("start_s"))
            (v.source_fails[sid] if slot is None else v.window_fails[(sid, slot)]).append(r)
        v.order = list(dict.fromkeys(v.order))
        return v


@dataclass
class _Tally:
    """Counts over the windows shown, and what ties labels to this build's measures."""

    windows: int = 0
    kept: int = 0
    by_check: Counter = field(default_factory=Counter)  # windows rejected, by first failing check
    keys: Counter = field(default_factory=Counter)  # measure keys of the sidecars read
    digests: dict[str, str] = field(default_factory=dict)  # per source, the digest of its windows' scores


def write_report(
    *, target: str, data_dir: Location | Path | str, manifests_dir: Location | Path | str, out: Location | Path | str
) -> Path | Location:
    """Returns where the HTML report of `target` was written (one self-contained file, whole or not at all): a Path
    on the local disk, else the Location on its store.

    Each argument is a local path or an object-store URL (a Location). Raises
    FileNotFoundError when neither the manifest nor the rejects file of the
    target exists (nothing was built yet).
    """
    data_dir, manifests_dir = Location(data_dir), Location(manifests_dir)
    out = Location(out, options=manifests_dir.options) if not isinstance(out, Location) else out
    manifest_path = manifests_dir / f"{target}.csv"
    rejects_path = manifests_dir / f"{target}.rejects.csv"
    if not manifest_path.exists() and not rejects_path.exists():
        raise FileNotFoundError(f"no {manifest_path} or {rejects_path}: run `s2vdata build --target {target}` first")
    verdicts = _Verdicts.read(_read_csv(manifest_path), _read_csv(rejects_path))
    tally = _Tally()
    work = data_dir / "work" / target
    sections = [_source_section(sid, verdicts=verdicts, tally=tally, work=work) for sid in verdicts.order]
    page = _page(target=target, manifests_dir=manifests_dir, verdicts=verdicts, tally=tally, sections=sections)
    if out.is_local:
        out.path.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out.path if out.is_local else out


def _source_section(sid: str, *, verdicts: _Verdicts, tally: _Tally, work: Location) -> str:
    """Returns the HTML of one source: its head, then every window measured (counted into `tally`)."""
    sidecar = _load_sidecar(work / f"{sid}.json") or {}
    windows = sidecar.get("windows") or []
    if windows:
        tally.keys[key_digest(sidecar.get("key") or {})] += 1
        tally.digests[sid] = windows_digest(windows)
    known = {_slot(w.get("start_s")) for w in windows}
    # windows in the CSVs but not in a sidecar (deleted work folder): shown from the CSV rows alone
    listed = verdicts.kept_slots[sid] | {slot for (x, slot) in verdicts.window_fails if x == sid}
    windows += [{"start_s": slot / 30} for slot in sorted(listed - known)]
    windows.sort(key=lambda w: float(w.get("start_s", 0.0)))
    blocks = []
    kept_here = 0
    for w in windows:
        slot = _slot(w.get("start_s"))
        kept = slot in verdicts.kept_slots[sid]
        fails = verdicts.window_fails.get((sid, slot), [])
        kept_here += kept
        if fails:
            tally.by_check[fails[0]["check"]] += 1
        blocks.append(_window_html(window=w, kept=kept, failures=fails, work=work, source_id=sid))
    tally.windows += len(windows)
    tally.kept += kept_here
    head = [f"<h2>{html.escape(sid)}</h2>", f'<div class="muted">{html.escape(verdicts.origins.get(sid, ""))}</div>']
    summary = f"{kept_here} of {len(windows)} windows kept"
    if verdicts.splits.get(sid):
        summary += f", split {html.escape(verdicts.splits[sid])}"
    head.append(f"<p>{summary}</p>")
    for f in verdicts.source_fails.get(sid, []):
        head.append(
            f'<p class="fail">source rejected: <b>{html.escape(f["check"])}</b> = {_fmt(f["value"])} '
            f"(threshold {_fmt(f['threshold'])}): {html.escape(f['reason'])}</p>"
        )
    return "".join(head + blocks)


def _page(*, target: str, manifests_dir: Location, verdicts: _Verdicts, tally: _Tally, sections: list[str]) -> str:
    """Returns the whole page: totals, rejection counts, the labels bar, the sources, the build's identity, the script."""
    rejected_sources = Counter(f["check"] for fs in verdicts.source_fails.values() for f in fs[:1])
    totals = (
        f"<table><tr><th>sources</th><td>{len(verdicts.order)}</td></tr>"
        f"<tr><th>windows measured</th><td>{tally.windows}</td></tr>"
        f"<tr><th>windows kept (clips)</th><td>{tally.kept}</td></tr>"
        f"<tr><th>windows rejected</th><td>{tally.windows - tally.kept}</td></tr>"
        f"<tr><th>sources rejected whole</th><td>{sum(rejected_sources.values())}</td></tr></table>"
    )
    counts = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in tally.by_check.most_common() if v)
    source_counts = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in rejected_sources.most_common())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    # what ties the labels to this build (s2vdata.calibrate checks it against the sidecars)
    build = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "target": target,
        "stamp": stamp,
        "key": tally.keys.most_common(1)[0][0] if tally.keys else "",
        "sources": tally.digests,
    }
    identity = json.dumps(build, sort_keys=True).replace("</", "<\\/")
    labelbar = (
        '<div id="labelbar">Your labels, for <code>s2vdata calibrate</code>: <span id="labelcount">0 labelled</span> '
        '<button type="button" id="download-labels">download labels</button> <span class="muted">'
        "<kbd>&darr;</kbd>/<kbd>j</kbd> next, <kbd>&uarr;</kbd>/<kbd>p</kbd> previous, <kbd>k</kbd> keep, "
        "<kbd>r</kbd> reject, <kbd>u</kbd> clear, <kbd>d</kbd> download; or click the buttons</span></div>"
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>s2v report: {html.escape(target)}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<h1>s2v build report: target {html.escape(target)}</h1>"
        f'<p class="muted">written {stamp} from {html.escape(str(manifests_dir))}</p>'
        f"{labelbar}{totals}"
        + (
            f"<h3>windows rejected, by first failing check</h3><table><tr><th>check</th><th>windows</th></tr>{counts}</table>"
            if counts
            else ""
        )
        + (
            f"<h3>sources rejected whole</h3><table><tr><th>check</th><th>sources</th></tr>{source_counts}</table>"
            if source_counts
            else ""
        )
        + '<p class="muted">Each window: its verdict, the checks it failed (value against threshold), its scores, '
        "frames 0, 20, 40, 60, 80, 100 (as in the paper's Figure 2) and the sound's onset envelope against the "
        "picture's motion energy, with the camera shift; under them, per frame, the voice probability (speech) and "
        "sustained tones that are not a voice (music).</p>"
        + "".join(sections)
        + f'<script type="application/json" id="s2v-build">{identity}</script><script>{_JS}</script>'
        + "</body></html>"
    )
