"""Thresholds fitted to a person's keep/reject labels of a build's windows, from the scores the build stored.

The report (`s2vdata report`) lets a person mark windows keep or reject and
download the marks as a labels file (JSON, below). `calibrate` reads it with
the sidecars of the same build (`data/work/<target>/<source_id>.json`: every
window's scores), fits the target's thresholds to the labels without decoding
anything, and returns the fitted target, with precision and recall of "keep"
before and after, per check and overall.

A labels file ties itself to the build it was made from:

    {"format": "s2v-labels", "version": 1, "target": "hand",
     "key": "<digest of the sidecars' measure key: clip contract, stride, checks and decode versions>",
     "sources": {"<source_id>": "<digest of that source's windows: start slots and scores>", ...},
     "labels": [{"source_id": "...", "start_slot": 120, "label": "keep"}, ...]}

`calibrate` recomputes both digests from the sidecars it reads: a file from
another build (other settings, another checks version, sources measured again
since the report) is refused, so thresholds are never fitted to scores the
person did not see.

The fit: one threshold per check of `s2vdata.checks.decide` (FITTED). Keep
iff every check passes, as the build decides. Greedy steps from the target's
thresholds: at each step, every check's best threshold with the others fixed
(candidates midway between neighbouring labelled scores, so the margin is the
largest the labels allow; on a tie the value nearest the current one), and
the one move that decides the most labelled windows right is taken (on a tie
the smallest relative move), until no move decides more windows right.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from s2vdata.storage import Location
from s2vdata.targets import THRESHOLDS, Target
from s2vdata.windows import judge

log = logging.getLogger(__name__)

FORMAT = "s2v-labels"
FORMAT_VERSION = 1
MIN_LABELS = 10  # labelled windows a fit needs
MIN_EACH = 3  # ... with at least this many keep and this many reject
# (check, target setting, how a window passes): the rules of s2vdata.checks.decide
FITTED = (
    ("audio_db", "audio_db_min", "min"),
    ("motion", "motion_min", "min"),
    ("scene_cut", "scene_cut_max", "max"),
    ("camera_shift", "camera_shift_max", "max"),
    ("av_sync", "av_sync_min", "min"),
    ("av_lag_frames", "av_lag_max_frames", "abs_max"),
    ("unrelated_audio", "unrelated_audio_max", "max"),
    ("speech", "speech_max", "max"),
    ("speech_unexplained", "speech_unexplained_max", "max"),
    ("music", "music_max", "max"),
)
_MAX_ROUNDS = 10


class LabelsError(ValueError):
    """A labels file that cannot be used with this build: the message names the file and says what to do."""


def key_digest(key: dict) -> str:
    """Returns a short digest of a sidecar's measure key (what its scores depend on)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def windows_digest(windows: list[dict]) -> str:
    """Returns a short digest of a source's measured windows: their start slots and scores (curves left out)."""
    body = [[w.get("start_slot"), w.get("scores", {})] for w in windows]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Labelled:
    """One labelled window: where it is, its stored scores and the person's verdict."""

    source_id: str
    start_slot: int
    scores: dict
    keep: bool


@dataclass(frozen=True)
class Quality:
    """Precision and recall of "keep" for one check (or all of them): how the decisions match the labels."""

    check: str
    threshold_before: float | None
    threshold_after: float | None
    precision_before: float
    recall_before: float
    precision_after: float
    recall_after: float


@dataclass
class Fit:
    """What `calibrate` returns: the fitted target, the labels it was fitted to and how both targets do on them."""

    base: Target
    fitted: Target
    labels: list[Labelled]
    per_check: list[Quality] = field(default_factory=list)
    overall: Quality | None = None

    @property
    def keep(self) -> int:
        return sum(x.keep for x in self.labels)


# ----------------------------------------------------------------------------- reading


def read_labels(path: Path | str, *, target: str) -> dict:
    """Returns the labels file's content, checked for form; raises LabelsError naming the file and the problem."""
    path = Path(path)
    hint = "download it with the report's 'download labels' button (`s2vdata report`)"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise LabelsError(f"{path}: no such labels file") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabelsError(f"{path}: not a labels file ({e}); {hint}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise LabelsError(f"{path}: not a labels file; {hint}")
    if doc.get("version") != FORMAT_VERSION:
        raise LabelsError(f"{path}: labels format version {doc.get('version')!r}; this s2v reads version {FORMAT_VERSION}")
    if doc.get("target") != target:
        raise LabelsError(f"{path}: labels of target {doc.get('target')!r}, not {target!r}: pass --target {doc.get('target')}")
    labels, sources = doc.get("labels"), doc.get("sources")
    if not isinstance(labels, list) or not isinstance(sources, dict) or not isinstance(doc.get("key"), str):
        raise LabelsError(f"{path}: a labels file needs `key`, `sources` and `labels`; {hint}")
    for i, x in enumerate(labels):
        ok = (
            isinstance(x, dict)
            and isinstance(x.get("source_id"), str)
            and isinstance(x.get("start_slot"), int)
            and x.get("label") in ("keep", "reject")
        )
        if not ok:
            raise LabelsError(f"{path}: label {i + 1} is not {{source_id, start_slot, label: keep|reject}}: {x!r}")
    return doc


def labelled_windows(doc: dict, *, data: Location, target: str, labels_path: Path | str) -> list[Labelled]:
    """Returns the labelled windows with the scores this build stored for them.

    Raises LabelsError when the file is from another build (its digests differ
    from the sidecars'), names a source or window the build did not measure,
    or holds too few labels.
    """
    from s2vdata.worker import read_sidecar  # the worker's reader drops curves as it parses

    work = data / "work" / target
    by_source: dict[str, list[dict]] = {}
    for x in doc["labels"]:
        by_source.setdefault(x["source_id"], []).append(x)
    out: list[Labelled] = []
    for sid, marks in by_source.items():
        sidecar = read_sidecar(work / f"{sid}.json")
        if sidecar is None:
            raise LabelsError(
                f"{labels_path}: labels name source {sid}, which this build has no measures of in {work} "
                "(a file from another build or data folder?)"
            )
        if key_digest(sidecar.get("key") or {}) != doc["key"]:
            raise LabelsError(
                f"{labels_path}: made from another build (other settings or checks version than {work}): "
                "write the report of this build and label it again"
            )
        windows = sidecar.get("windows") or []
        if doc["sources"].get(sid) != windows_digest(windows):
            raise LabelsError(
                f"{labels_path}: source {sid} was measured again since the report was written: "
                "write the report of this build and label it again"
            )
        by_slot = {w.get("start_slot"): w for w in windows}
        for x in marks:
            w = by_slot.get(x["start_slot"])
            if w is None:
                raise LabelsError(
                    f"{labels_path}: labels name window {sid} at slot {x['start_slot']}, which this build did not measure"
                )
            out.append(Labelled(sid, x["start_slot"], dict(w["scores"]), x["label"] == "keep"))
    keep = sum(x.keep for x in out)
    if len(out) < MIN_LABELS or keep < MIN_EACH or len(out) - keep < MIN_EACH:
        raise LabelsError(
            f"{labels_path}: {len(out)} labelled windows ({keep} keep, {len(out) - keep} reject); a fit needs at least "
            f"{MIN_LABELS}, with at least {MIN_EACH} of each: mark more windows in the report"
        )
    return out


# ----------------------------------------------------------------------------- deciding and fitting


def _passes(value, threshold: float, how: str) -> bool:
    """Returns whether a score passes one threshold, as `decide` judges it (a missing or NaN score fails)."""
    return bool(_passing(np.array([np.nan if value is None else float(value)]), np.array([threshold]), how)[0, 0])


def _passing(values: np.ndarray, thresholds: np.ndarray, how: str) -> np.ndarray:
    """Returns (len(thresholds), len(values)) bools: which windows pass at each threshold (NaN fails)."""
    v = np.abs(values) if how == "abs_max" else values
    with np.errstate(invalid="ignore"):
        ok = v[None, :] >= thresholds[:, None] if how == "min" else v[None, :] <= thresholds[:, None]
    return ok & ~np.isnan(v)[None, :]


def kept(window: Labelled, target: Target) -> bool:
    """Returns whether the build keeps this window under `target` (every check, and the decode's own checks)."""
    return not judge([{"scores": window.scores}], target)[0]


def _quality(pred, truth) -> tuple[float, float]:
    """Returns (precision, recall) of "keep"; nan where undefined (nothing kept, nothing labelled keep)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    tp = int((pred & truth).sum())
    n_pred, n_true = int(pred.sum()), int(truth.sum())
    return (tp / n_pred if n_pred else float("nan")), (tp / n_true if n_true else float("nan"))


def _candidates(values: np.ndarray, current: float, how: str) -> np.ndarray:
    """Returns the thresholds worth trying for one check: midway between neighbouring labelled scores, beyond both ends."""
    v = np.abs(values) if how == "abs_max" else values
    xs = np.unique(v[~np.isnan(v)])
    out = [np.array([current])]
    if len(xs):
        span = max(1e-6, float(xs[-1] - xs[0]))
        out += [(xs[:-1] + xs[1:]) / 2, np.array([xs[0] - 0.05 * span, xs[-1] + 0.05 * span])]
    cands = np.unique(np.concatenate(out))
    if how == "abs_max":  # a whole number of frames
        cands = np.unique(np.concatenate([np.clip(np.round(cands), 0, None), np.arange(16.0)]))
    return cands


def fit(labels: list[Labelled], base: Target) -> Target:
    """Returns `base` with every FITTED threshold moved to decide the labelled windows as the labels do (see module doc)."""
    truth = np.array([x.keep for x in labels], bool)
    # decode errors and sound gaps reject a window whatever the thresholds
    blocked = np.array([not _other_checks_ok(x, base) for x in labels], bool)
    values = {c: np.array([np.nan if x.scores.get(c) is None else float(x.scores[c]) for x in labels]) for c, _, _ in FITTED}
    current = {setting: float(getattr(base, setting)) for _, setting, _ in FITTED}
    passes = {c: _passing(values[c], np.array([current[s]]), how)[0] for c, s, how in FITTED}

    def right_now() -> int:
        keep = ~blocked
        for c, _, _ in FITTED:
            keep = keep & passes[c]
        return int((keep == truth).sum())

    score = right_now()
    for _ in range(_MAX_ROUNDS * len(FITTED)):
        moves = []  # (windows right, -relative move, check, setting, how, threshold): the best move of each check
        for check, setting, how in FITTED:
            rest = ~blocked
            for c, _, _ in FITTED:
                if c != check:
                    rest = rest & passes[c]
            cands = _candidates(values[check], current[setting], how)
            right = ((rest[None, :] & _passing(values[check], cands, how)) == truth[None, :]).sum(axis=1)
            tied = cands[right == right.max()]
            best = float(tied[np.argmin(np.abs(tied - current[setting]))])
            relative = abs(best - current[setting]) / max(abs(current[setting]), 1e-3)
            moves.append((int(right.max()), -relative, check, setting, how, best))
        right, _, check, setting, how, best = max(moves, key=lambda m: (m[0], m[1]))
        # the move that decides the most windows right, and among those the smallest: a greedy step never takes a
        # check to "reject everything" when another threshold explains the labels
        if right <= score:
            break
        current[setting], score = best, right
        passes[check] = _passing(values[check], np.array([best]), how)[0]
    updates = {s: (int(round(v)) if s == "av_lag_max_frames" else _round(v)) for s, v in current.items()}
    return replace(base, **updates)


def _round(value: float) -> float:
    """Returns a threshold with 4 significant digits: enough to sit between the labelled scores, short in a TOML file."""
    return float(f"{value:.4g}")


def _other_checks_ok(window: Labelled, target: Target) -> bool:
    """Returns whether the window passes the checks that are not thresholds of scores (the decode's checks)."""
    names = {c for c, _, _ in FITTED}
    return not [r for r in judge([{"scores": window.scores}], target)[0] if r.check not in names]


def assess(labels: list[Labelled], *, base: Target, fitted: Target) -> tuple[list[Quality], Quality]:
    """Returns (per check, overall) precision and recall of "keep" under the base and the fitted thresholds.

    Per check: a window counts as kept when that check passes (whatever the
    others say); overall: when the build keeps it.
    """
    truth = [x.keep for x in labels]
    rows = []
    for check, setting, how in FITTED:
        v = np.array([np.nan if x.scores.get(check) is None else float(x.scores[check]) for x in labels])
        before = _passing(v, np.array([float(getattr(base, setting))]), how)[0]
        after = _passing(v, np.array([float(getattr(fitted, setting))]), how)[0]
        thresholds = (getattr(base, setting), getattr(fitted, setting))
        rows.append(Quality(check, *thresholds, *_quality(before, truth), *_quality(after, truth)))
    before = [kept(x, base) for x in labels]
    after = [kept(x, fitted) for x in labels]
    return rows, Quality("all checks", None, None, *_quality(before, truth), *_quality(after, truth))


def calibrate(*, labels_path: Path | str, target: Target, data: Location | Path | str) -> Fit:
    """Returns the fit of `target`'s thresholds to a labels file, from the stored scores of the build at `data`.

    Raises LabelsError (one line: the file and what to do) on a file from
    another build, unknown windows or too few labels.
    """
    doc = read_labels(labels_path, target=target.name)
    labels = labelled_windows(doc, data=Location(data), target=target.name, labels_path=labels_path)
    fitted = fit(labels, target)
    per_check, overall = assess(labels, base=target, fitted=fitted)
    return Fit(base=target, fitted=fitted, labels=labels, per_check=per_check, overall=overall)


# ----------------------------------------------------------------------------- writing


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def write_targets_toml(path: Path | str, fit_: Fit, *, note: str = "") -> Path:
    """Returns the path of a TOML targets file holding the fitted target as `[targets.<name>]` with `base = "<name>"`.

    Other targets already in the file are kept (its comments are not).
    Thresholds that the fit left unchanged are written too, so the file says
    everything the build will use.
    """
    path = Path(path)
    tables: dict[str, dict] = {}
    if path.exists():
        try:
            tables = dict(tomllib.loads(path.read_text()).get("targets", {}))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"{path}: exists and is not a readable TOML targets file ({e}); choose another --out") from e
    name = fit_.fitted.name
    base = asdict(fit_.base)
    table: dict = {"base": name, "description": fit_.fitted.description}
    for key in THRESHOLDS:
        table[key] = getattr(fit_.fitted, key)
    tables[name] = table
    lines = ["# s2v targets: `s2vdata build --target NAME --targets THIS_FILE`"]
    if note:
        lines += [f"# {line}" for line in note.splitlines()]
    for tname, t in tables.items():
        lines += ["", f"[targets.{tname}]"]
        for key, value in t.items():
            was = base.get(key) if tname == name else None
            comment = f"  # was {was:g}" if tname == name and isinstance(was, (int, float)) and was != value else ""
            lines.append(f"{key} = {_toml_value(value)}{comment}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
