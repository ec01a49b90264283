"""Thresholds fitted to keep/reject labels from stored scores: the fit, its refusals, the TOML it writes, the command."""

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from s2vdata.calibrate import (
    FITTED,
    LabelsError,
    _passes,
    calibrate,
    key_digest,
    windows_digest,
    write_targets_toml,
)
from s2vdata.checks import CHECKS, decide
from s2vdata.cli import app
from s2vdata.targets import THRESHOLDS, get_target, load_targets

HAND = get_target("hand")
KEY = {"stride_slots": 120, "checks": "test"}
GOOD = {
    "audio_db": -20.0,
    "motion": 0.01,
    "scene_cut": 0.0,
    "camera_shift": 0.0,
    "av_sync": 0.6,
    "av_lag_frames": 1.0,
    "unrelated_audio": 0.05,
    "speech": 0.0,
    "speech_unexplained": 0.0,
    "music": 0.0,
    "decode_errors": 0.0,
    "audio_gap_ms": 0.0,
}


def _build(root, shifts: dict[str, list[float]]):
    """Writes sidecars (data/work/hand/<sid>.json) whose windows differ only in camera_shift; returns the data folder."""
    work = root / "data" / "work" / "hand"
    work.mkdir(parents=True)
    for sid, values in shifts.items():
        windows = [
            {"start_slot": 120 * i, "start_s": 4.0 * i, "scores": {**GOOD, "camera_shift": v}, "curves": {"onset": [0.0] * 3}}
            for i, v in enumerate(values)
        ]
        (work / f"{sid}.json").write_text(json.dumps({"windows": windows, "source_id": sid, "key": KEY, "rejected": None}))
    return root / "data"


def _labels(path, data, marks: dict[tuple[str, int], str], *, target="hand", key=None):
    """Writes a labels file as the report's page does, with the digests of the sidecars in `data`."""
    sources = {}
    for f in sorted((data / "work" / "hand").glob("*.json")):
        sources[f.stem] = windows_digest(json.loads(f.read_text())["windows"])
    doc = {
        "format": "s2v-labels",
        "version": 1,
        "target": target,
        "key": key or key_digest(KEY),
        "sources": sources,
        "labels": [{"source_id": s, "start_slot": slot, "label": v} for (s, slot), v in marks.items()],
    }
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def labelled(tmp_path):
    # a person who accepts a slow drift (camera_shift up to 0.6) and rejects real pans (1.5 and more)
    data = _build(tmp_path, {"a": [0.0, 0.3, 0.45, 0.6], "b": [0.5, 0.55, 1.5, 2.0], "c": [2.5, 3.0, 0.1, 0.2]})
    marks = {
        ("a", 0): "keep",
        ("a", 120): "keep",
        ("a", 240): "keep",
        ("a", 360): "keep",
        ("b", 0): "keep",
        ("b", 120): "keep",
        ("b", 240): "reject",
        ("b", 360): "reject",
        ("c", 0): "reject",
        ("c", 120): "reject",
        ("c", 240): "keep",
        ("c", 360): "keep",
    }
    return data, _labels(tmp_path / "labels.json", data, marks), marks


def test_the_fit_moves_the_threshold_between_the_labelled_scores_and_leaves_the_others(labelled):
    data, path, _ = labelled
    result = calibrate(labels_path=path, target=HAND, data=data)
    assert result.fitted.camera_shift_max == pytest.approx((0.6 + 1.5) / 2, abs=1e-3)
    for key in THRESHOLDS:
        if key != "camera_shift_max":
            assert getattr(result.fitted, key) == getattr(HAND, key), key
    assert (result.overall.precision_before, result.overall.recall_before) == (1.0, 0.375)  # 3 of 8 keeps were kept
    assert (result.overall.precision_after, result.overall.recall_after) == (1.0, 1.0)
    camera = next(q for q in result.per_check if q.check == "camera_shift")
    assert camera.threshold_before == 0.25 and camera.recall_after == 1.0


def test_the_fit_tightens_a_threshold_when_labels_reject_what_the_target_keeps(tmp_path):
    # windows with some unrelated sound the shipped hand threshold (0.25) lets through, which this person rejects
    values = [0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.18, 0.2, 0.22, 0.24]
    work = tmp_path / "data" / "work" / "hand"
    work.mkdir(parents=True)
    windows = [{"start_slot": 120 * i, "scores": {**GOOD, "unrelated_audio": v}} for i, v in enumerate(values)]
    (work / "s.json").write_text(json.dumps({"windows": windows, "key": KEY}))
    marks = {("s", 120 * i): "keep" if v < 0.11 else "reject" for i, v in enumerate(values)}
    result = calibrate(labels_path=_labels(tmp_path / "l.json", tmp_path / "data", marks), target=HAND, data=tmp_path / "data")
    assert result.fitted.unrelated_audio_max == pytest.approx(0.11)
    assert result.overall.precision_before == 0.4 and result.overall.precision_after == 1.0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda doc: doc.update(key="0123456789abcdef"), "made from another build"),
        (lambda doc: doc["sources"].update(a="0123456789abcdef"), "source a was measured again"),
        (lambda doc: doc["labels"].append({"source_id": "a", "start_slot": 999, "label": "keep"}), "window a at slot 999"),
        (lambda doc: doc["labels"].append({"source_id": "zz", "start_slot": 0, "label": "keep"}), "source zz, which this build"),
        (lambda doc: doc.update(labels=doc["labels"][:9]), r"9 labelled windows .* at least 10"),
        (lambda doc: doc.update(labels=[x for x in doc["labels"] if x["label"] == "keep"] * 2), r"0 reject.*at least 3 of each"),
        (lambda doc: doc.update(target="sea"), "labels of target 'sea', not 'hand'"),
        (lambda doc: doc.update(format="something"), "not a labels file"),
        (lambda doc: doc["labels"][0].update(label="maybe"), "label 1 is not"),
    ],
)
def test_labels_from_another_build_unknown_windows_or_too_few_are_refused(labelled, change, message):
    data, path, _ = labelled
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(LabelsError, match=message):
        calibrate(labels_path=path, target=HAND, data=data)


def test_fitted_rules_are_the_rules_decide_applies():
    assert [c for c, _, _ in FITTED] == list(CHECKS)
    rng = np.random.default_rng(0)
    for check, setting, how in FITTED:
        for value in [*rng.normal(0, 2, 20), float("nan"), -3.0, 3.0]:
            threshold = float(getattr(HAND, setting))
            want = next(r.passed for r in decide({**GOOD, check: float(value)}, HAND) if r.check == check)
            assert _passes(float(value), threshold, how) == want, (check, value)


def test_the_toml_target_round_trips_through_load_targets_and_keeps_other_targets(tmp_path, labelled):
    data, path, _ = labelled
    result = calibrate(labels_path=path, target=HAND, data=data)
    out = tmp_path / "mine.toml"
    out.write_text('[targets.drums]\nbase = "hand"\nav_sync_min = 0.5\n')
    write_targets_toml(out, result, note="a test")
    text = out.read_text()
    assert '[targets.hand]\nbase = "hand"' in text and "camera_shift_max = 1.05  # was 0.25" in text
    targets = load_targets(out)
    assert targets["hand"] == replace(HAND, camera_shift_max=1.05)
    assert targets["drums"].av_sync_min == 0.5


def test_the_command_prints_before_and_after_and_exits_2_with_one_line_on_bad_labels(tmp_path, labelled, monkeypatch):
    data, path, _ = labelled
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(
        app,
        ["calibrate", "--labels", str(path), "--target", "hand", "--data", str(data), "--out", "fitted.toml"],
        env={"COLUMNS": "200"},
    )
    assert ok.exit_code == 0, ok.output
    assert "0.25 -> 1.05" in ok.output and "all checks" in ok.output
    assert load_targets(tmp_path / "fitted.toml")["hand"].camera_shift_max == 1.05
    doc = json.loads(path.read_text())
    doc["labels"] = doc["labels"][:4]
    path.write_text(json.dumps(doc))
    bad = runner.invoke(
        app, ["calibrate", "--labels", str(path), "--target", "hand", "--data", str(data)], env={"COLUMNS": "200"}
    )
    assert bad.exit_code == 2
    lines = [ln for ln in bad.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "at least 10" in lines[0]
    assert "Traceback" not in bad.output
