"""The calibrate round trip through a real browser: open the report in headless Chromium, mark windows with the mouse
and the keyboard, download the labels, fit the target to them, rebuild, and see the kept windows follow the labels.

Needs Chromium, its WebDriver (Debian: chromium, chromium-driver) and selenium (`make browser` installs them);
skipped, saying which is missing, without them.
"""

import json
import shutil
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from s2vdata.build import build
from s2vdata.cli import app
from s2vdata.config import BuildSettings
from s2vdata.report import write_report
from s2vdata.synth import synth_sources
from s2vdata.targets import get_target

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (`make browser`)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None, reason="chromium and chromium-driver are not installed (`make browser`)"
    ),
]


def _browser(downloads):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    # the driver named outright: selenium never looks for (or downloads) one
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _wait_for(pattern, folder, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = [p for p in folder.glob(pattern) if not p.name.endswith(".crdownload")]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern} in {folder} after {timeout} s: {list(folder.iterdir())}")


def test_labels_made_in_the_report_refit_the_target_and_the_rebuild_keeps_what_was_marked_keep(tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By

    data, manifests, downloads = tmp_path / "data", tmp_path / "manifests", tmp_path / "downloads"
    downloads.mkdir()
    # clean hands and a slow drift (0.5 px/frame: rejected by the shipped hand target) that this person keeps; real pans rejected
    synth_sources(target="hand", count=2, seed=1, data_dir=data, seconds=8.5)
    synth_sources(target="hand", count=2, seed=3, data_dir=data, seconds=8.5, defect="pan", strength=0.5)
    synth_sources(target="hand", count=2, seed=5, data_dir=data, seconds=8.5, defect="pan", strength=2.0)
    hand = get_target("hand")
    first = build(target=hand, data_dir=data, manifests_dir=manifests, settings=BuildSettings())
    assert first.clips == 4  # the clean hands only
    report = write_report(target="hand", data_dir=data, manifests_dir=manifests, out=manifests / "hand.report.html")
    origins = dict(pd.read_csv(data / "sources.csv", dtype=str)[["source_id", "origin"]].values)

    def wanted(sid):
        return "reject" if "strength=2.0" in origins[sid] else "keep"

    driver = _browser(downloads)
    try:
        driver.get(report.as_uri())
        windows = driver.find_elements(By.CSS_SELECTOR, ".window[data-source]")
        assert len(windows) == 12
        marks = {}
        # the first four with the mouse
        for w in windows[:4]:
            label = wanted(w.get_attribute("data-source"))
            w.find_element(By.CSS_SELECTOR, f".label-{label}").click()
            marks[(w.get_attribute("data-source"), int(w.get_attribute("data-slot")))] = label
        # the rest with the keyboard: j moves on, k keeps, r rejects (each moves to the next window)
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("j")
        for w in windows[4:]:
            label = wanted(w.get_attribute("data-source"))
            body.send_keys("k" if label == "keep" else "r")
            marks[(w.get_attribute("data-source"), int(w.get_attribute("data-slot")))] = label
        assert [w.get_attribute("data-label") for w in windows] == list(marks.values())
        assert driver.find_element(By.ID, "labelcount").text == "12 labelled (8 keep, 4 reject)"
        driver.find_element(By.ID, "download-labels").click()
        labels = _wait_for("hand.labels*.json", downloads)
    finally:
        driver.quit()
    doc = json.loads(labels.read_text())
    assert {(x["source_id"], x["start_slot"]): x["label"] for x in doc["labels"]} == marks

    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(
        app,
        [
            "calibrate",
            "--labels",
            str(labels),
            "--target",
            "hand",
            "--data",
            str(data),
            "--manifests",
            str(manifests),
            "--out",
            "fitted.toml",
        ],
        env={"COLUMNS": "200"},
    )
    assert out.exit_code == 0, out.output
    assert "camera_shift" in out.output and "0.25 ->" in out.output

    fitted = get_target("hand", tmp_path / "fitted.toml")
    assert 0.5 < fitted.camera_shift_max < 2.0
    second = build(target=fitted, data_dir=data, manifests_dir=manifests, settings=BuildSettings())
    assert second.clips == 8
    kept = {(r["source_id"], round(float(r["start_s"]) * 30)) for r in pd.read_csv(manifests / "hand.csv").to_dict("records")}
    assert kept == {k for k, v in marks.items() if v == "keep"}
