"""The HTML report of a real build: every source and window with its verdict, reasons and images, all embedded."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from s2vdata.build import build
from s2vdata.config import BuildSettings
from s2vdata.report import write_report
from s2vdata.synth import synth_sources
from s2vdata.targets import get_target

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data, manifests = root / "data", root / "manifests"
    synth_sources(target="hand", count=1, seed=1, data_dir=data, seconds=8.5)
    synth_sources(target="hand", count=1, seed=2, data_dir=data, seconds=8.5, defect="pan", strength=2.0)
    synth_sources(target="hand", count=1, seed=3, data_dir=data, seconds=2.0)  # too short for a clip
    build(target=get_target("hand"), data_dir=data, manifests_dir=manifests, settings=BuildSettings())
    out = write_report(target="hand", data_dir=data, manifests_dir=manifests, out=manifests / "hand.report.html")
    return root, out


@pytest.mark.slow
def test_report_shows_every_window_with_its_verdict_and_failing_check(built):
    root, out = built
    page = out.read_text()
    assert "windows kept (clips)</th><td>2<" in page
    assert page.count('class="window kept"') == 2 and page.count('class="window rejected"') == 2
    # the panned source: the failing check with its value and the target's threshold
    assert re.search(r"<td>camera_shift</td><td>2\.0\d*</td><td>0\.25</td>", page)
    assert "source rejected: <b>duration</b>" in page
    assert "synth://hand/2/0?defect=pan" in page


@pytest.mark.slow
def test_report_is_self_contained(built):
    _, out = built
    page = out.read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) == 8  # a contact sheet and a plot per window
    assert all(s.startswith(("data:image/jpeg;base64,", "data:image/png;base64,")) for s in sources)
    assert "<link" not in page and "http" not in page.split("<body>")[1].replace("synth://", "")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_every_image_renders_in_headless_chromium(built, tmp_path):
    _, out = built
    # a copy of the report that, once loaded, writes how many images decoded into the DOM
    probe = tmp_path / "probe.html"
    script = (
        '<script>window.addEventListener("load",function(){var im=document.images,ok=0;'
        "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}"
        'document.body.setAttribute("data-images",ok+"/"+im.length);});</script>'
    )
    probe.write_text(out.read_text().replace("</body>", script + "</body>"))
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'data-images="8/8"' in dom, dom[:500]


def test_report_without_a_build_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="s2vdata build --target hand"):
        write_report(target="hand", data_dir=tmp_path / "data", manifests_dir=tmp_path / "manifests", out=tmp_path / "r.html")


def test_report_from_csvs_alone_when_sidecars_are_gone(tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "hand.csv").write_text("clip_id,source_id,origin,start_s,split\nk1,src1,/videos/a.mp4,0,train\n")
    (manifests / "hand.rejects.csv").write_text(
        "source_id,origin,start_s,check,value,threshold,reason\n"
        "src1,/videos/a.mp4,4,av_sync,0.1,0.35,sound does not follow the motion\n"
        "src2,/videos/b.avi,,decode,,,unreadable: moov atom not found\n"
    )
    out = write_report(target="hand", data_dir=tmp_path / "data", manifests_dir=manifests, out=tmp_path / "r.html")
    page = out.read_text()
    assert "1 of 2 windows kept, split train" in page
    assert "<td>av_sync</td><td>0.1</td><td>0.35</td>" in page
    assert "unreadable: moov atom not found" in page
    assert Path(out).suffix == ".html"


def test_the_report_shows_the_voice_and_music_scores_and_a_strip_of_each_per_frame(built):
    import cv2
    import numpy as np

    from s2vdata.report import plot_curves

    _, out = built
    page = out.read_text()
    for score in ("speech", "speech_unexplained", "music"):
        assert f"<th>{score}</th>" in page
    n = 120
    voice = [1.0] * 60 + [0.0] * 60  # a voice in the first half
    tonal = [0.0] * 60 + [1.0] * 60  # tones and no voice in the second: music
    png = plot_curves({"onset": [0.1] * n, "motion": [0.2] * n, "speech": voice, "tonal": tonal})
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].astype(int)  # RGB
    plain = cv2.imdecode(np.frombuffer(plot_curves({"onset": [0.1] * n, "motion": [0.2] * n}), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[0] > plain.shape[0]  # the strip adds a band under the curves
    band = img[int(img.shape[0] * 0.7) :]
    green = (band[..., 1] > band[..., 0] + 60) & (band[..., 1] > band[..., 2] + 60)
    purple = (band[..., 2] > band[..., 1] + 60) & (band[..., 0] > band[..., 1] + 30)
    cols = np.arange(img.shape[1])
    mid = cols[green.any(axis=0)].max() if green.any() else 0
    assert green.sum() > 100 and purple.sum() > 100
    assert cols[green.any(axis=0)].max() < cols[purple.any(axis=0)].min() + 2  # voice left of music, as in the curves
    assert mid < img.shape[1] * 0.6


@pytest.mark.slow
def test_a_report_of_a_build_in_a_bucket_reads_and_writes_the_store(built, tmp_path, monkeypatch):
    import os

    from typer.testing import CliRunner

    from s2vdata.cli import app

    from s3server import make_bucket, s3_server

    root, local_report = built
    with s3_server() as env:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        make_bucket(env, "rep")
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        fs.put(str(root / "data" / "work"), "rep/data/work", recursive=True)
        for name in ("hand.csv", "hand.rejects.csv"):
            fs.put(str(root / "manifests" / name), f"rep/manifests/{name}")
        monkeypatch.chdir(tmp_path)
        runner = CliRunner()
        res = runner.invoke(app, ["report", "--target", "hand", "--data", "s3://rep/data", "--manifests", "s3://rep/manifests"])
        assert res.exit_code == 0, res.output
        remote = fs.cat_file("rep/manifests/hand.report.html").decode()
        res = runner.invoke(
            app,
            ["report", "--target", "hand", "--data", "s3://rep/data", "--manifests", "s3://rep/manifests", "--out", "here.html"],
        )
        assert res.exit_code == 0, res.output
        local = (tmp_path / "here.html").read_text()
        assert not os.path.exists(tmp_path / "s3:")
    body = lambda page: re.sub(r"written [^<]*</p>|\"stamp\": \"[^\"]*\"|s2v-labels:[^']*'", "", page)  # noqa: E731
    assert body(remote) == body(local)
    # the same windows, verdicts, images and build identity as the report of the local folders
    want = local_report.read_text()
    assert remote.count('class="window kept"') == want.count('class="window kept"') == 2
    assert re.findall(r'<img[^>]*src="([^"]+)"', remote) == re.findall(r'<img[^>]*src="([^"]+)"', want)
    ident = lambda page: json.loads(re.search(r'id="s2v-build">(.*?)</script>', page).group(1))  # noqa: E731
    a, b = ident(remote), ident(want)
    assert (a["key"], a["sources"]) == (b["key"], b["sources"]) and len(a["sources"]) == 2
