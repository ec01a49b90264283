"""Near-duplicate sources: short fingerprints of sound and picture, and grouping by them.

The same recording re-encoded (another bitrate, size, container or codec) or
re-uploaded keeps the shape of its sound over time and the coarse layout of
its frames, so two fingerprints are compared on

- sound: a binary code of how band energies change over time (as in
  Haitsma & Kalker's audio fingerprint), 100 ms per step over the first ~10 s,
  compared by bit error rate at the best of a few offsets;
- picture: a difference hash (dHash, 8x8 = 64 bits) of frames one second apart,
  compared by mean Hamming distance at the best of a few offsets.

Two sources are near-duplicates when both agree (or, without sound in either,
the picture alone). `build` groups sources so that a group never spans two splits.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import cv2
import numpy as np

log = logging.getLogger(__name__)

VERSION = 1
SAMPLE_RATE = 44_100  # the rate `build` hands over (the clip rate)
AUDIO_SECONDS = 10.0  # how much sound goes into the code
_STEP = 4410  # samples per code step (100 ms)
_WINDOW = 8192  # samples analysed per step
_BANDS = 17  # band edges 17 -> 16 bands -> 15 bits per step (adjacent band differences)
_BAND_HZ = (150.0, 6000.0)  # where codecs agree: above hum, below the low-pass of low bitrates
_SILENT_RMS = 1e-4  # below this (-80 dBFS) the sound is not fingerprinted
_OFFSETS = 5  # steps / frames of misalignment tried either way
AUDIO_MAX_BER = 0.25  # same recording: typically < 0.1 after re-encoding; unrelated sounds ~0.5
FRAME_MAX_BITS = 10.0  # mean dHash distance; unrelated frames ~32 of 64


def _dhash(frame: np.ndarray) -> int:
    """Returns the 64-bit difference hash of a frame: is each of 8x8 cells brighter than its right neighbour."""
    f = np.asarray(frame)
    grey = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
    small = cv2.resize(grey.astype(np.float32), (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def _audio_code(audio: np.ndarray, *, sample_rate: int) -> np.ndarray | None:
    """Returns the (steps, 15) bool code of the sound, or None when it is silent or too short."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    x = x[: int(AUDIO_SECONDS * sample_rate)]
    if len(x) < _WINDOW + 2 * _STEP or np.sqrt(np.mean(x**2)) < _SILENT_RMS:
        return None
    n = 1 + (len(x) - _WINDOW) // _STEP
    idx = np.arange(_WINDOW)[None, :] + _STEP * np.arange(n)[:, None]
    power = np.abs(np.fft.rfft(x[idx] * np.hanning(_WINDOW), axis=1)) ** 2
    freqs = np.fft.rfftfreq(_WINDOW, 1.0 / sample_rate)
    edges = np.geomspace(*_BAND_HZ, _BANDS)
    band = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])], axis=1)
    energy = np.log(band + 1e-12)
    across = np.diff(energy, axis=1)  # (n, 15): band b+1 against band b
    return np.diff(across, axis=0) > 0  # (n-1, 15): ... and how that changed since the last step


def fingerprint(frames_sample: list[np.ndarray], audio: np.ndarray, *, sample_rate: int = SAMPLE_RATE) -> dict:
    """Returns a JSON-serialisable fingerprint {"version", "audio": hex or None, "audio_steps", "frames": [hex, ...]}.

    frames_sample: a few frames one second apart (any size, RGB or grey);
    audio: the first seconds of the sound, mono (or (n, ch)), at `sample_rate`.
    """
    code = _audio_code(audio, sample_rate=sample_rate)
    return {
        "version": VERSION,
        "audio": None if code is None else np.packbits(code.ravel()).tobytes().hex(),
        "audio_steps": 0 if code is None else int(code.shape[0]),
        "frames": [f"{_dhash(f):016x}" for f in frames_sample],
    }


def _unpack_audio(fp: dict) -> np.ndarray | None:
    if not fp.get("audio"):
        return None
    steps = int(fp["audio_steps"])
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(fp["audio"]), dtype=np.uint8))[: steps * (_BANDS - 2)]
    return bits.reshape(steps, _BANDS - 2).astype(bool)


def audio_distance(a: dict, b: dict) -> float | None:
    """Returns the smallest bit error rate of the two sound codes over a few offsets, or None if either is silent."""
    ca, cb = _unpack_audio(a), _unpack_audio(b)
    if ca is None or cb is None:
        return None
    best = 1.0
    for off in range(-_OFFSETS, _OFFSETS + 1):
        x, y = (ca[off:], cb) if off >= 0 else (ca, cb[-off:])
        n = min(len(x), len(y))
        if n >= 10:
            best = min(best, float(np.mean(x[:n] != y[:n])))
    return best


def frame_distance(a: dict, b: dict) -> float:
    """Returns the smallest mean dHash Hamming distance (bits of 64) of the two frame samples over a few offsets."""
    ha = [int(h, 16) for h in a.get("frames", [])]
    hb = [int(h, 16) for h in b.get("frames", [])]
    best = 64.0
    for off in range(-min(2, len(ha) - 1), min(2, len(hb) - 1) + 1) if ha and hb else []:
        pairs = list(zip(ha[off:], hb)) if off >= 0 else list(zip(ha, hb[-off:]))
        if pairs:
            best = min(best, float(np.mean([bin(x ^ y).count("1") for x, y in pairs])))
    return best


def same_recording(a: dict, b: dict) -> bool:
    """Returns True when two fingerprints look like the same recording (re-encoded or re-uploaded)."""
    if frame_distance(a, b) > FRAME_MAX_BITS:
        return False
    ber = audio_distance(a, b)
    if ber is None:
        # one is silent: the same recording only if both are (the picture alone decides)
        return not a.get("audio") and not b.get("audio")
    return ber <= AUDIO_MAX_BER


def _candidates(fps: dict[str, dict], order: list[str]) -> set[tuple[str, str]]:
    """Returns pairs worth comparing: all pairs for small sets, else pairs sharing a 16-bit slice of a frame hash."""
    ids = [s for s in order if s in fps]
    if len(ids) <= 2000:
        return {(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]}
    buckets: dict[tuple[int, int], list[str]] = defaultdict(list)
    for s in ids:
        for h in {int(x, 16) for x in fps[s].get("frames", [])}:
            for k in range(4):
                buckets[(k, (h >> (16 * k)) & 0xFFFF)].append(s)
    pairs = set()
    rank = {s: i for i, s in enumerate(ids)}
    for members in buckets.values():
        uniq = sorted(set(members), key=rank.__getitem__)
        pairs.update((a, b) for i, a in enumerate(uniq) for b in uniq[i + 1 :])
    return pairs


def group(fps: dict[str, dict], order: list[str]) -> dict[str, str]:
    """Returns source_id -> group_id, the first source_id (in `order`) of its near-duplicate group.

    Sources in `order` without a fingerprint are their own group.
    """
    parent = {s: s for s in order}
    rank = {s: i for i, s in enumerate(order)}

    def root(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for a, b in _candidates(fps, order):
        ra, rb = root(a), root(b)
        if ra != rb and same_recording(fps[a], fps[b]):
            # the earlier source names the group
            first, second = (ra, rb) if rank[ra] < rank[rb] else (rb, ra)
            parent[second] = first
    groups = {s: root(s) for s in order}
    merged = sum(1 for s, g in groups.items() if s != g)
    if merged:
        log.info("near-duplicates: %d of %d sources join an earlier source's group", merged, len(order))
    return groups
