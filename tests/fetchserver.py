"""A loopback HTTP server for the fetch tests: good files and every way a download can go wrong.

Routes (GET; HEAD answers the same headers without a body):

- ``/v/<name>``: a file registered with ``add_file(name, data)``, served whole (Range honoured)
- ``/once/<name>``: the same file, but the first request for this path gets a 503
- ``/missing.mp4``: 404
- ``/error.mp4``: 500 on every request
- ``/hang.mp4``: accepts the connection, reads the request and never answers
- ``/truncated.mp4``: announces the full length of a registered file, sends a third of it, closes
- ``/page.html``: an HTML page with no video in it
- ``/stall.mp4``: answers a HEAD-like probe normally, but a body request gets headers, a few bytes, then silence

``hits[path]`` counts requests per path, so a test can tell whether a re-run asked for a file again;
``cookies`` keeps every Cookie header received. Setting ``slow = True`` trickles files in small
pieces with pauses (for the kill -9 test). A request
whose target is an absolute URL (what a client sends to a proxy) is answered from its path and counted
in ``proxied``, so the same class serves as a loopback proxy.
"""

from __future__ import annotations

import collections
import http.server
import threading
import time
from pathlib import Path

PAGE = b"""<!DOCTYPE html>
<html><head><title>Nothing to see</title></head>
<body><p>This page has text and no video.</p></body></html>
"""


def make_video(path: Path, *, seconds: float, size: int = 64, seed: int = 0) -> bytes:
    """Writes a small MP4 with noise pictures and sound at `path` and returns its bytes."""
    import numpy as np

    from s2vdata.media import write_video

    rng = np.random.default_rng(seed)
    n = round(seconds * 30)
    # noise frames compress badly: the file is big enough to be caught mid-download
    frames = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    audio = (0.1 * rng.standard_normal(round(seconds * 44100))).astype(np.float32)
    write_video(path, frames, audio, fps=30)
    return path.read_bytes()


class FetchServer:
    """A threaded HTTP server on 127.0.0.1 (port chosen by the OS); use as a context manager."""

    def __init__(self, *, slow_chunk: int = 4096, slow_pause_s: float = 0.05) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: collections.Counter = collections.Counter()
        self.proxied: collections.Counter = collections.Counter()
        self.cookies: list[str] = []
        self.slow = False
        self.slow_chunk = slow_chunk
        self.slow_pause_s = slow_pause_s
        self._failed_once: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # clients that give up (timeouts, kills) reset connections: expected here, not worth a traceback
        self._httpd.handle_error = lambda request, client_address: None
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        """Return the server's base URL, without a trailing slash."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        """Return the absolute URL of a path on this server."""
        return self.base + path

    def add_file(self, name: str, data: bytes) -> None:
        """Serve ``data`` under /v/<name> and /once/<name>."""
        self.files[name] = data

    def __enter__(self) -> FetchServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # release the hanging handlers first, so shutdown does not wait for them
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler_class(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, *, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                proxied = path.startswith(("http://", "https://"))
                if proxied:
                    path = "/" + path.split("://", 1)[1].partition("/")[2]
                with server._lock:
                    (server.proxied if proxied else server.hits)[path] += 1
                    if self.headers.get("Cookie"):
                        server.cookies.append(self.headers["Cookie"])
                if path == "/missing.mp4":
                    return self._status(404)
                if path == "/error.mp4":
                    return self._status(500)
                if path == "/hang.mp4":
                    server._stop.wait(120)
                    self.close_connection = True
                    return None
                if path == "/stall.mp4":
                    data = next(iter(server.files.values()))
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if body and server.hits[path] > 1:
                        self.wfile.write(data[:100])
                        self.wfile.flush()
                        server._stop.wait(120)
                    self.close_connection = True
                    return None
                if path == "/page.html":
                    return self._bytes(PAGE, content_type="text/html; charset=utf-8", body=body)
                if path == "/truncated.mp4":
                    data = next(iter(server.files.values()))
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if body:
                        self.wfile.write(data[: len(data) // 3])
                        self.wfile.flush()
                    self.close_connection = True
                    return None
                kind, _, name = path.lstrip("/").partition("/")
                data = server.files.get(name)
                if data is None or kind not in ("v", "once"):
                    return self._status(404)
                if kind == "once":
                    with server._lock:
                        first = path not in server._failed_once
                        server._failed_once.add(path)
                    if first:
                        return self._status(503)
                kind = {".mpd": "application/dash+xml", ".html": "text/html; charset=utf-8"}.get(
                    name[name.rfind(".") :], "video/mp4"
                )
                return self._bytes(data, content_type=kind, body=body, slow=server.slow)

            def _status(self, code: int) -> None:
                message = f"status {code}\n".encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)

            def _bytes(self, data: bytes, *, content_type: str, body: bool, slow: bool = False) -> None:
                start, end = 0, len(data)
                requested = self.headers.get("Range", "")
                if requested.startswith("bytes="):
                    first, _, last = requested[6:].partition("-")
                    start = int(first or 0)
                    end = int(last) + 1 if last else len(data)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(end - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                if not slow:
                    self.wfile.write(data[start:end])
                    return
                for at in range(start, end, server.slow_chunk):
                    if server._stop.is_set():
                        return
                    self.wfile.write(data[at : min(at + server.slow_chunk, end)])
                    self.wfile.flush()
                    time.sleep(server.slow_pause_s)

        return Handler
