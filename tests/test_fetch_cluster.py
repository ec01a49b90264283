"""`s2vdata fetch` on a Ray instance and into a bucket (a local S3 server): the rows of a local-disk fetch, files whole.

One local S3 server and one local Ray instance (started after the server's
environment is set, so its workers reach the bucket) serve the module; a
loopback HTTP server serves good and broken URLs. Nothing touches the internet.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from s2vdata.cli import app
from s2vdata.download import staging_folder
from s2vdata.fetch import FetchOptions, fetch_urls
from s2vdata.registry import Registry
from s2vdata.storage import Location

from fetchserver import FetchServer, make_video
from s3server import make_bucket, s3_environ

pytestmark = pytest.mark.slow
runner = CliRunner()
FAST = {"target": "hand", "socket_timeout": 1.0, "retries": 1, "backoff_s": 0.05, "jobs": 4}
COOKIE = "session=secret42"


@pytest.fixture(scope="module")
def s3():
    """The environment of a local S3 server, set in this process for the module's tests."""
    with s3_environ() as env:
        yield env


@pytest.fixture(scope="module")
def ray_instance(s3):
    """A local Ray instance of 2 CPUs whose workers inherit the S3 server's environment."""
    ray = pytest.importorskip("ray")
    from s2vdata.ray_executor import start_ray

    assert start_ray(num_cpus=2) is True
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "good.mp4": make_video(folder / "good.mp4", seconds=1.0),
        "other.mp4": make_video(folder / "other.mp4", seconds=2.0, seed=1),
    }


@pytest.fixture(scope="module")
def server(media):
    with FetchServer() as s:
        for name, data in media.items():
            s.add_file(name, data)
        yield s


@pytest.fixture(scope="module")
def urls(server, media, tmp_path_factory) -> Path:
    """A URL file of good and broken URLs: every kind of row, and a duplicate line."""
    root = tmp_path_factory.mktemp("urls")
    local = root / "local.mp4"
    local.write_bytes(media["good.mp4"])
    cookies = root / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tsecret42\n")
    lines = [
        server.url("/v/good.mp4"),
        server.url("/once/other.mp4") + " sea",  # a 503 first: retried
        server.url("/v/other.mp4") + " hand 0.5-1.5",  # a time range of it
        server.url("/v/good.mp4") + "  # the same URL again: one request",
        server.url("/missing.mp4"),
        server.url("/error.mp4"),
        server.url("/hang.mp4"),
        server.url("/truncated.mp4"),
        server.url("/page.html"),
        local.as_uri(),
        "http://127.0.0.1:1/refused.mp4",
    ]
    path = root / "urls.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


OPTIONS = FetchOptions(**FAST)


def _rows(data) -> list[dict]:
    """Returns the registry's rows, in order, without the times (the only column that may differ)."""
    return [{k: v for k, v in r.items() if k != "added_at"} for r in Registry(data).rows()]


@pytest.fixture(scope="module")
def reference(urls, tmp_path_factory) -> tuple[Path, object]:
    """The reference: a local fetch into a local folder."""
    data = tmp_path_factory.mktemp("reference") / "data"
    report = fetch_urls(urls, data_dir=data, options=OPTIONS)
    assert (report.ok, report.failed, report.skipped) == (3, 7, 0), report.reasons
    return data, report


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_reference_has_good_and_failed_rows(reference, media):
    data, report = reference
    assert report.reasons == {
        "http 404": 1,
        "http 500": 1,
        "timeout": 1,
        "truncated": 1,
        "no video found": 1,
        "refused scheme": 1,
        "connection refused": 1,
    }
    ok = [r for r in Registry(data).rows() if r["status"] == "ok"]
    assert [r["sha256"] for r in ok[:2]] == [_sha(media["good.mp4"]), _sha(media["other.mp4"])]


def test_a_ray_fetch_gives_the_rows_of_a_local_fetch_and_its_exit_codes(
    reference, urls, ray_instance, server, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    args = [
        "fetch",
        str(urls),
        "--target",
        "hand",
        "--socket-timeout",
        "1",
        "--retries",
        "1",
        "--executor",
        "ray",
        "--cookies",
        str(urls.parent / "cookies.txt"),
    ]
    server.cookies.clear()
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output  # some URLs failed
    assert _rows(tmp_path / "data") == _rows(reference[0])
    # the downloads ran in Ray's workers: their one warning per failed URL is in the workers' logs, not here
    assert not [r for r in caplog.records if r.name == "s2vdata.download"]
    for row in Registry(tmp_path / "data").rows():
        if row["status"] == "ok":
            assert _sha((tmp_path / "data" / row["path"]).read_bytes()) == row["sha256"]
    # the driver's cookies reached the workers' requests, as text: the workers never saw the file
    assert server.cookies and all(COOKIE in c for c in server.cookies)
    assert not (tmp_path / "data" / "tmp").exists()

    # a re-run on Ray: the ok rows are skipped (their files not asked for again), the failed ones retried
    hits = dict(server.hits)
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert server.hits["/v/good.mp4"] == hits["/v/good.mp4"] and server.hits["/missing.mp4"] == hits["/missing.mp4"] + 1
    assert _rows(tmp_path / "data") == _rows(reference[0])
    # without the failed ones, everything is there: exit 0
    res = runner.invoke(app, [*args, "--no-retry-failed"])
    assert res.exit_code == 0, res.output


def _bucket_files(prefix: str) -> dict[str, bytes]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    return {key.rsplit("/", 1)[1]: fs.cat_file(key) for key in fs.find(prefix) if "/sources/" in key}


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_fetch_into_a_bucket_gives_the_rows_of_a_local_disk_fetch(reference, urls, s3, ray_instance, server, executor, caplog):
    bucket = f"fetch-{executor}"
    make_bucket(s3, bucket)
    data = Location(f"s3://{bucket}/data")
    report = fetch_urls(urls, data_dir=data, options=OPTIONS, executor=executor)
    assert (report.ok, report.failed, report.skipped) == (3, 7, 0)
    assert _rows(data) == _rows(reference[0])
    downloaded_here = [r for r in caplog.records if r.name == "s2vdata.download"]
    assert len(downloaded_here) == (7 if executor == "local" else 0)  # one warning per failed URL, where it ran
    # the bucket holds the finished files and nothing else; each equals the downloaded bytes its row hashes
    files = _bucket_files(f"{bucket}/data")
    rows = {Path(r["path"]).name: r for r in Registry(data).rows() if r["status"] == "ok"}
    assert set(files) == set(rows)
    for name, content in files.items():
        assert _sha(content) == rows[name]["sha256"]
        assert content == (reference[0] / "sources" / name).read_bytes()
    assert not staging_folder(data).exists(), "the staging folder is removed"

    # a re-run asks for no finished file again; a file gone from the bucket is fetched again
    good = next(r for r in Registry(data).rows() if r["origin"] == server.url("/v/good.mp4"))
    (data / good["path"]).unlink()
    hits = dict(server.hits)
    again = fetch_urls(urls, data_dir=data, options=FetchOptions(**FAST, retry_failed=False), executor=executor)
    assert (again.ok, again.failed, again.skipped) == (1, 0, 9)
    assert server.hits["/v/good.mp4"] > hits["/v/good.mp4"] and server.hits["/v/other.mp4"] == hits["/v/other.mp4"]
    assert _rows(data) == _rows(reference[0])


def test_the_cli_fetches_into_a_bucket_and_refuses_a_missing_one(s3, server, tmp_path, monkeypatch):
    make_bucket(s3, "fetch-cli")
    monkeypatch.chdir(tmp_path)
    urls = tmp_path / "urls.txt"
    urls.write_text(server.url("/v/good.mp4") + "\n")
    endpoint = s3["AWS_ENDPOINT_URL"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the endpoint comes as a storage option instead
    option = ["--storage-option", f"client_kwargs.endpoint_url={endpoint}"]
    res = runner.invoke(app, ["fetch", str(urls), "--target", "hand", "--data", "s3://fetch-cli/data", *option])
    assert res.exit_code == 0, res.output
    assert [p.name for p in tmp_path.iterdir()] == ["urls.txt"], "nothing lands in a local folder"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    assert [r["status"] for r in Registry("s3://fetch-cli/data").rows()] == ["ok"]
    res = runner.invoke(app, ["fetch", str(urls), "--target", "hand", "--data", "s3://no-such-bucket/data"])
    assert res.exit_code == 2 and "no such bucket" in res.output, res.output
