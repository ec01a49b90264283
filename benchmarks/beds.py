"""Recorded music and speech beds for the calibration set, from Debian packages (offline once installed).

    apt-get install fretsonfire-songs-muldjord fretsonfire-songs-sectoid singularity-music hyperrogue-music \
        drascula-music fillets-ng-data fillets-ng-data-cs hedgewars-data espeak-ng alsa-utils

Every bed is a list of recordings, each split into a tuning part and a
held-out part by collection (a whole soundtrack, a whole set of voices), so
the held-out numbers are on music and voices the thresholds never saw:

| kind | tuning | held out |
|---|---|---|
| music | Frets on Fire songs by Muldjord (rock, MIT), Endgame: Singularity (orchestral/ambient, CC BY-SA 3.0), Fish Fillets NG music (GPL-2) | Frets on Fire songs by Sectoid (rock/metal, MIT), HyperRogue (various, CC BY-SA 3.0), Drascula (adventure game score) |
| speech | Fish Fillets NG's Czech dialogues (two recorded actors and guests, GPL-2); espeak-ng English voices | Hedgewars' voice packs (many recorded speakers, English and others), Fish Fillets NG's English voices, ALSA's recorded channel names (alsa-utils); espeak-ng German, French, Spanish, Czech and other variants |

`bed(kind, split, rng, n)` returns n samples at 44.1 kHz mono, peak 1: a
random excerpt of a random music recording, or utterances of one speaker (or
one synthetic voice) strung together with short pauses, as a narrator talks.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

RATE = 44_100
FOF = "/usr/share/games/fretsonfire/data/songs"
FILLETS = "/usr/share/games/fillets-ng"

ESPEAK_TUNE = [("en-us", "m1"), ("en-gb", "m3"), ("en-us", "f2"), ("en-gb-scotland", "m2"), ("en-us", "f4")]
ESPEAK_HELD = [("de", "f1"), ("fr", "m4"), ("es", "f3"), ("cs", "m7"), ("en-gb-x-rp", "f5")]
SENTENCES = [
    "Welcome back to the channel. Today we are looking at the fireworks over the harbour, and they are beautiful.",
    "The show started a little after nine, and the crowd had been waiting for almost an hour by then.",
    "If you look closely you can see the rockets climbing before each burst, leaving a thin trail of smoke.",
    "Remember to like and subscribe, and tell us in the comments where you watched the new year come in.",
    "This one is my favourite, the big golden willow that hangs in the air for a few seconds.",
    "We filmed this from the hill above the old town, with the camera on a tripod the whole time.",
    "Die Raketen steigen langsam auf und explodieren dann in allen Farben über dem Fluss.",
    "Le spectacle commence à vingt-deux heures et dure environ un quart d'heure.",
    "El espectáculo fue increíble, nunca había visto tantos colores al mismo tiempo.",
    "Ohňostroj začal přesně o půlnoci a trval skoro dvacet minut.",
]


def _decode(path: str) -> np.ndarray:
    """Returns the whole file as float32 mono at RATE."""
    out = []
    with av.open(path) as c:
        res = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        for frame in c.decode(audio=0):
            for f in res.resample(frame):
                out.append(f.to_ndarray().reshape(-1))
        for f in res.resample(None):
            out.append(f.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


@functools.lru_cache(maxsize=8)
def _recording(key: str) -> np.ndarray:
    """Returns one music recording (Frets on Fire: every stem of the song mixed) as float32 mono."""
    paths = key.split("|")
    parts = [_decode(p) for p in paths]
    n = max(len(p) for p in parts)
    mix = np.zeros(n, np.float32)
    for p in parts:
        mix[: len(p)] += p
    return mix


def music_files(split: str) -> list[str]:
    """Returns the music recordings of a split, one key per recording (stems joined by |)."""

    def fof(pack):
        return ["|".join(sorted(glob.glob(f"{d}/*.ogg"))) for d in sorted(glob.glob(f"{FOF}/{pack}/*/"))]

    if split == "tune":
        files = (
            fof("muldjord")
            + sorted(glob.glob("/usr/share/games/singularity/music/*.ogg"))
            + sorted(glob.glob(f"{FILLETS}/music/*.ogg"))
        )
    else:
        files = (
            fof("sectoid")
            + sorted(glob.glob("/usr/share/hyperrogue/music/hr*.ogg"))
            + sorted(glob.glob("/usr/share/scummvm/drascula/audio/*.ogg"))[::6]
        )
    return [f for f in files if f and _readable(f)]


@functools.lru_cache(maxsize=None)
def _readable(key: str) -> bool:
    try:
        for p in key.split("|"):
            with av.open(p) as c:
                if not c.streams.audio or (c.duration or 0) / 1e6 < 20:
                    return False
        return True
    except av.error.FFmpegError:
        return False


HEDGEWARS = "/usr/share/games/hedgewars/Data/Sounds/voices"
# hedgewars lines that are words (not a cough, a laugh or an "ow")
HEDGEWARS_WORDS = (
    "Amazing",
    "Boring",
    "Brilliant",
    "Bugger",
    "Byebye",
    "Comeonthen",
    "Coward",
    "Cutitout",
    "Enemydown",
    "Excellent",
    "Firstblood",
    "Flawless",
    "Flyaway",
    "Gonnagetyou",
    "Hello",
    "Hurry",
    "Illgetyou",
    "Incoming",
    "Justyouwait",
    "Leavemealone",
    "Missed",
    "Ohdear",
    "Reinforcements",
    "Revenge",
    "Runaway",
    "Sameteam",
    "Solong",
    "Stupid",
    "Takecover",
    "Thisoneismine",
    "Traitor",
    "Victory",
    "Watchit",
    "Watchthis",
    "Whatthe",
    "Yessir",
    "Youllregretthat",
)
# Fish Fillets NG's English sound folders that hold voices (the others hold sound effects)
FILLETS_EN_VOICES = ("society", "elk", "viking2", "warcraft")


def speakers(split: str) -> list[tuple[str, object]]:
    """Returns the speakers of a split: ("files", [utterance paths]) or ("espeak", (voice, variant)).

    tune: Fish Fillets NG's Czech dialogues (one entry per level and fish: the
    small fish "m", the big one "v") and English espeak-ng voices. held: voices
    recorded by other people (Hedgewars' voice packs, Fish Fillets' English
    voices, ALSA's channel names) and espeak-ng in other languages and variants.
    """
    out: list[tuple[str, object]] = []
    if split == "tune":
        for d in sorted(glob.glob(f"{FILLETS}/sound/*/cs/")):
            for who in ("m", "v"):
                files = sorted(glob.glob(f"{d}*-{who}-*.ogg"))
                if len(files) >= 3:
                    out.append(("files", files))
        voices = ESPEAK_TUNE
    else:
        for d in sorted(glob.glob(f"{HEDGEWARS}/*/")):
            files = [f for f in sorted(glob.glob(f"{d}*.ogg")) if Path(f).stem in HEDGEWARS_WORDS]
            if len(files) >= 5:
                out.append(("files", files))
        for name in FILLETS_EN_VOICES:
            files = sorted(glob.glob(f"{FILLETS}/sound/{name}/en/*.ogg"))
            if files:
                out.append(("files", files))
        alsa = sorted(f for f in glob.glob("/usr/share/sounds/alsa/*.wav") if "Noise" not in f)
        if alsa:
            out.append(("files", alsa))
        voices = ESPEAK_HELD
    # synthetic speech: a quarter of the draws
    n_rec = len(out)
    out += [("espeak", v) for v in voices] * max(1, n_rec // (3 * len(voices)))
    return out


@functools.lru_cache(maxsize=32)
def _espeak(voice: str, variant: str, sentence: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "s.wav")
        subprocess.run(
            ["espeak-ng", "-v", f"{voice}+{variant}", "-s", "165", "-w", wav, SENTENCES[sentence]],
            check=True,
            capture_output=True,
        )
        return _decode(wav)


@functools.lru_cache(maxsize=256)
def _utterance(path: str) -> np.ndarray:
    return _decode(path)


def _trim(x: np.ndarray) -> np.ndarray:
    """Returns x without its leading and trailing near-silence (below -50 dB of its peak)."""
    loud = np.flatnonzero(np.abs(x) > np.abs(x).max() * 10 ** (-50 / 20)) if len(x) else []
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


INSTALL = (
    "apt-get install fretsonfire-songs-muldjord fretsonfire-songs-sectoid singularity-music hyperrogue-music "
    "drascula-music fillets-ng-data fillets-ng-data-cs hedgewars-data espeak-ng alsa-utils"
)


def missing(split: str) -> str:
    """Returns what is missing to draw the beds of a split, with the command that installs it ("" when nothing is)."""
    if not shutil.which("espeak-ng"):
        return f"espeak-ng (the speech synthesizer) is not installed: run `{INSTALL}`"
    if not music_files(split):
        return f"no {split} music recordings found (Debian's game soundtracks): run `{INSTALL}`"
    if not any(how == "files" for how, _ in speakers(split)):
        return f"no {split} voice recordings found (Debian's game voices, alsa-utils): run `{INSTALL}`"
    return ""


def bed(kind: str, split: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str]:
    """Returns (n samples at 44.1 kHz mono, peak 1; a name saying where it came from) of a music or speech bed."""
    if kind == "music":
        files = music_files(split)
        key = files[int(rng.integers(len(files)))]
        x = _recording(key)
        # a loud-enough excerpt: skip intros and fades (RMS within 12 dB of the recording's 90th percentile)
        hop = RATE
        rms = np.sqrt(np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1))
        ok = np.convolve(rms > np.percentile(rms, 90) * 10 ** (-12 / 20), np.ones(int(np.ceil(n / hop))), mode="valid")
        starts = np.flatnonzero(ok >= int(np.ceil(n / hop)))
        start = int(starts[rng.integers(len(starts))]) * hop if len(starts) else 0
        out = x[start : start + n]
        name = f"{Path(key.split('|')[0]).parent.name if 'fretsonfire' in key else Path(key).stem}@{start / RATE:.0f}s"
    elif kind == "speech":
        choices = speakers(split)
        how, what = choices[int(rng.integers(len(choices)))]
        parts, total = [], 0
        while total < n + RATE:
            if how == "files":
                u = _trim(_utterance(what[int(rng.integers(len(what)))]))
            else:
                voice, variant = what
                lang = voice.split("-")[0]
                own = [i for i, s in enumerate(SENTENCES) if (lang == "en") == (i < 6) and (lang == "en" or _lang(i) == lang)]
                u = _trim(_espeak(voice, variant, int(rng.choice(own or [0]))))
            gap = np.zeros(int(rng.uniform(0.1, 0.5) * RATE), np.float32)
            parts += [u / (np.abs(u).max() + 1e-9), gap]
            total += len(u) + len(gap)
        x = np.concatenate(parts)
        start = int(rng.integers(0, max(1, len(x) - n)))
        out = x[start : start + n]
        name = (
            f"espeak {what[0]}+{what[1]}"
            if how == "espeak"
            else f"{Path(what[0]).parent.parent.name}/{Path(what[0]).parent.name} voices"
        )
    else:
        raise ValueError(f"unknown bed kind {kind!r}")
    out = np.pad(out, (0, max(0, n - len(out)))).astype(np.float32)
    return out / (np.abs(out).max() + 1e-9), name


def _lang(i: int) -> str:
    return {6: "de", 7: "fr", 8: "es", 9: "cs"}.get(i, "en")
