"""Known answers on recorded sound: speech and music beds under the test scenes are rejected by their checks,
clean and single-event windows are kept, silent and still ones are not.

The recordings are 8-second excerpts committed under tests/media/recorded/
(sources and licences in its README): recorded rock and orchestral music,
recorded Czech and English speech, synthesized English speech.
"""

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from s2vdata.checks import decide, measure_window, music, speech
from s2vdata.targets import get_target

from checks_scenes import HOP, RATE, burst_scene, scene

MEDIA = Path(__file__).parent / "media" / "recorded"
MUSIC = ("music_rock.opus", "music_orchestral.opus")
SPEECH = ("speech_czech.opus", "speech_english.opus", "speech_espeak.opus")


def recording(name: str) -> np.ndarray:
    """Returns a committed excerpt as float32 mono at 44.1 kHz, peak 1."""
    out = []
    with av.open(str(MEDIA / name)) as c:
        res = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        for frame in c.decode(audio=0):
            out += [f.to_ndarray().reshape(-1) for f in res.resample(frame)]
        out += [f.to_ndarray().reshape(-1) for f in res.resample(None)]
    x = np.concatenate(out)
    return (x / np.abs(x).max()).astype(np.float32)


def under(audio: np.ndarray, bed: np.ndarray, level_db: float) -> np.ndarray:
    """Returns `audio` with `bed` mixed under it, the bed's peak level_db under the audio's peak."""
    mixed = audio + bed[: len(audio)] * np.abs(audio).max() * 10 ** (level_db / 20)
    return (mixed * min(1.0, 0.99 / np.abs(mixed).max())).astype(np.float32)


def failed(frames, audio, target):
    scores = measure_window(frames, audio)["scores"]
    return {r.check for r in decide(scores, get_target(target)) if not r.passed}, scores


@pytest.mark.parametrize("name", MUSIC + SPEECH)
def test_the_voice_model_hears_speech_in_speech_and_none_in_music(name):
    x16 = speech.resample(recording(name)[: 120 * HOP], sample_rate=RATE)
    voice = speech.voice_curve(x16, n_slots=120, slot_s=HOP / RATE) >= speech.SPEECH_P
    tonal = music.tonal_curve(x16, n_slots=120, slot_s=HOP / RATE)
    if name in SPEECH:
        assert voice.mean() > 0.4  # pauses between lines are not speech
    else:
        assert voice.mean() < 0.02
        assert (tonal & ~voice).mean() > 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_clean_hands_have_no_speech_and_no_music(seed):
    frames, audio, _ = scene(None, seed=seed)
    fails, scores = failed(frames, audio, "hand")
    assert fails == set()
    assert scores["speech"] == 0.0 and scores["music"] == 0.0 and scores["speech_unexplained"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("level_db", [-10.0, -20.0])
@pytest.mark.parametrize("name", MUSIC + SPEECH)
def test_recorded_beds_under_clapping_hands_fail_their_check(name, level_db):
    frames, audio, _ = scene(None, seed=0)
    fails, scores = failed(frames, under(audio, recording(name), level_db), "hand")
    if name in SPEECH:
        assert "speech" in fails and scores["speech"] > 0.3
    else:
        assert "music" in fails and scores["music"] > 0.5
        assert scores["speech"] < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", MUSIC + SPEECH)
def test_recorded_beds_under_a_single_burst_are_rejected_for_fireworks(name):
    frames, audio, _ = burst_scene(seed=0, bursts=1)
    fails, scores = failed(frames, under(audio, recording(name), -20.0), "fireworks")
    assert ("speech" if name in SPEECH else "music") in fails


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_single_burst_with_its_bang_is_a_good_fireworks_window(seed):
    frames, audio, at = burst_scene(seed=seed, bursts=1)
    assert len(at) == 1
    fails, scores = failed(frames, audio, "fireworks")
    assert fails == set(), scores


@pytest.mark.parametrize("frame", [2, 116])
def test_a_single_burst_at_either_edge_of_the_window_is_kept(frame):
    """A few frames of motion are the window's motion: its bang is explained, not unrelated."""
    frames, audio, _ = burst_scene(seed=5, at=[frame])
    fails, scores = failed(frames, audio, "fireworks")
    assert fails == set(), scores
    assert scores["unrelated_onsets"] < 0.3


def test_a_single_clap_is_a_good_hand_window():
    frames, audio, _ = scene(None, seed=4, events=[64])
    fails, scores = failed(frames, audio, "hand")
    assert fails == set(), scores


def test_single_burst_windows_that_are_silent_or_still_stay_rejected():
    frames, audio, at = burst_scene(seed=0, bursts=1)
    silent, _ = failed(frames, np.zeros_like(audio), "fireworks")
    still, _ = failed(np.repeat(frames[:1], len(frames), axis=0), audio, "fireworks")
    # the quiet sky before the burst: a noise floor at -60 dBFS is silence
    floor_only, _ = failed(frames, audio * (np.arange(len(audio)) < at[0] * HOP), "fireworks")
    assert "audio_db" in silent
    assert "motion" in still
    assert "audio_db" in floor_only


def test_a_narrator_over_a_still_mouth_fails_but_its_own_vowels_do_not():
    from s2vdata import synth

    talking = synth.render("mouth", seed=3, seconds=4.0, fps=30.0, width=286, height=286)
    frames = np.stack(list(talking.frames()))[:120]
    audio = talking.audio[: 120 * HOP]
    own, scores = failed(frames, audio, "mouth")
    assert scores["speech"] > 0.1  # the vowels are a voice
    assert "speech" not in own and "speech_unexplained" not in own
    narrated, scores = failed(
        np.repeat(frames[:1], 120, axis=0), under(audio * 0.01, recording("speech_english.opus"), 0.0), "mouth"
    )
    assert "speech_unexplained" in narrated and scores["speech_unexplained"] > 0.3


def test_the_numpy_voice_model_equals_silero_vads_own_torchscript_model():
    torch = pytest.importorskip("torch")
    model = speech.load_model()
    jit = torch.jit.load(str(speech.model_path()), map_location="cpu").eval()
    for name in ("speech_czech.opus", "music_rock.opus"):
        x16 = speech.resample(recording(name)[: 2 * RATE], sample_rate=RATE)
        with torch.no_grad():
            jit.reset_states()
            want = jit.audio_forward(torch.from_numpy(x16).unsqueeze(0), speech.VAD_RATE).numpy().reshape(-1)
        got = model(x16)
        assert got.shape == want.shape == (63,)
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert (want >= speech.SPEECH_P).any() == name.startswith("speech")


def test_an_archive_that_is_not_silero_vads_is_a_clear_error(tmp_path):
    bad = tmp_path / "silero_vad.jit"
    bad.write_bytes(b"not a zip")
    with pytest.raises(speech.SpeechModelMissing, match=r"cannot be read.*pip install --no-deps silero-vad"):
        speech._Vad(bad)


def test_resample_keeps_a_tone_and_drops_what_is_above_8_khz():
    t = np.arange(RATE) / RATE
    x16 = speech.resample(np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 10000 * t), sample_rate=RATE)
    assert len(x16) == 16000
    spectrum = np.abs(np.fft.rfft(x16))
    assert int(np.argmax(spectrum)) == 1000  # 1 Hz bins
    assert spectrum[7000:].max() < 1e-3 * spectrum.max()


def test_a_missing_voice_model_is_a_clear_error_with_the_install_command(monkeypatch):
    monkeypatch.setattr(speech.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(speech, "_MODEL", None)
    with pytest.raises(speech.SpeechModelMissing, match=r"pip install --no-deps silero-vad"):
        speech.load_model()
    with pytest.raises(speech.SpeechModelMissing, match=r"pip install --no-deps silero-vad"):
        speech.ensure_model()


def test_s2vdata_imports_and_measures_a_window_without_torch():
    code = (
        "import sys, numpy as np, s2vdata.checks, s2vdata.build, s2vdata.cli; "
        "s2vdata.checks.measure_window(np.zeros((120, 64, 64, 3), np.uint8), np.zeros(176400, np.float32)); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_sustained_tones_are_found_and_bangs_noise_and_silence_are_not():
    rng = np.random.default_rng(0)
    t = np.arange(4 * 16000) / 16000
    chord = sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392)) * 0.05
    noise = rng.normal(0, 0.05, len(t))
    bangs = np.zeros(len(t))
    for k in (5000, 30000):
        bangs[k : k + 3000] = rng.normal(0, 0.5, 3000) * np.exp(-np.arange(3000) / 400)
    slot = HOP / RATE
    assert music.tonal_curve(chord + noise * 0.02, n_slots=120, slot_s=slot).mean() > 0.9
    assert music.tonal_curve(noise + bangs, n_slots=120, slot_s=slot).mean() == 0.0
    assert music.tonal_curve(np.zeros(len(t)), n_slots=120, slot_s=slot).mean() == 0.0
