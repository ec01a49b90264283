"""Known-answer sources for the alignment tests: a white flash and a click at the same instants."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s2vdata.media import write_video


def frame_times(*, fps: float | None, seconds: float, start: float, vfr_seed: int | None = None) -> np.ndarray:
    """Returns the presentation times of a source's frames: regular at fps, or irregular (variable frame rate)."""
    if vfr_seed is None:
        return start + np.arange(int(seconds * fps)) / fps
    rng = np.random.default_rng(vfr_seed)
    steps = rng.uniform(1 / 45, 1 / 18, size=int(seconds * 45))
    t = start + np.concatenate([[0.0], np.cumsum(steps)])
    # round to the 90 kHz clock the writer uses, so the known answers are exact
    return np.round(t[t < start + seconds] * 90_000) / 90_000


def make_source(
    path: Path,
    *,
    fps: float | None = 30.0,
    sample_rate: int = 44_100,
    seconds: float = 9.0,
    video_start: float = 0.0,
    audio_start: float = 0.0,
    size: tuple[int, int] = (400, 300),
    rotation: int = 0,
    vfr_seed: int | None = None,
    n_flashes: int = 5,
    seed: int = 0,
    audio: bool = True,
    silent: bool = False,
    still: bool = False,
    channels: int = 1,
    acodec: str | None = None,
    avoid: tuple[float, float] | None = None,
) -> list[float]:
    """Writes a source and returns the instants (s, presentation timeline) of its flash+click events.

    Each event is on a source frame instant: that frame (only) is white with a
    red square left of centre (so rotation shows), and a 10 ms click starts at
    the same instant.
    A moving grey bar keeps the picture from being still between events.
    No event falls in `avoid` (start, end), where a test damages the file.
    """
    times = frame_times(fps=fps, seconds=seconds, start=video_start, vfr_seed=vfr_seed)
    rng = np.random.default_rng(seed)
    lo = max(video_start, audio_start) + 0.3
    candidates = [
        t for t in times if lo < t < min(video_start, audio_start) + seconds - 0.3 and not (avoid and avoid[0] <= t < avoid[1])
    ]
    events: list[float] = []
    for t in rng.permutation(candidates) if n_flashes else []:
        # apart by 0.3 s at least: each event is told apart from the next
        if all(abs(t - e) > 0.3 for e in events):
            events.append(float(t))
        if len(events) == n_flashes:
            break
    events.sort()
    w, h = size
    ev = np.asarray(events)

    def frames():
        for i, t in enumerate(times):
            img = np.full((h, w, 3), 60, np.uint8)
            if not still:
                x = int((i * 7) % max(1, w - 40))
                img[h // 3 : h // 3 + 30, x : x + 40] = 120
            # a flash stays up for at least one grid slot (1/30 s), so every frame rate shows it
            if np.any((ev <= t + 1e-9) & (t < ev + 1 / 30 - 1e-9)):
                img[:] = 250
                img[h // 2 - 12 : h // 2 + 12, w // 4 - 15 : w // 4 + 15] = (255, 0, 0)
            yield img

    track = None
    if audio:
        n = int(seconds * sample_rate)
        track = np.random.default_rng(seed + 1).normal(0, 0.002, n).astype(np.float32)
        if silent:
            track[:] = 0
        else:
            for t in events:
                j = round((t - audio_start) * sample_rate)
                track[j : j + int(0.01 * sample_rate)] = 0.8
    if track is not None and channels > 1:
        # the clicks on the centre channel only (5.1: FL FR FC LFE BL BR), the rest a faint hiss
        multi = np.repeat(track[:, None] * 0.05, channels, axis=1)
        multi[:, 2 if channels >= 3 else 0] = track
        track = multi
    write_video(
        path,
        frames(),
        track,
        fps=fps or 30.0,
        sample_rate=sample_rate,
        frame_times=times if vfr_seed is not None else None,
        video_start_s=video_start,
        audio_start_s=audio_start,
        rotation=rotation,
        acodec=acodec,
    )
    return events


def flash_slots(frames: np.ndarray) -> list[int]:
    """Returns the indices of the frames that show a flash."""
    return [i for i, f in enumerate(frames) if f.mean() > 200]


def click_slots(audio: np.ndarray, *, spf: int = 1470) -> list[int]:
    """Returns the slots whose first loud sample starts a click (one slot per click)."""
    loud = np.flatnonzero(np.abs(audio) > 0.4)
    if not loud.size:
        return []
    starts = loud[np.concatenate([[True], np.diff(loud) > 100])]
    return sorted({int(s // spf) for s in starts})


def marker_position(frame: np.ndarray) -> tuple[float, float]:
    """Returns the (x, y) centroid of the red marker in a flash frame, as fractions of the frame size."""
    red = (frame[..., 0] > 200) & (frame[..., 1] < 80) & (frame[..., 2] < 80)
    ys, xs = np.nonzero(red)
    return float(xs.mean()) / frame.shape[1], float(ys.mean()) / frame.shape[0]


def lenient_targets(tmp: Path) -> Path:
    """Returns a targets file whose `lenient` preset keeps every window that the plain checks allow."""
    from dataclasses import fields

    from s2vdata.targets import Target

    lines = ["[targets.lenient]", 'base = "hand"']
    for f in fields(Target):
        if f.name.endswith("_max") or f.name.endswith("_max_frames"):
            lines.append(f"{f.name} = {1_000_000 if f.type in ('int', int) or 'frames' in f.name else 1e9}")
        elif f.name.endswith("_min"):
            lines.append(f"{f.name} = -1e9")
    path = tmp / "targets.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def remux_with_gap(src: Path, dst: Path, *, at_s: float, drop_s: float = 0.0, shift_s: float = 0.0) -> None:
    """Copies a file's streams packet by packet, with a fault in the audio timestamps at `at_s`.

    The audio packets of [at_s, at_s + drop_s) are lost (a hole, as dropped packets leave), and the
    timestamps of the audio packets after at_s move by shift_s (positive: a hole with nothing lost; negative,
    under one packet's duration: each packet after the jump starts before the previous one ended, an overlap).
    Sound after the fault is at its timestamps: an event at t > at_s sounds at t + shift_s.
    """
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux():
            if packet.stream.index not in streams or packet.size == 0:
                continue
            if packet.stream.type == "audio" and packet.pts is not None:
                t = float(packet.pts * packet.time_base)
                if at_s <= t < at_s + drop_s:
                    continue
                if t >= at_s and shift_s:
                    ticks = round(shift_s / packet.time_base)
                    packet.pts += ticks
                    if packet.dts is not None:
                        packet.dts += ticks
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
