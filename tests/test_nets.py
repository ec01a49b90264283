"""Shapes and basic behaviour of the four networks, the slot spectrogram and the checkpoint API."""

import math

import numpy as np
import pytest
import torch

from s2vmodel.audio import peak_normalize, slot_spectrogram
from s2vmodel.checkpoint import CheckpointError, load_generator, save_checkpoint
from s2vmodel.config import resolve_config
from s2vmodel.model import S2VGenerator, build_discriminators
from s2vmodel.nets import ImageDiscriminator, SoundEncoder, VideoDiscriminator


def tiny_model_config(**changes):
    # without the random map, one sample per clip (samples differ only by their map)
    train = {"samples": 1} if changes.get("noise") == 0 else {}
    model = {"se_hidden": 8, "ngf": 8, "ndf": 8, **changes}
    return resolve_config(preset="tiny", overrides={"model": model, "train": train}).model


def test_slot_spectrogram_has_one_column_per_frame_slot_and_keeps_a_click_in_its_slot():
    wave = torch.zeros(2, 120 * 1470)
    wave[0, 37 * 1470 + 1469] = 1.0  # last sample of slot 37: a centred window would smear it into 38
    spec = slot_spectrogram(wave)
    assert spec.shape == (2, 120, 736)
    energy = spec[0].sum(dim=1)
    assert int(energy.argmax()) == 37
    assert energy[36] == 0 and energy[38] == 0
    assert spec[1].abs().max() == 0


def test_slot_spectrogram_pads_a_partial_last_slot():
    assert slot_spectrogram(torch.zeros(1, 1470 * 3 + 5)).shape[1] == 4
    assert slot_spectrogram(torch.zeros(1470 * 2)).shape == (1, 2, 736)
    assert slot_spectrogram(torch.zeros(1, 1470 * 4), n_fft=512).shape == (1, 4, 257)


def test_full_scale_sine_lands_near_one():
    t = torch.arange(1470 * 4) / 44100
    spec = slot_spectrogram(torch.sin(2 * math.pi * 30 * 100 * t))  # 3000 Hz: 100 cycles per slot
    assert 0.85 < float(spec.max()) <= 1.0


def test_peak_normalize_scales_each_row_and_leaves_silence_alone():
    wave = torch.tensor([[0.0, 0.25, -0.5], [0.0, 0.0, 0.0]])
    out = peak_normalize(wave)
    assert torch.allclose(out[0], torch.tensor([0.0, 0.5, -1.0]))
    assert torch.equal(out[1], wave[1])


def test_sound_encoder_reads_any_length_and_both_directions():
    se = SoundEncoder(bins=736, hidden=8)
    spec = torch.zeros(1, 50, 736)
    base = se(spec)
    assert base.shape == (1, 50, 16)
    assert se(torch.zeros(2, 333, 736)).shape == (2, 333, 16)
    spec[0, 14] = 1.0  # a sound at slot 14 must change the backward half of earlier features
    changed = se(spec)
    assert not torch.allclose(changed[0, 10, 8:], base[0, 10, 8:])
    assert torch.allclose(changed[0, 10, :8], base[0, 10, :8])  # forward half has not heard it yet


@pytest.mark.parametrize("residual", [False, True])
def test_generator_makes_one_frame_per_slot_in_range(residual):
    model = S2VGenerator(tiny_model_config(residual=residual))
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    video = model(image, torch.rand(2, 7, 736))
    assert video.shape == (2, 7, 3, 64, 64)
    assert video.abs().max() <= 1.0
    if residual:  # an untrained residual G returns the input image
        assert torch.allclose(video, image[:, None].expand_as(video).clamp(-0.999, 0.999), atol=1e-5)


def test_generator_frames_depend_on_their_own_sound_feature():
    model = S2VGenerator(tiny_model_config(residual=False)).eval()
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    feats = torch.zeros(1, 3, 16)
    feats[0, 1] = 5.0
    video = model.generate_frames(image, feats)
    assert torch.allclose(video[0, 0], video[0, 2], atol=1e-6)
    assert not torch.allclose(video[0, 0], video[0, 1], atol=1e-3)


@pytest.mark.parametrize("norm", ["batch", "instance", "spectral", "none"])
def test_discriminators_return_patch_logits(norm):
    d_image = ImageDiscriminator(ndf=8, norm=norm)
    d_video = VideoDiscriminator(ndf=8, norm=norm)
    assert d_image(torch.rand(5, 3, 64, 64)).shape == (5, 1, 4, 4)
    assert d_video(torch.rand(2, 3, 16, 64, 64)).shape == (2, 1, 4, 4, 4)


def test_paper_discriminators_have_mocogan_widths():
    d_image, d_video = build_discriminators(resolve_config(preset="paper").model)
    widths = [m.out_channels for m in d_image.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [64, 128, 256, 1]
    strides = [m.stride for m in d_video.modules() if isinstance(m, torch.nn.Conv3d)]
    assert strides == [(1, 2, 2)] * 4


def test_load_generator_round_trip(tmp_path):
    config = resolve_config(preset="tiny", overrides={"model": {"se_hidden": 8, "ngf": 8, "residual": False}})
    model = S2VGenerator(config.model)
    path = save_checkpoint(tmp_path / "c.pt", {"step": 3, "config": config.to_dict(), "generator": model.state_dict()})
    loaded, model_config = load_generator(path)
    assert model_config == config.model
    assert not loaded.training
    image, spec = torch.rand(1, 3, 64, 64), torch.rand(1, 5, 736)
    model.eval()
    assert torch.allclose(loaded(image, spec), model(image, spec))


def test_load_generator_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_generator(tmp_path / "absent.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an s2v checkpoint"):
        load_generator(tmp_path / "other.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint at all")
    with pytest.raises(CheckpointError, match="notes.pt: cannot read it as a checkpoint") as err:
        load_generator(tmp_path / "notes.pt")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("mode", ["atanh", "linear", "blend"])
def test_an_untrained_residual_generator_returns_its_base_in_every_mode(mode):
    from s2vmodel.generate import to_uint8

    model = S2VGenerator(tiny_model_config(residual=True, residual_mode=mode))
    image = torch.randint(0, 256, (2, 3, 64, 64)) / 127.5 - 1  # pictures: whole uint8 levels
    video = model(image, torch.rand(2, 5, 736))
    # blend keeps a share of 3e-4 of grey: the same pixels as the input image once in uint8, a hair off in floats
    assert torch.allclose(video, image[:, None].expand_as(video).clamp(-0.999, 0.999), atol=1e-5 if mode != "blend" else 7e-4)
    for b in range(2):
        assert np.array_equal(to_uint8(video[b]), np.repeat(to_uint8(image[b : b + 1]), 5, axis=0))


def test_blend_paints_content_over_its_share():
    from s2vmodel.nets import UNetGenerator

    g = UNetGenerator(feat_dim=4, ngf=4, depth=2, residual=True, residual_mode="blend")
    assert g.out.out_channels == 4  # content (3) and its share (1)
    base = torch.tensor([0.98, -0.6, 0.2, 0.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    out = torch.zeros(1, 4, 2, 2)
    out[:, :3] = 0.5  # content tanh(0.5) everywhere
    out[0, 3] = torch.tensor([[30.0, 30.0], [-30.0, 0.0]])  # share 1, 1, 0 and 1/2
    frame = g._compose(out, base=base)
    content = math.tanh(0.5)
    assert torch.allclose(frame[0, :, 0, 0], torch.full((3,), content))  # a bright burst replaced whole: no ring, no hole
    assert torch.allclose(frame[0, :, 0, 1], torch.full((3,), content))
    assert torch.allclose(frame[0, :, 1, 0], base[0, :, 1, 0])  # share 0: the base
    assert torch.allclose(frame[0, :, 1, 1], torch.full((3,), 0.5 * content))
    with pytest.raises(ValueError, match="unknown residual mode"):
        UNetGenerator(feat_dim=4, ngf=4, depth=2, residual=True, residual_mode="sigmoid")


def test_with_the_previous_frame_each_frame_follows_its_predecessor():
    # deadzone 0: the tiny preset's would hold back the 0.01 steps this test follows
    config = tiny_model_config(residual=True, residual_mode="linear", previous_frame=True, deadzone=0.0, noise=0)
    model = S2VGenerator(config).eval()
    assert model.generator.down[0][0].in_channels == 6
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    feats = torch.rand(1, 6, 16)
    with torch.no_grad():
        for p in model.generator.out.parameters():  # a G that adds a constant to the previous frame
            p.zero_()
        model.generator.out.bias.fill_(0.01)
        video = model.generate_frames(image, feats)
        # frame t = (clamped) frame t - 1 + 0.01, from the input image on
        frame, expected = image, []
        for _ in range(6):
            frame = frame.clamp(-0.999, 0.999) + 0.01
            expected.append(frame)
        assert torch.allclose(video, torch.stack(expected, 1), atol=1e-5)
        # generating in two chunks, the second going on from the first's last frame, is the same
        first = model.generate_frames(image, feats[:, :4])
        assert torch.allclose(torch.cat([first, model.generate_frames(image, feats[:, 4:], first[:, -1])], 1), video, atol=1e-6)


def test_teacher_forcing_gives_each_frame_the_real_one_before_it():
    from s2vmodel.train import TrainGenerator

    model = S2VGenerator(tiny_model_config(residual=True, residual_mode="linear", previous_frame=True, noise=0)).eval()
    with torch.no_grad():
        model.generator.out.weight.zero_()
        model.generator.out.bias.zero_()  # G returns its base: the predecessor it is given
    train_g = TrainGenerator(model, frames=5)
    video = torch.rand(1, 5, 3, 64, 64) * 1.8 - 0.9
    image, spec, start = video[:, 0], torch.rand(1, 120, 736), torch.tensor([3])
    with torch.no_grad():
        out, content = train_g(image, spec, start, video)
        assert content is None  # linear residual: no blend content
        assert torch.allclose(out[:, 0], image, atol=1e-6)  # frame 0's predecessor is the input image
        assert torch.allclose(out[:, 1:], video[:, :-1], atol=1e-6)  # frame t's is the real frame t - 1
        own = torch.tensor([[False, False, True, False, False]])
        mixed, _ = train_g(image, spec, start, video, own)
        # frame 2 gets G's own guess of frame 1, which (G copying its base) is the real frame 0
        assert torch.allclose(mixed[:, 2], video[:, 0], atol=1e-6)
        assert torch.allclose(mixed[:, 3], video[:, 2], atol=1e-6)
