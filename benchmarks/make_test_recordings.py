"""Cut the short recorded excerpts the check tests use (tests/media/recorded/), from Debian packages.

    apt-get install fretsonfire-songs-sectoid singularity-music fillets-ng-data-cs alsa-utils espeak-ng
    .venv/bin/python benchmarks/make_test_recordings.py

Each excerpt is 8 s of mono Opus (48 kHz, 32 kbit/s), a few tens of kB, so a
fresh CI machine has recorded music and speech without installing anything.
Sources and licences: tests/media/recorded/README.md.
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import beds  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "media" / "recorded"
SECONDS = 8.0


def write_opus(path: Path, x: np.ndarray, *, rate: int = beds.RATE) -> None:
    """Writes mono float sound as 48 kHz Opus in Ogg."""
    with av.open(str(path), "w", format="ogg") as c:
        s = c.add_stream("libopus", rate=48_000, layout="mono")
        s.bit_rate = 32_000
        res = av.AudioResampler(format="s16", layout="mono", rate=48_000)
        frame = av.AudioFrame.from_ndarray((np.clip(x, -1, 1) * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for f in res.resample(frame) + res.resample(None):
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def speech_of(files: list[str], n: int, gap_s: float = 0.25) -> np.ndarray:
    parts = []
    for f in files:
        u = beds._trim(beds._decode(f))
        parts += [u / (np.abs(u).max() + 1e-9), np.zeros(int(gap_s * beds.RATE), np.float32)]
        if sum(len(p) for p in parts) >= n:
            break
    return np.concatenate(parts)[:n]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    n = int(SECONDS * beds.RATE)
    sectoid = f"{beds.FOF}/sectoid/Metal madness"
    rock = beds._recording("|".join(sorted(glob.glob(f"{sectoid}/*.ogg"))))[60 * beds.RATE : 60 * beds.RATE + n]
    orchestral = beds._decode("/usr/share/games/singularity/music/Through Space.ogg")[90 * beds.RATE : 90 * beds.RATE + n]
    czech = speech_of(sorted(glob.glob(f"{beds.FILLETS}/sound/tetris/cs/*.ogg")), n)
    english = speech_of(sorted(f for f in glob.glob("/usr/share/sounds/alsa/*.wav") if "Noise" not in f), n)
    synthetic = beds._trim(beds._espeak("en-us", "m3", 1))
    clips = {
        "music_rock.opus": rock,
        "music_orchestral.opus": orchestral,
        "speech_czech.opus": czech,
        "speech_english.opus": english,
        "speech_espeak.opus": np.pad(synthetic, (0, max(0, n - len(synthetic))))[:n],
    }
    for name, x in clips.items():
        write_opus(OUT / name, x / (np.abs(x).max() + 1e-9) * 0.9)
        print(f"{name}: {(OUT / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
