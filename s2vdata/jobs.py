"""The work on one source, as the driver hands it out and as any executor brings it back.

Plain values only: a job crosses process and machine boundaries (a local
process pool, a Ray cluster), so the worker (`worker.process_source`), the
executors and the driver (`build`, `commit`) all speak these two types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from s2vdata.config import BuildSettings
from s2vdata.storage import Location
from s2vdata.targets import Target


@dataclass(frozen=True)
class SourceJob:
    """The work on one source: everything a worker needs, as plain values."""

    source_id: str
    origin: str
    path: str  # the source file: an absolute path or a URL (s3://...)
    work_dir: str  # data/work/<target>: the sidecar, contact sheets and part tar go here
    shard: str  # the shard that holds this source's committed clips ("" if none), which a re-run may reuse
    target: Target
    settings: BuildSettings
    storage: dict = field(default_factory=dict, hash=False)  # storage options of the data folder (--storage-option)

    def at(self, url: str) -> Location:
        """Returns a location on this job's store (its storage options applied)."""
        return Location(url, options=self.storage)


@dataclass
class SourceOutcome:
    """What became of one source in a worker."""

    source_id: str
    status: str  # "done" (measured: its windows kept or rejected, or the whole source rejected) or "failed" (retried by the next build)
    windows: int = 0  # windows measured
    kept: int = 0  # windows kept
    cut: int = 0  # clips encoded in this run
    rejected: str = ""  # the check that rejected the whole source ("" if it was not)
    reason: str = ""  # why it failed (status "failed")
    seconds: float = 0.0


def failed(job: SourceJob, reason: str) -> SourceOutcome:
    """Returns the outcome of a source whose work did not finish (the next build tries it again)."""
    return SourceOutcome(job.source_id, "failed", reason=reason.splitlines()[0][:300] if reason else "failed")
