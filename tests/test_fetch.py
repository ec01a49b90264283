"""`s2vdata fetch` against a loopback HTTP server: every outcome recorded, resumable, bounded in time."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from s2vdata.fetch import FetchOptions, classify, fetch_urls, read_urls, source_id_for
from s2vdata.media import probe
from s2vdata.registry import Registry

from fetchserver import FetchServer, make_video

# short timeouts and pauses: a test never waits out the 30 s default
FAST = dict(target="hand", socket_timeout=1.0, retries=1, backoff_s=0.05, jobs=4)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "good.mp4": make_video(folder / "good.mp4", seconds=1.0),
        "other.mp4": make_video(folder / "other.mp4", seconds=2.0, seed=1),
    }


@pytest.fixture
def server(media):
    with FetchServer() as s:
        for name, data in media.items():
            s.add_file(name, data)
        yield s


def _write_urls(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows_by_origin(data: Path) -> dict[str, dict]:
    return {r["origin"]: r for r in Registry(data).rows()}


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.exists() else {}


def test_read_urls_targets_sections_comments(tmp_path):
    urls = _write_urls(
        tmp_path / "urls.txt",
        [
            "# a comment line",
            "https://example.org/a.mp4",
            "https://example.org/b.mp4   sea   # trailing comment",
            "https://example.org/c.mp4#t=5 fireworks 10-25,1:40-1:55.5",
            "https://example.org/d.mp4 3-4",
            "",
        ],
    )
    assert read_urls(urls, default_target="hand") == [
        ("https://example.org/a.mp4", "hand", None),
        ("https://example.org/b.mp4", "sea", None),
        ("https://example.org/c.mp4#t=5", "fireworks", [(10.0, 25.0), (100.0, 115.5)]),
        ("https://example.org/d.mp4", "hand", [(3.0, 4.0)]),
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("https://example.org/a.mp4 hand 10-25 extra", "unexpected 'extra'"),
        ("https://example.org/a.mp4 hand 30-20", "ends before it starts"),
    ],
)
def test_read_urls_rejects_bad_lines_naming_the_line(tmp_path, line, message):
    urls = _write_urls(tmp_path / "urls.txt", ["https://example.org/ok.mp4", line])
    with pytest.raises(ValueError, match=rf"urls\.txt:2: .*{message}"):
        read_urls(urls, default_target=None)


def test_source_id_from_video_id_or_url_hash():
    watch = source_id_for("https://www.youtube.com/watch?v=dQw4w9WgXcQ")
    assert watch == "youtube-dQw4w9WgXcQ"
    assert source_id_for("https://youtu.be/dQw4w9WgXcQ") == watch
    assert source_id_for("https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PLabc&index=3") == watch
    assert source_id_for("https://www.youtube.com/playlist?list=PLabc") == "youtubetab-PLabc"
    direct = source_id_for("http://127.0.0.1:8000/v/clip.mp4")
    assert direct.startswith("url-") and "." not in direct
    assert source_id_for("http://127.0.0.1:8000/v/clip.mp4#t=3") == direct
    assert source_id_for("http://127.0.0.1:8000/v/clip2.mp4") != direct


def test_fetch_records_every_outcome_and_a_rerun_rewrites_nothing(tmp_path, server, media):
    data = tmp_path / "data"
    local = tmp_path / "local.mp4"
    local.write_bytes(media["good.mp4"])
    good, flaky = server.url("/v/good.mp4"), server.url("/once/other.mp4")
    urls = _write_urls(
        tmp_path / "urls.txt",
        [
            good,
            flaky + " sea",
            good + "   # the same URL again",
            server.url("/missing.mp4"),
            server.url("/error.mp4"),
            server.url("/hang.mp4"),
            server.url("/stall.mp4"),
            server.url("/truncated.mp4"),
            server.url("/page.html"),
            local.as_uri(),
            "http://127.0.0.1:1/refused.mp4",
        ],
    )
    options = FetchOptions(**FAST)
    events = []
    report = fetch_urls(urls, data_dir=data, options=options, progress=events.append)

    rows = _rows_by_origin(data)
    assert len(rows) == 10  # the duplicate line gives no second row
    assert (report.ok, report.failed, report.skipped) == (2, 8, 0)
    assert {origin: r["reason"] for origin, r in rows.items() if r["status"] == "failed"} == {
        server.url("/missing.mp4"): "http 404",
        server.url("/error.mp4"): "http 500",
        server.url("/hang.mp4"): "timeout",
        server.url("/stall.mp4"): "timeout",
        server.url("/truncated.mp4"): "truncated",
        server.url("/page.html"): "no video found",
        local.as_uri(): "refused scheme",
        "http://127.0.0.1:1/refused.mp4": "connection refused",
    }
    assert report.reasons == {
        "http 404": 1,
        "http 500": 1,
        "timeout": 2,
        "truncated": 1,
        "no video found": 1,
        "refused scheme": 1,
        "connection refused": 1,
    }

    for url, name, target in [(good, "good.mp4", "hand"), (flaky, "other.mp4", "sea")]:
        row = rows[url]
        assert row["status"] == "ok" and row["target"] == target
        landed = data / row["path"]
        assert landed.parent == data / "sources" and landed.name.startswith(row["source_id"])
        assert landed.read_bytes() == media[name]
        assert row["sha256"] == hashlib.sha256(media[name]).hexdigest()
        assert row["webpage_url"] == url and row["title"] == Path(name).stem
        facts = probe(landed)
        assert (int(row["width"]), int(row["height"]), float(row["fps"]), int(row["audio_rate"])) == (
            facts["width"],
            facts["height"],
            facts["fps"],
            facts["audio_rate"],
        )
        assert abs(float(row["duration_s"]) - facts["duration_s"]) < 1e-3
    # only complete files reach data/sources/, and the temporary folder is cleaned up
    assert sorted(p.name for p in (data / "sources").iterdir()) == sorted(Path(rows[u]["path"]).name for u in (good, flaky))
    assert not (data / "tmp").exists()

    # transient errors are retried (once here), permanent ones are not
    assert server.hits["/once/other.mp4"] == 3  # 503, then the page and the file
    assert server.hits["/error.mp4"] == 2
    assert server.hits["/hang.mp4"] == 2
    # a body that stalls is retried by yt-dlp's own (resuming) retries only, not once more per attempt
    assert server.hits["/stall.mp4"] == 1 + 2
    assert server.hits["/truncated.mp4"] == 1 + 2
    assert server.hits["/missing.mp4"] == 1
    assert server.hits["/page.html"] == 1

    assert events[0]["event"] == "start" and events[0]["total"] == 10
    finished = [e for e in events if e["event"] == "url"]
    assert [e["done"] for e in finished] == list(range(1, 11))
    assert events[-1]["bytes"] >= len(media["good.mp4"]) + len(media["other.mp4"])
    assert events[-1]["rate"] > 0

    # a second run: ok rows untouched, failed ones tried again and failing the same way -> nothing rewritten
    files, registry = _mtimes(data / "sources"), (data / "sources.csv").stat().st_mtime_ns
    hits = dict(server.hits)
    again = fetch_urls(urls, data_dir=data, options=options)
    assert (again.ok, again.failed, again.skipped) == (0, 8, 2)
    assert _mtimes(data / "sources") == files
    assert (data / "sources.csv").stat().st_mtime_ns == registry
    assert server.hits["/v/good.mp4"] == hits["/v/good.mp4"]
    assert server.hits["/missing.mp4"] == hits["/missing.mp4"] + 1

    # without retry_failed nothing is asked of the server at all
    hits = dict(server.hits)
    quiet = fetch_urls(urls, data_dir=data, options=FetchOptions(**FAST, retry_failed=False))
    assert (quiet.ok, quiet.failed, quiet.skipped) == (0, 0, 10)
    assert dict(server.hits) == hits


def test_failed_url_is_retried_and_new_lines_picked_up(tmp_path, server):
    data = tmp_path / "data"
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/late.mp4")])
    first = fetch_urls(urls, data_dir=data, options=FetchOptions(**FAST))
    assert first.reasons == {"http 404": 1}

    server.add_file("late.mp4", server.files["good.mp4"])
    _write_urls(urls, [server.url("/v/late.mp4"), server.url("/v/other.mp4")])
    second = fetch_urls(urls, data_dir=data, options=FetchOptions(**FAST))
    assert (second.ok, second.failed) == (2, 0)
    rows = Registry(data).rows()
    assert [r["status"] for r in rows] == ["ok", "ok"]  # the failed row became ok: still one row per URL
    assert rows[0]["added_at"] == first.rows[0]["added_at"]


def test_refused_scheme_unless_local_urls_allowed(tmp_path, media):
    local = tmp_path / "local.mp4"
    local.write_bytes(media["good.mp4"])
    urls = _write_urls(tmp_path / "urls.txt", [local.as_uri(), "ftp://127.0.0.1/x.mp4"])
    refused = fetch_urls(urls, data_dir=tmp_path / "a", options=FetchOptions(**FAST))
    assert refused.reasons == {"refused scheme": 2}

    allowed = fetch_urls(urls, data_dir=tmp_path / "b", options=FetchOptions(**FAST, allow_local_urls=True))
    assert allowed.ok == 1 and allowed.reasons == {"refused scheme": 1}
    row = next(r for r in allowed.rows if r["status"] == "ok")
    assert (tmp_path / "b" / row["path"]).read_bytes() == media["good.mp4"]


def test_sections_download_only_the_time_range(tmp_path, server):
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/other.mp4") + " hand 0.5-1.5"])
    report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST))
    assert report.ok == 1
    row = report.rows[0]
    assert row["source_id"].endswith("-s0p5-1p5") and row["origin"].endswith("#t=0.5,1.5")
    duration = probe(tmp_path / "data" / row["path"])["duration_s"]
    assert 0.9 <= duration <= 1.3  # of a 2 s source

    whole = fetch_urls(urls, data_dir=tmp_path / "whole", options=FetchOptions(**FAST, sections=False))
    assert probe(tmp_path / "whole" / whole.rows[0]["path"])["duration_s"] > 1.9


def test_cookies_are_sent_and_the_users_file_is_left_alone(tmp_path, server):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tsecret42\n")
    before = cookies.read_bytes(), cookies.stat().st_mtime_ns
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/good.mp4")])
    report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST, cookies=cookies))
    assert report.ok == 1
    assert server.cookies and all("session=secret42" in c for c in server.cookies)
    assert (cookies.read_bytes(), cookies.stat().st_mtime_ns) == before


def test_proxy_carries_every_request(tmp_path, server, media):
    with FetchServer() as proxy:
        for name, data in media.items():
            proxy.add_file(name, data)
        urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/good.mp4")])
        report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST, proxy=proxy.base))
        assert report.ok == 1
        assert proxy.proxied["/v/good.mp4"] >= 1
        assert server.hits["/v/good.mp4"] == 0


def test_bad_options_are_usage_errors(tmp_path):
    urls = _write_urls(tmp_path / "urls.txt", ["https://example.org/a.mp4"])
    with pytest.raises(ValueError, match="rate limit"):
        fetch_urls(urls, data_dir=tmp_path, options=FetchOptions(rate_limit="fast"))
    with pytest.raises(ValueError, match="cookies file"):
        fetch_urls(urls, data_dir=tmp_path, options=FetchOptions(cookies=tmp_path / "none.txt"))


def test_classify_messages():
    from yt_dlp.utils import DownloadError

    assert classify(DownloadError("ERROR: [youtube] x: Sign in to confirm your age")) == ("sign-in required", False)
    assert classify(DownloadError("ERROR: [youtube] x: HTTP Error 429: Too Many Requests")) == ("http 429", True)
    assert classify(DownloadError("ERROR: something new\nmore")) == ("error: something new more", False)


KILLED_FETCH = textwrap.dedent("""
    import sys
    from pathlib import Path
    from s2vdata.fetch import FetchOptions, fetch_urls
    try:
        fetch_urls(Path(sys.argv[1]), data_dir=Path(sys.argv[2]),
                   options=FetchOptions(target="hand", socket_timeout=5, retries=0))
    except KeyboardInterrupt:
        sys.exit(130)
""")


def _start_slow_fetch(*, server: FetchServer, urls: Path, data: Path) -> tuple[subprocess.Popen, Path]:
    """Starts fetch in a subprocess against a trickling server; returns it and its partial file, once one exists."""
    server.slow = True  # 1 KiB every 100 ms: the 160 KB file would take about 16 s to arrive
    server.slow_chunk, server.slow_pause_s = 1024, 0.1
    proc = subprocess.Popen([sys.executable, "-c", KILLED_FETCH, str(urls), str(data)])
    for _ in range(600):  # wait, up to 60 s, for the download to be under way
        tmp = data / "tmp"
        parts = [p for p in tmp.rglob("*") if p.is_file() and p.stat().st_size > 0] if tmp.exists() else []
        if parts:
            return proc, parts[0]
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    pytest.fail("the fetch ended or never started downloading before it could be stopped")


def _no_ok_row_and_nothing_in_sources(data: Path) -> None:
    assert not any(r["status"] == "ok" for r in Registry(data).rows())
    assert not (data / "sources").exists() or not any((data / "sources").iterdir())


@pytest.mark.slow
def test_kill_9_mid_download_leaves_no_ok_row_and_a_rerun_completes(tmp_path, server, media):
    data = tmp_path / "data"
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/other.mp4")])
    proc, partial = _start_slow_fetch(server=server, urls=urls, data=data)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial.stat().st_size < len(media["other.mp4"])
    _no_ok_row_and_nothing_in_sources(data)

    server.slow = False
    report = fetch_urls(urls, data_dir=data, options=FetchOptions(**FAST))
    assert report.ok == 1
    row = Registry(data).get(report.rows[0]["source_id"])
    assert row["status"] == "ok" and (data / row["path"]).read_bytes() == media["other.mp4"]
    assert not (data / "tmp").exists()  # the partial of the killed run is gone


@pytest.mark.slow
def test_ctrl_c_stops_downloads_in_flight_and_removes_their_partials(tmp_path, server):
    data = tmp_path / "data"
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/other.mp4")])
    proc, _ = _start_slow_fetch(server=server, urls=urls, data=data)
    os.kill(proc.pid, signal.SIGINT)
    try:
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    # had the run waited for the download to end instead of stopping it, the file would be registered ok
    _no_ok_row_and_nothing_in_sources(data)
    assert not (data / "tmp").exists()


@pytest.fixture(scope="module")
def dash(tmp_path_factory) -> dict[str, bytes]:
    """A DASH manifest with video-only streams at 128 and 64 px and a separate audio stream."""
    import imageio_ffmpeg

    folder = tmp_path_factory.mktemp("dash")
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=128x128:rate=30:duration=2",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=2",
            "-filter_complex",
            "[0:v]split=2[big][s];[s]scale=64:64[small]",
            "-map",
            "[big]",
            "-map",
            "[small]",
            "-map",
            "1:a",
            "-c:v",
            "libx264",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-f",
            "dash",
            "-seg_duration",
            "1",
            str(folder / "manifest.mpd"),
        ],
        check=True,
    )
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("max_height, height", [(1080, 128), (100, 64), (32, 64)])
def test_split_streams_are_merged_at_the_tallest_height_allowed(tmp_path, server, dash, max_height, height):
    for name, data in dash.items():
        server.add_file(name, data)
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/manifest.mpd")])
    report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST, max_height=max_height))
    assert report.ok == 1, report.reasons
    facts = probe(tmp_path / "data" / report.rows[0]["path"])
    # one file with both streams, merged by ffmpeg; above every stream's height, the smallest one
    assert facts["has_video"] and facts["has_audio"]
    assert facts["height"] == height and int(report.rows[0]["height"]) == height


def test_same_video_under_two_urls_is_one_row(tmp_path):
    # both URLs name YouTube video dQw4w9WgXcQ; its row is already ok, so nothing goes to the network
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    (data / "sources" / "youtube-dQw4w9WgXcQ.mp4").write_bytes(b"kept as is")
    Registry(data).upsert(
        [
            {
                "source_id": "youtube-dQw4w9WgXcQ",
                "target": "hand",
                "status": "ok",
                "origin": "https://youtu.be/dQw4w9WgXcQ",
                "path": "sources/youtube-dQw4w9WgXcQ.mp4",
            }
        ]
    )
    urls = _write_urls(tmp_path / "urls.txt", ["https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://youtu.be/dQw4w9WgXcQ"])
    events = []
    report = fetch_urls(urls, data_dir=data, options=FetchOptions(**FAST), progress=events.append)
    assert (report.ok, report.failed, report.skipped) == (0, 0, 2)
    assert [e["status"] for e in events if e["event"] == "url"] == ["ok", "duplicate"]
    assert len(Registry(data).rows()) == 1


def test_cli_fetch_summarises_and_exits_1_on_failures(tmp_path, server, monkeypatch):
    from typer.testing import CliRunner

    from s2vdata.cli import app

    monkeypatch.chdir(tmp_path)
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/good.mp4"), server.url("/missing.mp4")])
    args = ["fetch", str(urls), "--target", "hand", "--socket-timeout", "1", "--retries", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "http 404" in result.output
    rows = _rows_by_origin(tmp_path / "data")
    assert rows[server.url("/v/good.mp4")]["status"] == "ok"

    _write_urls(urls, [server.url("/v/good.mp4")])
    assert CliRunner().invoke(app, args).exit_code == 0


def test_page_with_one_video_is_fetched_and_a_list_is_refused(tmp_path, server):
    server.add_file(
        "one.html", b'<html><head><title>One clip</title></head><body><video src="/v/good.mp4" controls></video></body></html>'
    )
    server.add_file(
        "two.html",
        b"<html><head><title>Two clips</title></head><body>"
        b'<video src="/v/good.mp4"></video><video src="/v/other.mp4"></video></body></html>',
    )
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/one.html"), server.url("/v/two.html")])
    report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST))
    rows = _rows_by_origin(tmp_path / "data")
    one, two = rows[server.url("/v/one.html")], rows[server.url("/v/two.html")]
    assert one["status"] == "ok" and one["title"].startswith("One clip")
    assert one["webpage_url"] == server.url("/v/one.html")  # the page, not the media file: licences live there
    assert (two["status"], two["reason"]) == ("failed", "playlist")
    assert report.reasons == {"playlist": 1}
    assert server.hits["/v/other.mp4"] == 0


def test_registry_is_rewritten_in_batches_not_per_url(tmp_path, server, monkeypatch):
    writes = []
    upsert = Registry.upsert

    def counting_upsert(self, rows):
        writes.append(len(rows))
        return upsert(self, rows)

    monkeypatch.setattr(Registry, "upsert", counting_upsert)
    urls = _write_urls(tmp_path / "urls.txt", [server.url(f"/missing.mp4?n={i}") for i in range(24)])
    report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST))
    assert report.reasons == {"http 404": 24}
    # one write at the end, plus one per 10 s on a slow machine: far fewer than one per URL
    assert sum(writes) == 24 and len(writes) <= 6
    assert len(Registry(tmp_path / "data").rows()) == 24


def test_slow_registry_rewrites_are_spaced_out(tmp_path, server, monkeypatch):
    # a rewrite of a registry of 100,000 rows takes seconds: the run must not spend its time on them
    import s2vdata.fetch

    writes = []
    upsert = Registry.upsert

    def slow_upsert(self, rows):
        writes.append(len(rows))
        time.sleep(0.4)  # then the next rewrite waits 4 s, whatever the batch size says
        return upsert(self, rows)

    monkeypatch.setattr(Registry, "upsert", slow_upsert)
    monkeypatch.setattr(s2vdata.fetch, "_FLUSH_ROWS", 1)  # due after every URL
    urls = _write_urls(tmp_path / "urls.txt", [server.url(f"/missing.mp4?n={i}") for i in range(24)])
    report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST))
    assert report.reasons == {"http 404": 24}
    assert sum(writes) == 24 and writes[0] >= 1 and len(writes) <= 4, writes
    assert len(Registry(tmp_path / "data").rows()) == 24


@pytest.mark.slow
def test_fetched_source_builds_into_clips_that_carry_its_url(tmp_path, server, monkeypatch):
    import pandas as pd
    from typer.testing import CliRunner

    from s2vdata.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    made = runner.invoke(app, ["synth", "--target", "hand", "--count", "1", "--seconds", "8", "--data", "made"])
    assert made.exit_code == 0, made.output
    server.add_file("clap.mp4", next((tmp_path / "made" / "sources").iterdir()).read_bytes())
    url = server.url("/v/clap.mp4")
    _write_urls(tmp_path / "urls.txt", [url + " hand"])

    fetched = runner.invoke(app, ["fetch", "urls.txt"])
    assert fetched.exit_code == 0, fetched.output
    built = runner.invoke(app, ["build", "--target", "hand"])
    assert built.exit_code == 0, built.output

    manifest = pd.read_csv(tmp_path / "manifests" / "hand.csv", keep_default_na=False)
    assert len(manifest) >= 1
    assert set(manifest["origin"]) == {url} and set(manifest["webpage_url"]) == {url}
    assert set(manifest["source_id"]) == {source_id_for(url)}


def test_yt_dlp_gets_the_options_and_writes_only_under_the_data_folder(tmp_path):
    from s2vdata.download import FetchTask, _task_params, _ydl_params, _YdlLog
    from s2vdata.storage import Location
    from s2vdata.urlfile import Request

    options = FetchOptions(socket_timeout=7.5, retries=2, rate_limit="2M", proxy="socks5://127.0.0.1:1080", max_height=720)
    cookies = "# Netscape HTTP Cookie File\n"
    params = _ydl_params(options=options, logger=_YdlLog(), hook=lambda d: None, cookies=cookies)
    assert (params["socket_timeout"], params["retries"], params["fragment_retries"]) == (7.5, 2, 2)
    assert params["ratelimit"] == 2 * 1024 * 1024 and params["proxy"] == "socks5://127.0.0.1:1080"
    # the cookies are a text stream: no copy of them is written anywhere
    assert params["cachedir"] is False and params["cookiefile"].getvalue() == cookies
    assert "height<=?720" in params["format"] and params["format_sort"] == ["res:720"]
    assert Path(params["ffmpeg_location"]).is_file()

    work = tmp_path / "data" / "tmp" / "fetch" / "url-abc"
    task = FetchTask(
        0, "url-abc", Request("https://example.org/v", "sea", (3.0, 9.0)), Location(tmp_path / "data"), options, added_at=""
    )
    per_task = _task_params(task, work=work)
    assert per_task["paths"] == {"home": str(work), "temp": str(work)}
    assert per_task["outtmpl"] == {"default": "url-abc.%(ext)s"}  # from the id, never the title
    assert list(per_task["download_ranges"]({}, None)) == [{"start_time": 3.0, "end_time": 9.0}]


def test_nothing_is_written_outside_the_data_folder(tmp_path, server, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    for var in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TMPDIR"):
        monkeypatch.setenv(var, str(home))
    monkeypatch.setattr(tempfile, "tempdir", str(home))  # the process may have read TMPDIR already
    monkeypatch.chdir(work)
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/good.mp4"), server.url("/page.html")])
    report = fetch_urls(urls, data_dir=work / "data", options=FetchOptions(**FAST))
    assert (report.ok, report.failed) == (1, 1)
    assert [p.name for p in work.iterdir()] == ["data"]
    assert list(home.iterdir()) == []


def test_unknown_target_is_fetched_with_a_warning(tmp_path, server, caplog):
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/good.mp4") + " hnad"])
    with caplog.at_level("WARNING", logger="s2vdata.fetch"):
        report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST))
    assert report.ok == 1 and report.rows[0]["target"] == "hnad"
    assert "target 'hnad' (1 URL(s)) is not a known preset" in caplog.text


def test_rows_are_registered_in_the_url_files_order_whatever_ends_first(tmp_path, server):
    # the hanging URL ends last (after its timeouts) yet keeps its place: a build reads sources in registry order
    lines = [server.url("/hang.mp4"), server.url("/v/good.mp4"), server.url("/missing.mp4"), server.url("/v/other.mp4")]
    urls = _write_urls(tmp_path / "urls.txt", lines)
    events = []
    report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST), progress=events.append)
    assert [e["source_id"] for e in events if e["event"] == "url"][-1] == source_id_for(lines[0])
    assert [r["origin"] for r in Registry(tmp_path / "data").rows()] == lines
    assert [r["origin"] for r in report.rows] == lines


def test_cli_fetch_without_a_terminal_prints_plain_progress_lines(tmp_path, server, monkeypatch):
    from typer.testing import CliRunner

    from s2vdata.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("S2V_PROGRESS_SECONDS", "0")  # a line at every event instead of every 30 s
    urls = _write_urls(tmp_path / "urls.txt", [server.url("/v/good.mp4"), server.url("/v/other.mp4")])
    result = CliRunner().invoke(app, ["fetch", str(urls), "--target", "hand", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("fetch: ")]
    # what is done, the rate, the time elapsed and left, and the bytes: without a terminal, never a bar
    assert any(
        line.startswith("fetch: 1/2 URLs (50%), ") and " URLs/s, " in line and " left, " in line and " MB at " in line
        for line in lines
    ), lines
    assert lines[-1].startswith("fetch: 2/2 URLs (100%), ")


def test_a_ray_download_the_driver_cannot_see_is_a_failed_row(tmp_path):
    # a local --data on a cluster without a shared filesystem: the node stored the file on its own disk
    from s2vdata.download import Fetched
    from s2vdata.fetch import _seen_by_driver
    from s2vdata.storage import Location

    data = Location(tmp_path / "data")
    row = {
        "source_id": "url-a",
        "target": "hand",
        "origin": "http://x/a.mp4",
        "path": "sources/url-a.mp4",
        "sha256": "ab",
        "status": "ok",
        "reason": "",
        "width": 64,
        "added_at": "2026-01-01T00:00:00+00:00",
    }
    seen = _seen_by_driver(Fetched(3, row, 10), data=data)
    assert (seen.index, seen.row["status"], seen.row["reason"]) == (3, "failed", "not on a shared filesystem")
    assert (seen.row["path"], seen.row["sha256"], seen.row["width"], seen.row["origin"]) == ("", "", "", row["origin"])
    (tmp_path / "data" / "sources").mkdir(parents=True)
    (tmp_path / "data" / "sources" / "url-a.mp4").write_bytes(b"here")
    assert _seen_by_driver(Fetched(3, row, 10), data=data).row is row


def test_an_unexpected_error_costs_one_url_not_the_run(tmp_path, server, monkeypatch, caplog):
    import s2vdata.download

    good, other = server.url("/v/good.mp4"), server.url("/v/other.mp4")
    real_probe = s2vdata.download.probe

    def broken_probe(path):
        if path.name.startswith(source_id_for(good)):
            raise RuntimeError("a bug in s2v")
        return real_probe(path)

    monkeypatch.setattr(s2vdata.download, "probe", broken_probe)
    urls = _write_urls(tmp_path / "urls.txt", [good, other])
    report = fetch_urls(urls, data_dir=tmp_path / "data", options=FetchOptions(**FAST))
    assert (report.ok, report.failed) == (1, 1) and report.reasons == {"internal error: RuntimeError": 1}
    rows = _rows_by_origin(tmp_path / "data")
    assert rows[other]["status"] == "ok" and rows[good]["path"] == ""
    assert "a bug in s2v" in caplog.text  # the traceback is in the log
    assert [p.name for p in (tmp_path / "data" / "sources").iterdir()] == [Path(rows[other]["path"]).name]
