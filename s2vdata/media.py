"""The only module that talks to FFmpeg (through PyAV): probe, decode on the presentation timeline, encode.

Time alignment (docs/design.md section 4): everything is placed on the source's
presentation timeline (the clock ffprobe shows as pts_time). Slot k of the
30 fps grid is the instant k/30 s; it shows the source frame on screen at
that instant and owns the audio samples [1470*k, 1470*(k+1)) of the
44.1 kHz timeline, whose sample n sounds at n/44100 s.
"""

from __future__ import annotations

import collections
import io
import itertools
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np
import soundfile as sf

from s2vdata.config import CLIP, ClipSpec

log = logging.getLogger(__name__)

# Bumped whenever decoding places frames or samples differently: build measures and cuts such sources again.
DECODE_VERSION = "3"

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".3gp", ".ogv", ".wmv"}

# A hole in an audio stream longer than this restarts the resampler at the new time instead of
# feeding it the silence (a late second half of a recording costs nothing to skip).
_REANCHOR_S = 1.0
# numpy types of FFmpeg's sample formats (planar formats end in "p")
_SAMPLE_DTYPES = {"u8": "uint8", "s16": "int16", "s32": "int32", "s64": "int64", "flt": "float32", "dbl": "float64"}
_EPS = 1e-6
# Containers that keep time in milliseconds (Matroska, WebM, FLV) round a frame at 80/30 s to
# 2.667 s: a frame stamped up to half a millisecond after a grid instant is on screen at it.
_TIMESTAMP_SLACK = 0.0006
# Threads each decoder and each scaling graph may use (0: FFmpeg's choice, one per core). A build that runs one
# worker per core sets 1: FFmpeg's threads then only add their own overhead (measured: -17 to -35% of the decode's
# CPU, -27% of the scale's), while the other workers keep the cores busy. The pixels are the same either way.
_THREADS = 0


def set_threads(n: int) -> None:
    """Sets the threads each video decoder and scaling graph of this process uses from now on (0: FFmpeg's choice)."""
    global _THREADS
    _THREADS = max(0, int(n))


class MediaError(Exception):
    """A file that cannot be opened or decoded; `reason` is one line meant for a registry or rejects row."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ReadError(Exception):
    """A file that could not be read: an OS error (a network filesystem hiccup, a file gone), not a verdict on its bytes.

    Never stored as a rejection: the next build tries the file again.
    """

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _reason(err: Exception) -> str:
    """Returns a one-line reason for a PyAV/FFmpeg error."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.replace(",", ";")[:200]


def _open(path: Path | str) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except OSError as e:  # PyAV's errno errors (EIO, ENOENT, EACCES, timeouts) are OSErrors too
        raise ReadError(path, f"cannot read: {_reason(e)}") from e
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise MediaError(path, f"cannot open: {_reason(e)}") from e


def _stream_start(stream) -> float | None:
    if stream.start_time is None:
        return None
    return float(stream.start_time * stream.time_base)


def probe(path: Path | str) -> dict:
    """Returns the stream facts of a media file; raises MediaError if no decoder can open it, ReadError if it cannot be read.

    Keys: duration_s, width, height (as displayed, rotation applied), fps,
    audio_rate, audio_channels, has_video, has_audio, rotation, video_start_s,
    audio_start_s, format.
    """
    with _open(path) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        info = {
            "format": c.format.name,
            "has_video": v is not None,
            "has_audio": a is not None,
            "duration_s": float(c.duration / av.time_base) if c.duration else None,
            "width": None,
            "height": None,
            "fps": None,
            "rotation": 0,
            "audio_rate": None,
            "audio_channels": None,
            "video_start_s": None,
            "audio_start_s": None,
        }
        if v is not None:
            rot = 0
            w, h = v.codec_context.width, v.codec_context.height
            # the display matrix reaches frames, not always the stream: read it off the first frame
            try:
                for frame in c.decode(v):
                    rot = _frame_rotation(frame)
                    w, h = frame.width, frame.height
                    break
            except OSError as e:
                raise ReadError(path, f"cannot read: {_reason(e)}") from e
            except av.FFmpegError as e:
                raise MediaError(path, f"cannot decode video: {_reason(e)}") from e
            if rot in (90, 270):
                w, h = h, w
            rate = v.average_rate or v.guessed_rate or v.base_rate
            info.update(width=w, height=h, rotation=rot, fps=float(rate) if rate else None, video_start_s=_stream_start(v))
        if a is not None:
            info.update(
                audio_rate=a.codec_context.sample_rate or a.rate,
                audio_channels=a.codec_context.channels,
                audio_start_s=_stream_start(a),
            )
        if v is None and a is None:
            raise MediaError(path, "no video or audio stream")
    return info


def _frame_rotation(frame: av.VideoFrame) -> int:
    """Returns how far a player turns this frame counterclockwise, in degrees (0, 90, 180, 270)."""
    try:
        rot = frame.rotation
    except (AttributeError, ValueError):
        rot = 0
    return int(round((rot or 0) / 90.0)) * 90 % 360


# ----------------------------------------------------------------------------- decode on the grid


class Squarer:
    """Turns decoded frames into the displayed picture's centre square, size x size RGB, as FFmpeg filters do.

    One filter graph per frame geometry: crop to the centre square, scale it
    with swscale's area filter in the frame's own pixel format, then convert
    to RGB (the frame's own colour matrix and range) at the clip's size; then
    the frame's display rotation. The same frame gives the same bytes every time.
    """

    def __init__(self, size: int):
        self.size = size
        self._graph = None
        self._geometry = None

    def _build(self, frame: av.VideoFrame) -> None:
        w, h = frame.width, frame.height
        s = min(w, h)
        # even offsets keep 4:2:0 chroma on its own samples
        x, y = (w - s) // 2 // 2 * 2, (h - s) // 2 // 2 * 2
        graph = av.filter.Graph()
        if _THREADS:
            graph.threads = _THREADS
        chain = [
            graph.add_buffer(width=w, height=h, format=frame.format.name, time_base=frame.time_base or Fraction(1, 30)),
            graph.add("crop", f"{s}:{s}:{x}:{y}"),
            graph.add("scale", f"{self.size}:{self.size}:flags=area"),
            # RGB in a second pass at the clip's size: swscale's area filter straight to RGB scales the chroma
            # at full resolution, 2x the cost for detail the clip's 4:2:0 encode drops again (mean 1 level apart)
            graph.add("scale", "flags=bilinear"),
            graph.add("format", "rgb24"),
            graph.add("buffersink"),
        ]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        self._graph, self._geometry = graph, (w, h, frame.format.name)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        """Returns the displayed centre square of a frame, (size, size, 3) uint8 RGB."""
        if self._geometry != (frame.width, frame.height, frame.format.name):
            self._build(frame)
        self._graph.push(frame)
        img = self._graph.pull().to_ndarray()
        rot = _frame_rotation(frame)
        return np.ascontiguousarray(np.rot90(img, k=rot // 90)) if rot else img


class _Decoder:
    """Decodes one stream packet by packet, as a player does: a packet the decoder refuses is
    skipped and its time noted; too many, or a demuxer that cannot go on, end the stream."""

    MAX_ERRORS = 50

    def __init__(self, container, stream, *, path, kind: str):
        self.path, self.kind = path, kind
        self.error: str | None = None  # the first error met, one line
        self.error_times: list[float] = []  # presentation times of the packets that failed
        self._iter = self._frames(container, stream)

    def __iter__(self):
        return self._iter

    def _note(self, t: float, err: Exception, *, fatal: bool = False) -> None:
        self.error_times.append(t)
        if self.error is None:
            self.error = f"{self.kind} decode error at {t:.2f} s: {_reason(err)}"
            log.warning("%s: %s", self.path, self.error)
        if fatal:
            self.error = f"{self.kind} stream unreadable after {t:.2f} s: {_reason(err)}"

    def _frames(self, container, stream):
        t = 0.0
        # a demuxed packet's time base is its stream's: its ints once, not a Fraction per packet (int / int is exact
        # to the float, as float(Fraction) is)
        tb = stream.time_base
        num, den = (tb.numerator, tb.denominator) if tb else (None, None)
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and num is not None:
                    t = packet.pts * num / den
                try:
                    frames = packet.decode()
                except (av.FFmpegError, ValueError) as e:
                    self._note(t, e)
                    if len(self.error_times) > self.MAX_ERRORS:
                        self._note(t, e, fatal=True)
                        return
                    continue
                yield from frames
        except OSError as e:
            # the file could not be read at t: the disk or network, not the bytes
            raise ReadError(self.path, f"cannot read {self.kind} after {t:.2f} s: {_reason(e)}") from e
        except av.FFmpegError as e:
            self._note(t, e, fatal=True)


class _VideoCursor:
    """Walks a video stream in presentation order and answers: which frame is on screen at time t."""

    def __init__(self, path: Path | str, *, size: int):
        self.path = path
        self.size = size
        self.container = _open(path)
        if not self.container.streams.video:
            raise MediaError(path, "no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        if _THREADS:
            self.stream.codec_context.thread_count = _THREADS
        self.squarer = Squarer(size)
        self.decoder = _Decoder(self.container, self.stream, path=path, kind="video")
        self._frames = iter(self.decoder)
        self._current: av.VideoFrame | None = None
        self._current_t = -math.inf
        self._current_img: np.ndarray | None = None
        self._next: av.VideoFrame | None = None
        self._next_t = math.inf
        self.last_end = -math.inf
        self._advance()
        self.start = self._next_t

    def _pull(self) -> av.VideoFrame | None:
        for frame in self._frames:
            if frame.time is not None:
                return frame
        return None

    def _advance(self) -> None:
        frame = self._pull()
        if frame is None:
            self._next, self._next_t = None, math.inf
            return
        t = float(frame.time)
        dur = float(frame.duration * frame.time_base) if frame.duration else 0.0
        if dur <= 0:
            rate = self.stream.average_rate or self.stream.guessed_rate
            dur = 1.0 / float(rate) if rate else 1.0 / 30
        self.last_end = max(self.last_end, t + dur)
        self._next, self._next_t = frame, t

    def at(self, t: float) -> np.ndarray | None:
        """Returns the displayed square frame on screen at time t (None past the end of the stream)."""
        while self._next is not None and self._next_t <= t + _TIMESTAMP_SLACK:
            self._current, self._current_t, self._current_img = self._next, self._next_t, None
            self._advance()
        if self._current is None:
            return None
        if self._next is None and t >= self.last_end - _EPS:
            return None
        if self._current_img is None:
            self._current_img = self.squarer(self._current)
        return self._current_img

    def close(self) -> None:
        self.container.close()


class _AudioCursor:
    """Walks an audio stream, resampled to mono at `rate`, on the absolute sample timeline n/rate.

    The timeline follows the stream's timestamps, whatever the packets do: a
    frame that starts after the previous one ended (a hole: dropped packets
    in a phone or screen recording, a live stream) is preceded by silence,
    and one that starts before it ended (an overlap) loses the samples it
    repeats, so every later sample still sounds at its own time. Holes are
    filled before the resampler, which then runs on one continuous signal and
    stays exact across them; a hole longer than _REANCHOR_S restarts it at
    the new time instead (the gap reads as silence and costs nothing).

    The buffer holds only resampled samples not yet read (plus one frame
    ahead): `read` drops every chunk that ends before the position it reads,
    so memory does not depend on the stream's length or sample rate.
    """

    def __init__(self, path: Path | str, *, rate: int):
        self.path = path
        self.rate = rate
        self.container = _open(path)
        if not self.container.streams.audio:
            raise MediaError(path, "no audio stream")
        self.stream = self.container.streams.audio[0]
        self._tick = float(self.stream.time_base) if self.stream.time_base else 0.0
        self.decoder = _Decoder(self.container, self.stream, path=path, kind="audio")
        self._frames = iter(self.decoder)
        self._chunks: collections.deque[tuple[int, np.ndarray]] = collections.deque()  # (first sample index, samples)
        self._end = 0  # one past the last resampled sample
        self._eof = False
        self.gaps: collections.deque[tuple[float, float]] = (
            collections.deque()
        )  # (time s, seconds of silence inserted; negative: overlap dropped)
        # the resampler's run: it started at sample _seg_out0 on the output timeline and at time _seg_t0 of
        # the input; _seg_in input samples went into it (silence included), _seg_out samples came out
        self._resampler: av.AudioResampler | None = None
        self._template: av.AudioFrame | None = None
        self._seg_t0 = 0.0
        self._seg_in = 0
        self._seg_out0 = 0
        self._seg_out = 0
        self._fill_until(1)
        self.start_n: int | None = self._chunks[0][0] if self._chunks else None

    # -- input side: follow the timestamps

    def _new_run(self, frame: av.AudioFrame, t: float) -> None:
        self._flush()
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        self._template = frame
        self._seg_t0, self._seg_in = t, 0
        self._seg_out0, self._seg_out = round(t * self.rate), 0

    def _flush(self) -> None:
        if self._resampler is not None:
            self._emit(self._resampler.resample(None))
            self._resampler = None

    def _emit(self, frames: list) -> None:
        for out in frames:
            # the resampler's output is packed float mono: its one plane is the samples (to_ndarray stacks planes)
            samples = np.frombuffer(out.planes[0], np.float32, count=out.samples).copy()
            if samples.size:
                start = self._seg_out0 + self._seg_out
                self._chunks.append((start, samples))
                self._seg_out += samples.size
                self._end = max(self._end, start + samples.size)

    def _feed(self, frame: av.AudioFrame) -> None:
        self._seg_in += frame.samples
        self._emit(self._resampler.resample(frame))

    def _tolerance(self, frame: av.AudioFrame) -> float:
        """Returns how far (s) a frame's time may be from where the previous one ended and still follow it."""
        # a timestamp is exact to one tick of its time base (Matroska keeps milliseconds), plus half a sample;
        # a decoded frame's time base is its stream's
        return self._tick + 0.5 / frame.sample_rate

    def _take(self, frame: av.AudioFrame) -> None:
        t = None if frame.time is None else float(frame.time)
        if self._resampler is None:
            self._new_run(frame, t if t is not None else 0.0)
            self._feed(frame)
            return
        tpl = self._template
        if (frame.sample_rate, frame.format.name, frame.layout.name) != (tpl.sample_rate, tpl.format.name, tpl.layout.name):
            # the stream changed its rate or channels: a new run at the frame's own time
            expected = self._seg_t0 + self._seg_in / tpl.sample_rate
            self._new_run(frame, t if t is not None else expected)
            self._feed(frame)
            return
        if t is None:
            self._feed(frame)
            return
        sr = frame.sample_rate
        off = t - (self._seg_t0 + self._seg_in / sr)
        tolerance = self._tolerance(frame)
        if off > _REANCHOR_S:
            self.gaps.append((t - off, off))
            self._new_run(frame, t)
        elif off > tolerance:
            silence = round(off * sr)
            self.gaps.append((t - off, silence / sr))
            self._feed(_audio_frame_like(frame, None, samples=silence, pts_time=t - off))
        elif off < -tolerance:
            drop = min(round(-off * sr), frame.samples)
            self.gaps.append((t, -drop / sr))
            if drop == frame.samples:
                return
            frame = _audio_frame_like(frame, frame.to_ndarray(), skip=drop, pts_time=t + drop / sr)
        self._feed(frame)

    def _decode_more(self) -> bool:
        if self._eof:
            return False
        frame = next(self._frames, None)
        if frame is None:
            self._eof = True
            self._flush()
            return False
        if frame.samples:
            self._take(frame)
        return True

    def _fill_until(self, n_end: int) -> None:
        while (not self._chunks or self._end < n_end) and self._decode_more():
            pass

    # -- output side: the absolute sample timeline

    @property
    def end_n(self) -> int:
        """Returns the absolute index one past the last sample (only final once the stream is exhausted)."""
        return self._end

    @property
    def buffered(self) -> int:
        """Returns how many resampled samples the cursor holds."""
        return sum(c.size for _, c in self._chunks)

    def read(self, n0: int, count: int) -> np.ndarray | None:
        """Returns samples [n0, n0+count) of the absolute timeline (silence where the stream has none), None past the end.

        Reads move forward: everything before n0 is dropped.
        """
        self._fill_until(n0 + count)
        if n0 + count > self._end:
            return None
        while self._chunks and self._chunks[0][0] + self._chunks[0][1].size <= n0:
            self._chunks.popleft()
        out = np.zeros(count, np.float32)
        for start, data in self._chunks:
            if start >= n0 + count:
                break
            lo, hi = max(start, n0), min(start + data.size, n0 + count)
            if hi > lo:
                out[lo - n0 : hi - n0] = data[lo - start : hi - start]
        return out

    def close(self) -> None:
        self.container.close()


def _audio_frame_like(
    frame: av.AudioFrame, data: np.ndarray | None, *, samples: int = 0, skip: int = 0, pts_time: float
) -> av.AudioFrame:
    """Returns a frame in `frame`'s format: `samples` of silence (data None), or `data` without its first `skip` samples."""
    fmt, channels = frame.format, len(frame.layout.channels)
    if data is None:
        dtype = np.dtype(_SAMPLE_DTYPES[fmt.name.rstrip("p")])
        # unsigned 8-bit sound is silent at its midpoint
        data = np.full((channels, samples) if fmt.is_planar else (1, samples * channels), 128 if dtype == np.uint8 else 0, dtype)
    elif skip:
        data = data[:, skip:] if fmt.is_planar else data[:, skip * channels :]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    if frame.time_base is not None:
        out.time_base = frame.time_base
        out.pts = round(pts_time / float(frame.time_base))
    return out


@dataclass
class Slot:
    """One slot of the 30 fps grid: the frame on screen and the audio samples it owns."""

    index: int  # slot k: time k/fps on the source's presentation timeline
    frame: np.ndarray  # (size, size, 3) uint8 RGB
    audio: np.ndarray  # (samples_per_frame,) float32 mono


class GridReader:
    """Decodes a source once, streaming, and yields it slot by slot on the clip grid.

    Memory stays bounded by one decoded frame and a few audio packets,
    whatever the length of the source: video and audio are read by two
    cursors over the same file, so bad interleaving costs no buffering.
    """

    def __init__(self, path: Path | str, *, clip: ClipSpec = CLIP):
        self.path = Path(path)
        self.clip = clip
        self.video = _VideoCursor(path, size=clip.size)
        try:
            self.audio = _AudioCursor(path, rate=clip.sample_rate)
        except MediaError:
            self.video.close()
            raise
        if self.video.start == math.inf:
            self.close()
            raise MediaError(path, self.video.decoder.error or "video stream has no decodable frame")
        if self.audio.start_n is None:
            self.close()
            raise MediaError(path, self.audio.decoder.error or "audio stream has no decodable sample")

    @property
    def first_slot(self) -> int:
        """Returns the first slot at which both streams are present."""
        start = max(self.video.start, self.audio.start_n / self.clip.sample_rate)
        return math.ceil(start * self.clip.fps - _EPS)

    @property
    def error(self) -> str | None:
        """Returns the first decode error met so far, if any."""
        return self.video.decoder.error or self.audio.decoder.error

    @property
    def audio_gaps(self) -> list[tuple[float, float]]:
        """Returns the holes and overlaps met (and not forgotten) in the audio: (time s, seconds; negative: an overlap)."""
        return list(self.audio.gaps)

    def audio_gap_seconds(self, t0: float, t1: float) -> float:
        """Returns the seconds of sound missing or repeated at times in [t0, t1); what lies before t0 is forgotten.

        Windows are asked for in order of their start, so the list stays as
        short as the gaps of one window, however long the source.
        """
        gaps = self.audio.gaps
        while gaps and gaps[0][0] < t0:
            gaps.popleft()
        return sum(abs(d) for t, d in gaps if t < t1)

    @property
    def error_times(self) -> list[float]:
        """Returns the presentation times (s) of the packets that failed to decode so far, sorted."""
        return sorted(self.video.decoder.error_times + self.audio.decoder.error_times)

    def slots(self) -> Iterator[Slot]:
        """Yields slots from first_slot until either stream ends."""
        spf = self.clip.samples_per_frame
        k = self.first_slot
        while True:
            frame = self.video.at(k / self.clip.fps)
            if frame is None:
                return
            audio = self.audio.read(k * spf, spf)
            if audio is None:
                return
            yield Slot(k, frame, audio)
            k += 1

    def close(self) -> None:
        self.video.close()
        self.audio.close()

    def __enter__(self) -> "GridReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- encode


def _video_stream(container, *, codec: str, fps: float, width: int, height: int, quality: int, threads: int):
    """Returns a new video stream; `quality` is x264's constant quantiser (libvpx's CRF level): lower is better."""
    rate = Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
        # a constant quantiser, not CRF: CRF's macroblock-tree lookahead (in its AVX-512 code)
        # gave other bytes for the same pictures from one call to the next
        stream.options = {"qp": str(quality), "preset": "veryfast"}
    elif codec in ("libvpx", "libvpx-vp9"):
        stream.options = {"crf": str(max(quality, 4)), "b": "0"}
    else:
        stream.bit_rate = 4_000_000
    if threads:
        stream.codec_context.thread_count = threads
    return stream


def _yuv_frame(img: np.ndarray) -> av.VideoFrame:
    """Returns an RGB array as a yuv420p frame (BT.601, limited range), the same bytes every time.

    swscale picks its SIMD path from the memory alignment of the picture and
    the paths round differently (seen: the same picture at four addresses gave
    two results); OpenCV's conversion is bit-exact, and every byte of the
    frame, line padding included, is written.
    """
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format="yuv420p")
    i420 = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2YUV_I420).reshape(-1)
    frame = av.VideoFrame(w, h, "yuv420p")
    planes = (
        i420[: w * h].reshape(h, w),
        i420[w * h : w * h * 5 // 4].reshape(h // 2, w // 2),
        i420[w * h * 5 // 4 :].reshape(h // 2, w // 2),
    )
    for plane, data in zip(frame.planes, planes):
        rows, width = data.shape
        if plane.line_size == width:
            plane.update(data)
            continue
        # the line padding repeats each row's last byte (what np.pad's "edge" gives, without its cost)
        padded = np.empty((rows, plane.line_size), np.uint8)
        padded[:, :width] = data
        padded[:, width:] = data[:, -1:]
        plane.update(padded)
    return frame


def _to_float_audio(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    a = a.astype(np.float32, copy=False)
    return a.reshape(-1, 1) if a.ndim == 1 else a


def write_video(
    path: Path | str,
    frames: Iterable[np.ndarray],
    audio: np.ndarray | None = None,
    *,
    fps: float,
    sample_rate: int = 44_100,
    quality: int = 18,
    vcodec: str | None = None,
    acodec: str | None = None,
    frame_times: Iterable[float] | None = None,
    video_start_s: float = 0.0,
    audio_start_s: float = 0.0,
    rotation: int = 0,
    threads: int = 0,
) -> Path:
    """Returns `path` after writing a video file (container from the extension) with an optional sound track.

    frames: (H, W, 3) uint8 RGB; audio: (n,) or (n, channels) float32 in [-1, 1]
    (or int16). frame_times gives each frame's presentation time (variable frame
    rate); otherwise frame i is at video_start_s + i/fps. rotation (degrees
    counterclockwise) is written as display-matrix metadata, as phones do.
    """
    path = Path(path)
    ext = path.suffix.lower()
    vcodec = vcodec or {".webm": "libvpx"}.get(ext, "libx264")
    acodec = acodec or {".webm": "libopus", ".mkv": "aac"}.get(ext, "aac")
    options = {"movflags": "+faststart"} if ext in (".mp4", ".mov", ".m4v") else {}
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    tmp = path.with_name(f".{path.name}.partial{ext}")
    container = av.open(str(tmp), "w", options=options)
    try:
        vs = _video_stream(
            container, codec=vcodec, fps=fps, width=first.shape[1], height=first.shape[0], quality=quality, threads=threads
        )
        time_base = Fraction(1, 90_000) if frame_times is not None or video_start_s else 1 / Fraction(fps).limit_denominator(1001)
        vs.time_base = time_base
        vs.codec_context.time_base = time_base
        if rotation:
            vs.set_display_rotation(rotation)
        as_ = None
        if audio is not None:
            a = _to_float_audio(audio)
            layout = "mono" if a.shape[1] == 1 else ("stereo" if a.shape[1] == 2 else "5.1" if a.shape[1] == 6 else None)
            if layout is None:
                raise ValueError(f"{path}: cannot write {a.shape[1]} audio channels")
            as_ = container.add_stream(acodec, rate=sample_rate if acodec != "libopus" else 48_000, layout=layout)
        times = iter(frame_times) if frame_times is not None else None
        for i, img in enumerate(itertools.chain([first], it)):
            frame = _yuv_frame(img)
            t = next(times) if times is not None else video_start_s + i / fps
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            for packet in vs.encode(frame):
                container.mux(packet)
        for packet in vs.encode(None):
            container.mux(packet)
        if as_ is not None:
            if as_.rate != sample_rate:
                a = _resample_array(a, sample_rate, as_.rate)
            _encode_audio(container, as_, a, start_s=audio_start_s)
        container.close()
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def _resample_array(a: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Returns (n, ch) float32 audio resampled from src to dst Hz through FFmpeg's resampler."""
    layout = {1: "mono", 2: "stereo"}.get(a.shape[1], "5.1")
    res = av.AudioResampler(format="fltp", layout=layout, rate=dst)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(a.T), format="fltp", layout=layout)
    frame.sample_rate = src
    out = [f.to_ndarray() for f in res.resample(frame)] + [f.to_ndarray() for f in res.resample(None)]
    return np.concatenate(out, axis=1).T.astype(np.float32)


def _encode_audio(container, stream, a: np.ndarray, *, start_s: float) -> None:
    layout = stream.layout.name
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    frame_size = stream.codec_context.frame_size or 1024
    rate = stream.rate
    pts0 = round(start_s * rate)
    planar = fmt.endswith("p")
    for i in range(0, len(a), frame_size):
        chunk = a[i : i + frame_size]
        if len(chunk) < frame_size and stream.codec_context.frame_size:
            chunk = np.concatenate([chunk, np.zeros((frame_size - len(chunk), a.shape[1]), np.float32)])
        data = chunk.T if planar else chunk.reshape(1, -1)
        if fmt.startswith("s16"):
            data = np.clip(data * 32768, -32768, 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)
        frame.sample_rate = rate
        frame.pts = pts0 + i
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def audio_to_int16(audio: np.ndarray) -> np.ndarray:
    """Returns float audio in [-1, 1] as int16, rounded and clipped."""
    return np.clip(np.round(np.asarray(audio, np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def encode_clip(frames: np.ndarray, audio: np.ndarray, *, clip: ClipSpec = CLIP) -> tuple[bytes, bytes]:
    """Returns the (mp4, flac) bytes of one clip in the clip contract.

    The same arrays give the same bytes on any x86-64 machine (SSSE3 or newer)
    with the same library versions: x264 runs on one thread at a constant
    quantiser, the colour conversion is OpenCV's bit-exact one, and the muxer
    runs in bitexact mode.
    """
    frames = np.asarray(frames)
    if frames.shape != (clip.frames, clip.size, clip.size, 3) or frames.dtype != np.uint8:
        raise ValueError(
            f"clip frames must be ({clip.frames}, {clip.size}, {clip.size}, 3) uint8, got {frames.shape} {frames.dtype}"
        )
    if np.shape(audio) != (clip.samples,):
        raise ValueError(f"clip audio must be ({clip.samples},), got {np.shape(audio)}")
    with tempfile.TemporaryDirectory(prefix="s2v-clip-") as tmp:
        out = Path(tmp) / "clip.mp4"
        container = av.open(str(out), "w", options={"movflags": "+faststart", "fflags": "+bitexact"})
        try:
            vs = _video_stream(
                container, codec="libx264", fps=clip.fps, width=clip.size, height=clip.size, quality=clip.qp, threads=1
            )
            vs.codec_context.flags |= av.codec.context.Flags.bitexact
            tb = Fraction(1, clip.fps)
            vs.time_base = tb
            vs.codec_context.time_base = tb
            for i, img in enumerate(frames):
                frame = _yuv_frame(img)
                frame.pts = i
                frame.time_base = tb
                for packet in vs.encode(frame):
                    container.mux(packet)
            for packet in vs.encode(None):
                container.mux(packet)
        finally:
            container.close()
        mp4 = out.read_bytes()
    buf = io.BytesIO()
    sf.write(buf, audio_to_int16(audio), clip.sample_rate, format="FLAC", subtype="PCM_16")
    return mp4, buf.getvalue()


def decode_clip_video(mp4: bytes) -> np.ndarray:
    """Returns the frames of an encoded video (bytes) as (N, H, W, 3) uint8 RGB."""
    try:
        with av.open(io.BytesIO(mp4)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    except (av.FFmpegError, ValueError) as e:
        raise MediaError("<clip mp4>", f"cannot decode: {_reason(e)}") from e


def decode_clip_audio(flac: bytes) -> tuple[np.ndarray, int]:
    """Returns (samples float32 mono in [-1, 1], rate) of an encoded FLAC clip."""
    try:
        data, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise MediaError("<clip flac>", f"cannot decode: {e}") from e
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0], rate


def load_audio(path: Path | str, *, sample_rate: int = 44_100) -> np.ndarray:
    """Returns the whole first audio stream of any media file, resampled to mono float32 at `sample_rate`."""
    with _open(path) as c:
        if not c.streams.audio:
            raise MediaError(path, "no audio stream: give a sound file (WAV, FLAC, OGG, MP3, M4A) or a video with sound")
        res = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in c.decode(c.streams.audio[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in res.resample(frame)]
        except av.FFmpegError as e:
            raise MediaError(path, f"cannot decode audio: {_reason(e)}") from e
        chunks += [f.to_ndarray().reshape(-1) for f in res.resample(None)]
    if not chunks:
        raise MediaError(path, "audio stream holds no samples")
    return np.concatenate(chunks).astype(np.float32)
