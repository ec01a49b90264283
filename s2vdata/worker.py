"""The work on one source, wherever it runs: decode once, measure every window, cut the kept ones.

A worker leaves in the work folder (`data/work/<target>/`):

- `<source_id>.json`, the sidecar: the source's facts and every window's
  scores and curves, under the key of what they depend on (`measure_key`);
- `<source_id>.sheets/`, one contact sheet per window, for the report;
- `<source_id>.clips.tar`, the part: the kept windows cut into clips.

Each is written atomically and each step skips what is done: measures are
reused from a sidecar with the same key, clips from the part or from the
source's committed shard, so a killed build re-run redoes nothing. Memory
does not grow with the length of a source: windows are measured as the
decode reaches their end, their sheets and curves go to disk at once, and
clips go to the part as they are encoded.
"""

from __future__ import annotations

import json
import logging
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from s2vdata import checks, dedup
from s2vdata.config import BuildSettings
from s2vdata.jobs import SourceJob, SourceOutcome, failed
from s2vdata.media import DECODE_VERSION, GridReader, MediaError, ReadError, Slot, encode_clip, probe
from s2vdata.shards import ShardWriter, index_members, read_sample
from s2vdata.storage import Location
from s2vdata.windows import judge, select, stride_slots

log = logging.getLogger(__name__)

SHEET_FRAMES = (0, 20, 40, 60, 80, 100)  # the paper's Figure 2: every 20 frames
SHEET_SIZE = 72
FINGERPRINT_SLOTS = 300  # near-duplicates are told apart by their first 10 s


def measure_key(settings: BuildSettings) -> dict:
    """Returns what the stored measures depend on: if any of it changes, windows are measured again."""
    return {
        "stride_slots": stride_slots(settings),
        "clip": asdict(settings.clip),
        "checks": checks.VERSION,
        "decode": DECODE_VERSION,
    }


def clip_key(source_id: str, start_slot: int) -> str:
    """Returns the clip id and shard key of a window: no dots, sorts by time within a source."""
    return f"{source_id}_{start_slot:07d}"


def sidecar_path(job: SourceJob) -> Location:
    """Returns where a source's sidecar (its measures) lies."""
    return job.at(job.work_dir) / f"{job.source_id}.json"


def part_path(job: SourceJob) -> Location:
    """Returns where a source's part tar (clips cut but not yet committed to a shard) lies."""
    return job.at(job.work_dir) / f"{job.source_id}.clips.tar"


def read_sidecar(path: Location) -> dict | None:
    """Returns a sidecar without its windows' curves (only the report draws them), or None if there is none or it
    cannot be read (it is then measured again)."""
    try:
        return json.loads(path.read_bytes(), object_hook=_without_curves)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("%s: unreadable sidecar, measuring again: %s", path, e)
        return None


def _without_curves(d: dict) -> dict:
    # a window's curves are dropped as soon as it is parsed: a 2-hour source's sidecar never sits in memory whole
    if "curves" in d and "scores" in d:
        del d["curves"]
    return d


def process_source(job: SourceJob) -> SourceOutcome:
    """Returns what became of one source, leaving its sidecar and part tar in the work folder.

    The source is decoded only when its measures (for these settings) or
    its kept clips are missing. A file that cannot be read (an OS error) is
    a failed outcome, retried by the next build; only the decoder's verdict
    on the file's bytes is stored as a rejection.
    """
    t0 = time.perf_counter()
    try:
        sidecar = read_sidecar(sidecar_path(job))
        cut = 0
        if sidecar is None or sidecar.get("key") != measure_key(job.settings):
            sidecar, cut = _measure(job)
        windows = sidecar["windows"]
        rejected = (sidecar.get("rejected") or {}).get("check", "")
        kept = [] if rejected else select(windows, judge(windows, job.target), source_id=job.source_id, settings=job.settings)
        if kept:
            cut += _complete_part(
                job, {clip_key(job.source_id, windows[i]["start_slot"]): windows[i]["start_slot"] for i in kept}
            )
    except ReadError as e:
        return failed(job, f"{e.reason}: the next build tries again")
    return SourceOutcome(
        job.source_id, "done", windows=len(windows), kept=len(kept), cut=cut, rejected=rejected, seconds=time.perf_counter() - t0
    )


# ----------------------------------------------------------------------------- measure (the first pass)


def _rejection(job: SourceJob, *, check: str, value, threshold, reason: str, facts: dict | None = None) -> dict:
    """Returns the sidecar of a source rejected as a whole."""
    return {
        "source_id": job.source_id,
        "key": measure_key(job.settings),
        "facts": facts or {},
        "rejected": {"check": check, "value": value, "threshold": threshold, "reason": reason},
        "windows": [],
    }


def _preflight(job: SourceJob, source: Path) -> tuple[dict, dict | None]:
    """Returns (facts, None) if the source can be cut, else (facts, the sidecar of its rejection)."""
    clip = job.settings.clip
    try:
        facts = probe(source)
    except MediaError as e:
        return {}, _rejection(job, check="decode", value="", threshold="", reason=f"unreadable: {e.reason}")
    if not facts["has_video"]:
        return facts, _rejection(
            job,
            check="streams",
            value="no video",
            threshold="video+audio",
            facts=facts,
            reason="no video stream: only a video with sound can be cut into clips",
        )
    if not facts["has_audio"]:
        return facts, _rejection(
            job,
            check="streams",
            value="no audio",
            threshold="video+audio",
            facts=facts,
            reason="no audio stream: the sound conditions need one; drop it or re-fetch with audio",
        )
    short = min(facts["width"], facts["height"])
    if short < clip.size:
        return facts, _rejection(
            job,
            check="size",
            value=short,
            threshold=clip.size,
            facts=facts,
            reason=f"short side {short} px < {clip.size} px: clips are never upscaled",
        )
    return facts, None


def _measure(job: SourceJob) -> tuple[dict, int]:
    """Returns (the sidecar, clips cut) after one decoding pass that measures every window of a source.

    Windows that pass the target's checks are cut on the way (unless only a
    random K of them will be kept: those are known at the end). The sidecar
    is written last: a sidecar on disk means the measuring finished.
    """
    with job.at(job.path).local() as source:
        return _measure_file(job, source)


def _measure_file(job: SourceJob, source: Path) -> tuple[dict, int]:
    work = job.at(job.work_dir)
    side = sidecar_path(job)
    facts, rejected = _preflight(job, source)
    if rejected is not None:
        side.write_text(json.dumps(rejected))
        return rejected, 0
    cut_on_the_way = not job.settings.max_clips_per_source
    part = part_path(job)
    light: list[dict] = []  # every window's start and scores: what judging needs, without curves or sheets
    try:
        with ShardWriter(part) as sink, _SidecarWriter(side, work=work, source_id=job.source_id) as out:
            with GridReader(source, clip=job.settings.clip) as reader:
                notes = {"first_slot": reader.first_slot}
                fingerprint = _FingerprintTap(reader.first_slot, fps=job.settings.clip.fps)
                for start, frames, audio, small in _windows(fingerprint.tap(reader.slots()), job.settings, shrunk=True):
                    window = _measure_window(reader, start=start, frames=frames, audio=audio, small=small, settings=job.settings)
                    if cut_on_the_way and not judge([window], job.target)[0]:
                        sink.add(clip_key(job.source_id, start), _encode(frames, audio, job.settings))
                    out.add(window, sheet=_sheet(frames))
                    light.append({k: window[k] for k in ("start_slot", "start_s", "scores")})
                notes.update(end_slot=fingerprint.end_slot, decode_error=reader.error, fingerprint=fingerprint.result())
            sidecar = {
                "source_id": job.source_id,
                "key": measure_key(job.settings),
                "facts": facts,
                "notes": notes,
                "rejected": None if light else _too_short(notes, job.settings),
            }
            out.finish(sidecar)
            cut = sink.count
    except MediaError as e:
        rejected = _rejection(job, check="decode", value="", threshold="", reason=f"unreadable: {e.reason}", facts=facts)
        side.write_text(json.dumps(rejected))
        return rejected, 0
    if not cut:
        part.unlink(missing_ok=True)
    return {**sidecar, "windows": light}, cut


def _too_short(notes: dict, settings: BuildSettings) -> dict:
    """Returns the rejection of a source that gave no whole window."""
    clip = settings.clip
    usable = max(0, notes["end_slot"] - notes["first_slot"]) / clip.fps
    if notes.get("decode_error"):
        return {
            "check": "decode",
            "value": round(usable, 3),
            "threshold": clip.seconds,
            "reason": f"{notes['decode_error']} before a whole window was read",
        }
    return {
        "check": "duration",
        "value": round(usable, 3),
        "threshold": clip.seconds,
        "reason": f"only {usable:.2f} s with both picture and sound: a clip needs {clip.seconds:g} s",
    }


def _measure_window(
    reader: GridReader, *, start: int, frames: np.ndarray, audio: np.ndarray, small: checks.SmallFrames, settings: BuildSettings
) -> dict:
    """Returns one window's record: start, scores (the checks' and the decode's) and curves."""
    clip = settings.clip
    m = checks.measure_window(frames, audio, clip=clip, small=small)
    t0, t1 = start / clip.fps, (start + clip.frames) / clip.fps
    # a skipped packet damages what follows it until the next keyframe: look back a little
    m["scores"]["decode_errors"] = float(sum(t0 - 1.0 <= t < t1 for t in reader.error_times))
    m["scores"]["audio_gap_ms"] = 1000.0 * reader.audio_gap_seconds(t0, t1)
    return {"start_slot": start, "start_s": start / clip.fps, **m}


def _windows(
    slots: Iterator[Slot], settings: BuildSettings, *, only: set[int] | None = None, shrunk: bool = False
) -> Iterator[tuple[int, np.ndarray, np.ndarray, checks.SmallFrames | None]]:
    """Yields (start slot, frames, audio, small frames) of every whole window in a stream of slots, as its last slot arrives.

    Windows start every stride from the first slot (overlapping strides fill
    several at once), or only at the start slots in `only`, and the stream
    is left as soon as the last of those is whole. With `shrunk`, each frame
    is also shrunk for the checks as it arrives (else small frames is None).
    The arrays are reused: use them before asking for the next window.
    """
    clip = settings.clip
    n, spf, size = clip.frames, clip.samples_per_frame, clip.size
    stride = stride_slots(settings)
    Arrays = tuple[np.ndarray, np.ndarray, checks.SmallFrames | None]
    filling: dict[int, Arrays] = {}  # start slot -> (frames, audio, small frames) being filled
    spare: list[Arrays] = []
    next_start = None
    for slot in slots:
        k = slot.index
        if next_start is None:
            next_start = k
        if only is not None and k >= max(only, default=-1) + n:
            return
        if k == next_start:
            if only is None or k in only:
                filling[k] = (
                    spare.pop()
                    if spare
                    else (
                        np.empty((n, size, size, 3), np.uint8),
                        np.empty(n * spf, np.float32),
                        checks.SmallFrames(n, size=size) if shrunk else None,
                    )
                )
            next_start += stride
        first: tuple[checks.SmallFrames, int] | None = None  # the window that shrank this slot's frame, and where
        for start in list(filling):
            frames, audio, small = filling[start]
            i = k - start
            frames[i] = slot.frame
            audio[i * spf : (i + 1) * spf] = slot.audio
            if small is not None:
                if first is None:
                    small.add(i, slot.frame)
                    first = (small, i)
                else:
                    small.copy_from(i, *first)
            if i == n - 1:
                yield start, frames, audio, small
                spare.append(filling.pop(start))


class _FingerprintTap:
    """Passes slots through, keeping what the near-duplicate fingerprint needs (a frame a second, the sound of the first 10 s)."""

    def __init__(self, first_slot: int, *, fps: int):
        self.first, self.fps = first_slot, fps
        self.end_slot = first_slot
        self._frames: list[np.ndarray] = []
        self._audio: list[np.ndarray] = []

    def tap(self, slots: Iterator[Slot]) -> Iterator[Slot]:
        for slot in slots:
            i = slot.index - self.first
            if i < FINGERPRINT_SLOTS:
                self._audio.append(slot.audio)
                if i % self.fps == 0:
                    self._frames.append(slot.frame.copy())
            self.end_slot = slot.index + 1
            yield slot

    def result(self) -> dict | None:
        """Returns the source's fingerprint (None if no slot was read)."""
        if not self._frames:
            return None
        return dedup.fingerprint(self._frames, np.concatenate(self._audio))


class _SidecarWriter:
    """Writes a sidecar as its windows are measured: each window's curves straight to disk, its sheet as a JPEG.

    The file appears (atomically) only on `finish`; a source that stops
    half-way leaves no sidecar, so it is measured again.
    """

    def __init__(self, path: Location, *, work: Location, source_id: str):
        self.work, self.source_id = work, source_id
        self._ctx = path.writing()
        self._file = None
        self._count = 0

    def __enter__(self) -> "_SidecarWriter":
        self._file = open(self._ctx.__enter__(), "w", encoding="utf-8")
        self._file.write('{"windows": [')
        return self

    def add(self, window: dict, *, sheet: np.ndarray) -> None:
        rel = f"{self.source_id}.sheets/{window['start_slot']:07d}.jpg"
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if self.work.is_local:
            # a sheet only illustrates the report: a plain write, no fsync per window
            path = self.work.path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpg.tobytes())
        else:
            (self.work / rel).write_bytes(jpg.tobytes())
        self._file.write(("," if self._count else "") + json.dumps({**window, "sheet": rel}))
        self._count += 1

    def finish(self, rest: dict) -> None:
        """Writes the sidecar's other keys; the file is renamed into place when the block ends."""
        self._file.write("]")
        for key, value in rest.items():
            self._file.write(f", {json.dumps(key)}: {json.dumps(value)}")
        self._file.write("}")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        self._ctx.__exit__(exc_type, exc, tb)


def _sheet(frames: np.ndarray) -> np.ndarray:
    """Returns a contact sheet of the paper's Figure 2 frames (every 20), small, side by side."""
    tiles = [
        cv2.resize(frames[i], (SHEET_SIZE, SHEET_SIZE), interpolation=cv2.INTER_AREA) for i in SHEET_FRAMES if i < len(frames)
    ]
    return np.concatenate(tiles, axis=1)


def _encode(frames: np.ndarray, audio: np.ndarray, settings: BuildSettings) -> dict[str, bytes]:
    mp4, flac = encode_clip(frames, audio, clip=settings.clip)
    return {"mp4": mp4, "flac": flac}


# ----------------------------------------------------------------------------- cut (the second pass, when needed)


def locate_clips(job: SourceJob, keys: set[str]) -> dict[str, tuple[Location, dict]]:
    """Returns where the clips already cut for these keys lie: key -> (tar, its index entry), part tar first."""
    found: dict[str, tuple[Location, dict]] = {}
    for path in [part_path(job)] + ([job.at(job.shard)] if job.shard else []):
        if len(found) < len(keys) and path.exists():
            try:
                index = index_members(path)
            except (OSError, EOFError, tarfile.TarError) as e:
                log.warning("%s: unreadable, cutting again: %s", path, e)
                continue
            for k in keys - set(found):
                entry = {ext: v for ext, v in index.get(k, {}).items() if ext in ("mp4", "flac")}
                if len(entry) == 2:
                    found[k] = (path, entry)
    return found


def _complete_part(job: SourceJob, wanted: dict[str, int]) -> int:
    """Returns how many clips were cut so that every wanted clip (key -> start slot) is in the part or the shard.

    Clips missing from both (a threshold let more windows in, the part was
    lost) are cut in a second pass over the source, which stops at the last
    one; the part is then rewritten with every wanted clip, in time order,
    one clip in memory at a time.
    """
    have = locate_clips(job, set(wanted))
    missing = {slot for key, slot in wanted.items() if key not in have}
    if not missing:
        return 0
    with tempfile.TemporaryDirectory(prefix="s2v-recut-") as tmp:
        recut = Location(Path(tmp) / f"{job.source_id}.recut.tar")
        with job.at(job.path).local() as source, ShardWriter(recut) as sink, GridReader(source, clip=job.settings.clip) as reader:
            for start, frames, audio, _ in _windows(reader.slots(), job.settings, only=missing):
                sink.add(clip_key(job.source_id, start), _encode(frames, audio, job.settings))
        index = index_members(recut)
        have.update({k: (recut, index[k]) for k in wanted if k in index})
        with ShardWriter(part_path(job)) as part:
            for key in sorted(wanted, key=wanted.get):
                if key in have:
                    part.add(key, read_sample(*have[key]))
    return sink.count
