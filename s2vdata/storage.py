"""Where data lives: a local folder or an object store (s3://, gs://, any fsspec URL), one interface for both.

A `Location` is a path on a store. Everything s2v writes goes through
`Location.writing()`, so on every store a reader sees a file whole under its
final name or not at all:

- local folder: a temporary file beside the target, fsynced, then renamed;
- object store: a local temporary file, then one upload to the final key (a
  PUT, or a multipart upload that the store shows only once it completes).

Reading media needs a real file (FFmpeg seeks): `Location.local()` gives the
path itself on a local store and a temporary download on an object store.
Credentials and endpoints come the way the cloud tools take them
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, profiles, application default
credentials) or as storage options (`--storage-option key=value`), which
travel with every job to the workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from s2vdata.atomic import atomic_path

# schemes that name a local file
_LOCAL = {"", "file", "local"}
# what to install for a scheme, when fsspec knows it but its package is missing
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


class StorageError(ValueError):
    """A storage URL that cannot be used (unknown or uninstalled scheme, bad option); the message says what to do."""


def parse_options(pairs: list[str] | None) -> dict:
    """Returns storage options from `key=value` strings: values parsed as JSON when they are JSON, dotted keys nested.

    `client_kwargs.endpoint_url=http://127.0.0.1:9000` -> {"client_kwargs": {"endpoint_url": "http://..."}}.
    """
    options: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise StorageError(f"--storage-option {pair!r}: expected key=value (e.g. anon=true)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        node = options
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return options


def _split(url: str) -> tuple[str, str]:
    """Returns (scheme, rest) of a URL; scheme '' for a plain path."""
    scheme, sep, rest = url.partition("://")
    if not sep or "/" in scheme or len(scheme) < 2:
        return "", url
    return scheme.lower(), rest


class Location:
    """A file or folder on a store: a local path, or `scheme://bucket/key` on an object store.

    Plain values only (a URL and storage options), so a Location travels in
    a job to any process or machine; the filesystem is made where it is used.
    """

    def __init__(self, url: str | Path | Location, *, options: dict | None = None):
        if isinstance(url, Location):
            options = url.options if options is None else options
            url = url.url
        scheme, rest = _split(str(url))
        self.options = dict(options or {})
        if scheme in _LOCAL:
            self.protocol = "file"
            self.url = str(Path(rest).expanduser().absolute()) if rest else str(Path.cwd())
        else:
            self.protocol = scheme
            self.url = f"{scheme}://{rest.rstrip('/')}" if rest.strip("/") else f"{scheme}://{rest}"
        self._fs = None

    # -- identity

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Location) and self.url == other.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self):
        return (Location, (self.url,), {"options": self.options})

    def __setstate__(self, state: dict) -> None:
        self.options = state["options"]

    @property
    def is_local(self) -> bool:
        """Returns whether this is a path on the local filesystem."""
        return self.protocol == "file"

    @property
    def path(self) -> Path:
        """Returns the local path (only for local locations)."""
        if not self.is_local:
            raise StorageError(f"{self.url} is not on the local filesystem")
        return Path(self.url)

    @property
    def fs(self):
        """Returns the fsspec filesystem of this location (made on first use)."""
        if self._fs is None:
            self._fs = filesystem(self.protocol, self.options)
        return self._fs

    # -- path arithmetic

    def __truediv__(self, name: str) -> Location:
        if self.is_local:
            return Location(str(Path(self.url) / name), options=self.options)
        return Location(posixpath.join(self.url, str(name)), options=self.options)

    @property
    def name(self) -> str:
        return posixpath.basename(self.url.rstrip("/"))

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> Location:
        if self.is_local:
            return Location(str(Path(self.url).parent), options=self.options)
        scheme, rest = _split(self.url)
        head = posixpath.dirname(rest.rstrip("/"))
        return Location(f"{scheme}://{head}", options=self.options)

    def with_suffix(self, suffix: str) -> Location:
        stem, _ = posixpath.splitext(self.url)
        return Location(stem + suffix, options=self.options)

    def relative_to_folder(self, folder: Location) -> str:
        """Returns this location as seen from `folder`: a relative path on the same store, else the full URL."""
        if self.is_local and folder.is_local:
            return os.path.relpath(self.url, folder.url)
        a, b = _split(self.url), _split(folder.url)
        if a[0] == b[0] and a[1].split("/")[0] == b[1].split("/")[0]:
            return posixpath.relpath(a[1], b[1])
        return self.url

    def resolve(self, ref: str) -> Location:
        """Returns the location a path or URL written relative to this folder names (as manifests name shards)."""
        if _split(ref)[0]:
            return Location(ref, options=self.options)
        if self.is_local:
            return Location(str((Path(self.url) / ref).resolve()), options=self.options)
        scheme, rest = _split(self.url)
        return Location(f"{scheme}://{posixpath.normpath(posixpath.join(rest, ref))}", options=self.options)

    # -- reading

    def exists(self) -> bool:
        if self.is_local:
            return Path(self.url).exists()
        return self.fs.exists(self.url)

    def is_file(self) -> bool:
        if self.is_local:
            return Path(self.url).is_file()
        return self.fs.isfile(self.url)

    def read_bytes(self) -> bytes:
        if self.is_local:
            return Path(self.url).read_bytes()
        return self.fs.cat_file(self.url)

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def read_range(self, start: int, size: int) -> bytes:
        """Returns `size` bytes from `start` (a ranged GET on an object store)."""
        if self.is_local:
            with open(self.url, "rb") as f:
                f.seek(start)
                return f.read(size)
        return self.fs.cat_file(self.url, start=start, end=start + size)

    def open(self, mode: str = "rb"):
        """Returns a file object for reading (streaming, seekable on object stores through ranged reads)."""
        if "r" not in mode:
            raise ValueError("Location.open is for reading; write with Location.writing()")
        if self.is_local:
            return open(self.url, mode)
        return self.fs.open(self.url, mode)

    def size(self) -> int:
        if self.is_local:
            return Path(self.url).stat().st_size
        return int(self.fs.size(self.url))

    def glob(self, pattern: str) -> list[Location]:
        """Returns the locations under this folder that match a glob pattern, sorted."""
        if self.is_local:
            return [Location(str(p), options=self.options) for p in sorted(Path(self.url).glob(pattern))]
        scheme = self.protocol
        found = self.fs.glob(posixpath.join(self.url, pattern))
        return [Location(f if _split(f)[0] else f"{scheme}://{f}", options=self.options) for f in sorted(found)]

    @contextlib.contextmanager
    def local(self) -> Iterator[Path]:
        """Yields a local path holding this file's bytes: itself on a local store, a temporary download otherwise."""
        if self.is_local:
            yield Path(self.url)
            return
        with tempfile.TemporaryDirectory(prefix="s2v-") as tmp:
            dest = Path(tmp) / (self.name or "file")
            self.fs.get_file(self.url, str(dest))
            yield dest

    # -- writing

    @contextlib.contextmanager
    def writing(self) -> Iterator[Path]:
        """Yields a local temporary path; when the block ends without error its bytes appear whole under this location."""
        if self.is_local:
            with atomic_path(self.url) as tmp:
                yield tmp
            return
        fd, tmp = tempfile.mkstemp(prefix="s2v-", suffix=".part")
        os.close(fd)
        try:
            yield Path(tmp)
            self.fs.put_file(tmp, self.url)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def write_bytes(self, data: bytes) -> None:
        with self.writing() as tmp:
            tmp.write_bytes(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def upload(self, source: Path) -> None:
        """Copies a local file here, whole or not at all."""
        with self.writing() as tmp:
            shutil.copyfile(source, tmp)

    def unlink(self, missing_ok: bool = True) -> None:
        if self.is_local:
            Path(self.url).unlink(missing_ok=missing_ok)
            return
        try:
            self.fs.rm_file(self.url)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self) -> None:
        """Makes this folder on a local store (object stores have no folders)."""
        if self.is_local:
            Path(self.url).mkdir(parents=True, exist_ok=True)


_FILESYSTEMS: dict[str, object] = {}
# what else decides which store and account a filesystem reaches, besides its options
_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS")


def filesystem(protocol: str, options: dict | None = None):
    """Returns the fsspec filesystem for a scheme (one per scheme, options and environment), or raises StorageError.

    Listings are never cached: other processes (the workers) write where this one reads.
    """
    key = json.dumps([protocol, options or {}, [os.environ.get(k) for k in _ENVIRONMENT]], sort_keys=True, default=str)
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = _make_filesystem(protocol, options or {})
    return _FILESYSTEMS[key]


def _make_filesystem(protocol: str, options: dict):
    import fsspec

    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ValueError as e:
        raise StorageError(f"{protocol}:// is not a storage scheme s2v knows: use a local path, s3://bucket/prefix or "
                           "gs://bucket/prefix") from e
    except ImportError as e:
        extra = _EXTRAS.get(protocol)
        hint = f"pip install 's2v[{extra}]'" if extra else f"install the fsspec backend for {protocol}://"
        raise StorageError(f"{protocol}:// storage needs a package that is not installed: {hint}") from e
    try:
        return cls(**{"use_listings_cache": False, "skip_instance_cache": True, **options})
    except TypeError as e:
        raise StorageError(f"{protocol}:// storage: bad --storage-option ({e})") from e
