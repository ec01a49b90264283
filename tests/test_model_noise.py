"""A generator with a random map: the map decides what G draws where the sound cannot tell; min of K picks the closest."""

import numpy as np
import pytest
import torch

from s2vmodel import losses
from s2vmodel.config import ModelConfig
from s2vmodel.generate import generate_array
from s2vmodel.model import S2VGenerator


def _model(noise: int) -> S2VGenerator:
    torch.manual_seed(0)
    config = ModelConfig(se_hidden=8, ngf=8, g_depth=3, residual=True, noise=noise, image_size=32)
    model = S2VGenerator(config)
    # a trained-looking last layer (a residual G starts as the identity, whatever the map)
    torch.nn.init.normal_(model.generator.out.weight, std=0.3)
    return model.eval()


def test_the_map_changes_the_frames_and_the_same_seed_gives_the_same_video():
    model = _model(noise=2)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    feats = torch.randn(1, 5, model.config.feat_dim)
    with torch.no_grad():
        a = model.generate_frames(image, feats, noise=model.draw_noise(image, seed=1))
        b = model.generate_frames(image, feats, noise=model.draw_noise(image, seed=2))
        again = model.generate_frames(image, feats, noise=model.draw_noise(image, seed=1))
        default = model.generate_frames(image, feats)  # seed 0
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(a, again)
    assert torch.equal(default, model.generate_frames(image, feats, noise=model.draw_noise(image, seed=0)))
    with pytest.raises(ValueError, match="random map"):
        model.generator(image, feats)


def test_generating_in_chunks_keeps_one_map_for_the_whole_clip():
    model = _model(noise=1)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    audio = np.random.default_rng(1).standard_normal(44100).astype(np.float32) * 0.1
    video = generate_array(model, image=image, audio=audio)
    assert video.shape == (30, 32, 32, 3)
    assert np.array_equal(video, generate_array(model, image=image, audio=audio))
    assert model.draw_noise(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    assert _model(noise=0).draw_noise(torch.zeros(1, 3, 32, 32)) is None


def test_the_per_clip_losses_are_each_clips_own_loss():
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(3, 4, 3, 8, 8, generator=gen)
    fake = torch.rand(3, 4, 3, 8, 8, generator=gen)
    image = real[:, 0]
    per_l1 = losses.l1_per_clip(fake, real)
    per_motion = losses.motion_l1_per_clip(fake, real, image=image)
    for b in range(3):
        assert torch.allclose(per_l1[b], losses.l1_loss(fake[b : b + 1], real[b : b + 1]))
        assert torch.allclose(per_motion[b], losses.motion_l1_loss(fake[b : b + 1], real[b : b + 1], image=image[b : b + 1]))
        symmetric = losses.motion_l1_per_clip(fake, real, image=image, symmetric=True)[b]
        whole = losses.motion_l1_loss(fake[b : b + 1], real[b : b + 1], image=image[b : b + 1], symmetric=True)
        assert torch.allclose(symmetric, whole)
    # the closest of two samples: a perfect second sample makes the clip's loss 0
    both = torch.cat([fake, real])
    closest = losses.l1_per_clip(both, torch.cat([real, real])).reshape(2, 3).min(dim=0).values
    assert torch.equal(closest, torch.zeros(3))


def test_a_generator_that_sees_its_previous_frame_sees_the_same_map_every_frame():
    torch.manual_seed(0)
    config = ModelConfig(
        se_hidden=8, ngf=8, g_depth=3, residual=True, noise=1, previous_frame=True, previous_base=False, image_size=32
    )
    model = S2VGenerator(config).eval()
    torch.nn.init.normal_(model.generator.out.weight, std=0.3)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    feats = torch.randn(1, 4, config.feat_dim)
    with torch.no_grad():
        whole = model.generate_frames(image, feats)
        # in two chunks, the second going on from the first's last frame with the same map
        first = model.generate_frames(image, feats[:, :2])
        second = model.generate_frames(image, feats[:, 2:], first[:, -1])
    assert whole.shape == (1, 4, 3, 32, 32)
    assert torch.allclose(whole, torch.cat([first, second], dim=1), atol=1e-6)
