"""`generate`: any image and any sound become an MP4 with one frame per 1/30 s of sound and the sound muxed in."""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from s2vdata.media import MediaError
from s2vmodel.checkpoint import load_generator, save_checkpoint
from s2vmodel.config import resolve_config
from s2vmodel.generate import generate, generate_chunks, load_image, strip_times

SR = 44100


def save_tiny_checkpoint(path: Path, *, residual: bool, seed: int = 0) -> Path:
    """Returns path after saving a randomly initialised tiny-preset generator there (the trainer's format)."""
    from s2vmodel.model import S2VGenerator

    config = resolve_config(preset="tiny", overrides={"model": {"residual": residual}})
    torch.manual_seed(seed)
    model = S2VGenerator(config.model)
    if not residual:
        # BatchNorm's fresh running stats make an untrained U-Net nearly flat; give it real ones
        model.train()
        with torch.no_grad():
            model(torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 8, config.model.spec_bins))
    return save_checkpoint(path, {"step": 0, "config": config.to_dict(), "generator": model.state_dict()})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.pt", residual=False)


@pytest.fixture(scope="module")
def identity_ckpt(tmp_path_factory) -> Path:
    # the residual G starts as the identity: an untrained one returns the input image itself
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "identity.pt", residual=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """A 500x380 JPEG: green side bands outside the centre square, red left and blue right inside it."""
    rgb = np.zeros((380, 500, 3), np.uint8)
    rgb[:, :60] = rgb[:, 440:] = (0, 255, 0)
    rgb[:, 60:250] = (255, 0, 0)
    rgb[:, 250:440] = (0, 0, 255)
    path = tmp_path_factory.mktemp("img") / "picture.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """Returns a click track over a quiet tone, (n,) or (n, channels) float32."""
    t = np.arange(round(seconds * rate)) / rate
    x = 0.1 * np.sin(2 * np.pi * 330 * t)
    x[(t * 3 % 1) < 0.01] += 0.8  # a click every 1/3 s
    x = x.astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1) * np.linspace(0.5, 1, channels, dtype=np.float32)


def write_sound(path: Path, audio: np.ndarray, rate: int) -> Path:
    """Returns path after writing audio there: soundfile for WAV/FLAC/OGG, PyAV (FFmpeg) for MP3 and M4A."""
    if path.suffix in (".wav", ".flac", ".ogg"):
        sf.write(path, audio, rate)
        return path
    codec = {".mp3": "libmp3lame", ".m4a": "aac"}[path.suffix]
    a = audio.reshape(len(audio), -1)
    layout = "mono" if a.shape[1] == 1 else "stereo"
    with av.open(str(path), "w") as c:
        stream = c.add_stream(codec, rate=rate, layout=layout)
        fmt = stream.codec_context.format.name
        size = stream.codec_context.frame_size or 1152
        for i in range(0, len(a), size):
            chunk = a[i : i + size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), a.shape[1]), np.float32)])
            data = chunk.T if fmt.endswith("p") else chunk.reshape(1, -1)
            if fmt.startswith("s16"):
                data = (np.clip(data, -1, 1) * 32767).astype(np.int16)
            elif fmt.startswith("s32"):
                data = (np.clip(data, -1, 1) * 2147483647).astype(np.int32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return path


def read_output(path: Path) -> tuple[np.ndarray, float | None, int | None]:
    """Returns (frames (N, H, W, 3) uint8, audio seconds or None, audio rate or None) of a written video."""
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        if not c.streams.audio:
            return frames, None, None
        rate = c.streams.audio[0].rate
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    return frames, samples / rate, rate


# (file name, seconds, sample rate, channels, frames allowed off ceil(seconds * 30))
SOUNDS = [
    ("short.wav", 0.3, 44100, 1, 0),
    ("voice48k_stereo.wav", 1.4, 48000, 2, 0),
    ("phone8k.flac", 2.0, 8000, 1, 0),
    ("song.mp3", 1.0, 44100, 2, 2),  # lossy codecs may add a few ms of padding (under 0.2 s)
    ("music.m4a", 1.0, 48000, 1, 2),
]


@pytest.mark.parametrize("name,seconds,rate,channels,slack", SOUNDS)
def test_any_sound_becomes_one_frame_per_slot_with_the_sound_muxed(tmp_path, ckpt, image, name, seconds, rate, channels, slack):
    sound = write_sound(tmp_path / name, tone(seconds, rate, channels), rate)
    report = generate(checkpoint=ckpt, image=image, audio=sound, out=tmp_path / "out.mp4")
    frames, audio_s, audio_rate = read_output(tmp_path / "out.mp4")
    assert abs(len(frames) - math.ceil(seconds * 30)) <= slack
    assert report.frames == len(frames)
    assert frames.shape[1:] == (64, 64, 3)
    assert audio_rate == SR
    assert audio_s == pytest.approx(seconds, abs=0.1)


@pytest.mark.slow
def test_a_long_ogg_sound_makes_a_long_video(tmp_path, ckpt, image):
    sound = write_sound(tmp_path / "sea.ogg", tone(30.0, 22050), 22050)
    report = generate(checkpoint=ckpt, image=image, audio=sound, out=tmp_path / "long.mp4", scale=2, strip=tmp_path / "s.png")
    frames, audio_s, _ = read_output(tmp_path / "long.mp4")
    assert len(frames) == report.frames == 900
    assert frames.shape[1:] == (128, 128, 3)
    assert audio_s == pytest.approx(30.0, abs=0.1)
    assert report.strip is not None and report.strip.is_file()


def test_the_picture_is_the_centre_square_and_scale_enlarges_it(tmp_path, identity_ckpt, image):
    sound = write_sound(tmp_path / "a.wav", tone(0.5, SR), SR)
    generate(checkpoint=identity_ckpt, image=image, audio=sound, out=tmp_path / "big.mp4", scale=3)
    frames, _, _ = read_output(tmp_path / "big.mp4")
    assert frames.shape == (15, 192, 192, 3)
    # an untrained residual G returns its input: red left, blue right, none of the green bands
    middle = frames[:, 20:-20].astype(int)
    left, right = middle[:, :, 8:80], middle[:, :, 112:184]
    assert np.abs(left - (255, 0, 0)).mean() < 20
    assert np.abs(right - (0, 0, 255)).mean() < 20
    assert middle[..., 1].max() < 80


def test_chunked_generation_equals_one_call(ckpt, image):
    model, config = load_generator(ckpt)
    picture = load_image(image, size=config.image_size)
    audio = tone(2.0, SR)
    whole = np.concatenate(list(generate_chunks(model, image=picture, audio=audio, chunk_frames=1000)))
    chunked = np.concatenate(list(generate_chunks(model, image=picture, audio=audio, chunk_frames=7)))
    assert whole.shape == (60, 64, 64, 3)
    # the same maths in other batch sizes: at most one grey level of float rounding apart
    assert np.abs(whole.astype(int) - chunked.astype(int)).max() <= 1
    # the sound drives the frames: a random model does not make 60 identical ones
    assert np.abs(np.diff(whole.astype(int), axis=0)).max() > 0


def test_strip_shows_the_input_and_every_twentieth_frame(tmp_path, ckpt, image):
    sound = write_sound(tmp_path / "a.wav", tone(4.0, SR), SR)
    report = generate(checkpoint=ckpt, image=image, audio=sound, out=tmp_path / "o.mp4", strip=tmp_path / "strip.png")
    strip = cv2.imread(str(report.strip))
    assert strip_times(120) == [0, 20, 40, 60, 80, 100]
    tile = 64 * 2 + 2 * 2  # scale 2, border 2 each side
    assert strip.shape[1] == 7 * tile


def test_bad_inputs_are_named_with_what_to_do(tmp_path, ckpt, image):
    sound = write_sound(tmp_path / "a.wav", tone(0.5, SR), SR)
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        generate(checkpoint=ckpt, image=tmp_path / "nothere.png", audio=sound, out=tmp_path / "o.mp4")
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ValueError, match="cannot read image .*notes.txt"):
        generate(checkpoint=ckpt, image=tmp_path / "notes.txt", audio=sound, out=tmp_path / "o.mp4")
    with pytest.raises(MediaError, match="notes.txt"):
        generate(checkpoint=ckpt, image=image, audio=tmp_path / "notes.txt", out=tmp_path / "o.mp4")
    with pytest.raises(ValueError, match=r"name the output \.mp4"):
        generate(checkpoint=ckpt, image=image, audio=sound, out=tmp_path / "o.gif")
    assert not (tmp_path / "o.mp4").exists()


def test_cli_generate_writes_the_video_and_exits_1_on_a_bad_image(tmp_path, ckpt, image):
    from s2vmodel.cli import app

    sound = write_sound(tmp_path / "a.wav", tone(1.0, SR), SR)
    runner = CliRunner()
    args = ["generate", "--checkpoint", str(ckpt), "--audio", str(sound), "--out", str(tmp_path / "o.mp4"), "--scale", "2"]
    result = runner.invoke(app, [*args, "--image", str(image)])
    assert result.exit_code == 0, result.output
    frames, _, _ = read_output(tmp_path / "o.mp4")
    assert frames.shape == (30, 128, 128, 3)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    result = runner.invoke(app, [*args, "--image", str(tmp_path / "bad.png")])
    assert result.exit_code == 1
    assert "cannot read image" in result.output
