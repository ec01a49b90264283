"""Previous-frame conditioning: which frame a residual G changes (model.previous_base)."""

import torch

from s2vmodel.config import ModelConfig
from s2vmodel.model import S2VGenerator
from s2vmodel.nets import UNetGenerator


def _g(*, previous_base: bool, bias: float = 0.1) -> UNetGenerator:
    g = UNetGenerator(
        feat_dim=4, ngf=4, depth=2, residual=True, residual_mode="linear", previous=True, previous_base=previous_base
    )
    torch.nn.init.constant_(g.out.bias, bias)  # zero last-layer weights: the change is `bias` at every pixel
    return g.eval()


def test_a_residual_g_changes_the_previous_frame_or_the_input_image():
    image = torch.full((1, 3, 8, 8), -0.5)
    previous = torch.full((1, 2, 3, 8, 8), 0.3)
    feats = torch.randn(1, 2, 4)
    on_previous = _g(previous_base=True)(image, feats, previous)
    assert torch.allclose(on_previous, torch.full_like(on_previous, 0.4), atol=1e-6)
    on_image = _g(previous_base=False)(image, feats, previous)
    assert torch.allclose(on_image, torch.full_like(on_image, -0.4), atol=1e-6)


def test_generating_from_the_image_base_does_not_accumulate_a_constant_change():
    # frame by frame, each from the one before: a change of the previous frame adds up (0.1 per frame), one of the
    # input image does not, whatever the frames before were
    config = dict(ngf=4, g_depth=2, se_hidden=2, residual=True, residual_mode="linear", previous_frame=True)
    image = torch.zeros(1, 3, 8, 8)
    feats = torch.randn(1, 4, 4)
    for previous_base, expected in ((True, [0.1, 0.2, 0.3, 0.4]), (False, [0.1, 0.1, 0.1, 0.1])):
        model = S2VGenerator(ModelConfig(**config, previous_base=previous_base)).eval()
        torch.nn.init.constant_(model.generator.out.bias, 0.1)
        with torch.no_grad():
            frames = model.generate_frames(image, feats)
        assert torch.allclose(frames.mean(dim=(0, 2, 3, 4)), torch.tensor(expected), atol=1e-5)
