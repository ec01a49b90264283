"""Known answers of the GAN and reconstruction maths, and of which frames the discriminators see."""

import math

import pytest
import torch

from s2vmodel import losses


def test_bce_is_the_papers_log_form_and_g_is_non_saturating():
    real, fake = torch.tensor([0.0]), torch.tensor([0.0])
    assert math.isclose(float(losses.d_loss(real, fake, kind="bce")), 2 * math.log(2), rel_tol=1e-6)
    # -log D(fake) stays steep where D is sure the fake is fake (log(1 - D) would flatten)
    sure = torch.tensor([-10.0], requires_grad=True)
    losses.g_adv_loss(sure, kind="bce").backward()
    assert float(sure.grad) < -0.99


def test_hinge_values():
    assert float(losses.d_loss(torch.tensor([2.0]), torch.tensor([-2.0]), kind="hinge")) == 0.0
    assert float(losses.d_loss(torch.tensor([0.0]), torch.tensor([0.5]), kind="hinge")) == 2.5
    assert float(losses.g_adv_loss(torch.tensor([0.5, 1.5]), kind="hinge")) == -1.0
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        losses.d_loss(torch.zeros(1), torch.zeros(1), kind="wgan")


def test_motion_l1_counts_only_pixels_that_move():
    image = torch.zeros(1, 3, 4, 4)
    real = torch.zeros(1, 2, 3, 4, 4)
    real[0, 1, :, 0, 0] = 1.0  # one pixel moves in frame 1
    still = image[:, None].expand_as(real)
    wrong_elsewhere = real.clone()
    wrong_elsewhere[0, :, :, 3, 3] = 1.0  # an error where nothing moves
    assert float(losses.motion_l1_loss(real, real, image=image)) == 0.0
    assert float(losses.motion_l1_loss(wrong_elsewhere, real, image=image)) == 0.0
    assert float(losses.motion_l1_loss(still, real, image=image)) > 0.9  # the still image misses all the motion
    # symmetric: motion made up where nothing moved costs as much as motion missed where something did
    assert float(losses.motion_l1_loss(real, real, image=image, symmetric=True)) == 0.0
    # 2 made-up pixel errors over 3 moving pixels (1 real, 2 made up) in all: 2/3 of the weighted L1
    assert float(losses.motion_l1_loss(wrong_elsewhere, real, image=image, symmetric=True)) == pytest.approx(
        2 / 3, rel=0.02
    )  # (eps in the normaliser)
    assert float(losses.motion_l1_loss(still, real, image=image, symmetric=True)) > 0.9
    fake = wrong_elsewhere.clone().requires_grad_(True)
    losses.motion_l1_loss(fake, real, image=image, symmetric=True).backward()
    assert float(fake.grad[0, 0, 0, 3, 3]) > 0  # the made-up pixel is pushed back towards the image


def test_temporal_l1_compares_changes_not_frames():
    real = torch.zeros(1, 4, 3, 2, 2)
    real[0, 2:] = 0.5  # one change, between frames 1 and 2
    assert float(losses.temporal_l1_loss(real + 0.3, real)) == 0.0  # an offset that holds still costs nothing here
    shimmer = real.clone()
    shimmer[0, 1] += 0.1  # up and down again where the real clip holds still
    assert float(losses.temporal_l1_loss(shimmer, real)) == pytest.approx(0.2 / 3)
    assert float(losses.temporal_l1_loss(real[:, :1].expand_as(real), real)) == pytest.approx(0.5 / 3)  # the change missed


def test_frames_and_windows_pick_the_same_places_in_real_and_fake():
    video = torch.arange(2 * 20).float().view(2, 20, 1, 1, 1).expand(2, 20, 3, 2, 2)
    index = torch.tensor([[3, 7], [0, 19]])
    frames = losses.take_frames(video, index)
    assert frames.shape == (4, 3, 2, 2)
    assert frames[:, 0, 0, 0].tolist() == [3, 7, 20, 39]
    clips = losses.take_windows(video, torch.tensor([0, 4]), length=16)
    assert clips.shape == (2, 3, 16, 2, 2)
    assert clips[1, 0, :, 0, 0].tolist() == [float(20 + 4 + i) for i in range(16)]
    g = torch.Generator().manual_seed(0)
    starts = losses.window_starts(batch=100, frames=20, length=16, generator=g)
    assert int(starts.min()) >= 0 and int(starts.max()) <= 4
