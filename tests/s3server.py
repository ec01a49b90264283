"""A local S3-compatible server (moto's server mode) on 127.0.0.1, started and stopped by the tests that need it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server() -> Iterator[dict]:
    """Yields the environment that points the AWS tools (and s3fs) at a fresh local S3 server, then stops it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as e:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the local S3 server (moto) did not start") from e
                time.sleep(0.1)
        yield {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def environ(env: dict) -> Iterator[dict]:
    """Sets `env` in this process's environment, yields it, then puts back what was there."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def s3_environ() -> Iterator[dict]:
    """Yields the environment of a fresh local S3 server, set in this process while it runs."""
    with s3_server() as env, environ(env):
        yield env


def make_bucket(env: dict, name: str) -> None:
    """Creates a bucket on the server `env` points at."""
    import s3fs

    with environ(env):
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
