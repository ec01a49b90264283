"""The residual G's deadzone (model.deadzone): when generating, small changes of the input become exactly none."""

import pytest
import torch

from s2vmodel.config import ModelConfig
from s2vmodel.model import S2VGenerator
from s2vmodel.nets import UNetGenerator
from s2vmodel.nets.generator import shrink


def test_shrink_is_a_soft_threshold():
    x = torch.tensor([-0.05, -0.03, -0.02, 0.0, 0.01, 0.03, 0.04])
    assert torch.allclose(shrink(x, 0.03), torch.tensor([-0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01]), atol=1e-7)


def _linear_g(*, deadzone: float, bias: float) -> UNetGenerator:
    g = UNetGenerator(feat_dim=4, ngf=4, depth=2, residual=True, residual_mode="linear", deadzone=deadzone)
    torch.nn.init.constant_(g.out.bias, bias)  # the last layer's weights stay zero: the change is `bias` everywhere
    return g.eval()


def test_changes_inside_the_deadzone_leave_the_input_pixels_and_larger_ones_shrink():
    image = torch.rand(1, 3, 16, 16) * 1.6 - 0.8
    feats = torch.randn(1, 5, 4)
    still = _linear_g(deadzone=0.03, bias=0.02)(image, feats)
    assert torch.equal(still, image[:, None].expand_as(still))  # bit for bit: quiet frames are the input itself
    assert (still[:, 1:] == still[:, :-1]).all()  # no frame-to-frame motion at all
    moved = _linear_g(deadzone=0.03, bias=0.05)(image, feats)
    assert torch.allclose(moved - image[:, None], torch.full_like(moved, 0.02), atol=1e-6)
    # without the deadzone the same small change passes unchanged
    plain = _linear_g(deadzone=0.0, bias=0.02)(image, feats)
    assert torch.allclose(plain - image[:, None], torch.full_like(plain, 0.02), atol=1e-6)


def test_training_sees_the_changes_unthresholded_so_the_l1_keeps_pulling_them_to_zero():
    g = _linear_g(deadzone=0.03, bias=0.02).train()
    image = torch.zeros(2, 3, 16, 16)
    out = g(image, torch.randn(2, 3, 4))
    assert torch.allclose(out, torch.full_like(out, 0.02), atol=1e-6)  # the small change is there while training
    out.abs().mean().backward()  # the real frames equal the input: the loss pulls the change back to zero
    assert g.out.bias.grad is not None and (g.out.bias.grad > 0).all()
    g.eval()
    with torch.no_grad():
        assert torch.equal(g(image, torch.randn(2, 3, 4)), torch.zeros(2, 3, 3, 16, 16))


def test_deadzone_is_in_the_config_and_leaves_a_plain_g_alone():
    with pytest.raises(ValueError, match="deadzone"):
        UNetGenerator(feat_dim=4, ngf=4, depth=2, residual=True, deadzone=-0.1)
    model = S2VGenerator(ModelConfig(ngf=4, g_depth=2, se_hidden=4, residual=True, deadzone=0.03))
    assert model.generator.deadzone == 0.03
    # a G that is not residual makes whole frames, not changes: the deadzone has nothing to act on
    plain = UNetGenerator(feat_dim=4, ngf=4, depth=2, residual=False, deadzone=0.03).eval()
    torch.nn.init.zeros_(plain.out.weight)
    torch.nn.init.constant_(plain.out.bias, 0.01)
    with torch.no_grad():
        out = plain(torch.zeros(1, 3, 16, 16), torch.randn(1, 2, 4))
    assert torch.allclose(out, torch.full_like(out, torch.tanh(torch.tensor(0.01)).item()), atol=1e-6)
