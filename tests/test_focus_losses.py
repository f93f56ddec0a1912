"""FOCUS's losses and preliminary masks on constructed inputs (BASELINES.md A.12, "Losses")."""

import pytest
import torch

from ofer.methods.focus.losses import (
    PRESETS,
    area_loss,
    binary_loss,
    feature_distance,
    landmark_loss,
    landmark_weights,
    neighbour_loss,
    perceptual_loss,
    pixel_loss,
    preliminary_mask,
    reconstruction_loss,
    regularisation_loss,
    segmentation_loss,
)


def _image(seed=0, size=24):
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _interior(size=24, border=3):
    region = torch.zeros(2, 1, size, size)
    region[..., border:-border, border:-border] = 1.0
    return region


def test_neighbour_loss_tolerates_one_pixel_not_two():
    render, region, mask = _image(), _interior(), torch.ones(2, 1, 24, 24)
    one = torch.roll(render, shifts=(1, -1), dims=(2, 3))
    two = torch.roll(render, shifts=2, dims=3)
    assert neighbour_loss(one, render, region, mask) < 1e-6
    assert neighbour_loss(two, render, region, mask) > 0.02
    assert neighbour_loss(two, render, region, torch.zeros_like(mask)) == 0
    assert neighbour_loss(two, render, region, mask, window=5) < 1e-6  # the code's 5x5 window reaches 2 px


def test_neighbour_loss_squared_or_not():
    render, region, mask = torch.zeros(1, 3, 8, 8), torch.ones(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    target = torch.full((1, 3, 8, 8), 0.5)  # every neighbour 0.5 away in each channel: ||d||^2 = 0.75
    assert neighbour_loss(target, render, region, mask) == pytest.approx(0.75)
    assert neighbour_loss(target, render, region, mask, squared=False) == pytest.approx(0.75 ** 0.5, abs=1e-4)
    code = PRESETS["code"]
    assert code.window == 5 and not code.squared and PRESETS["paper"].window == 3 and PRESETS["paper"].squared


def test_area_loss_counts_only_the_rendered_region():
    region = _interior()
    assert area_loss(region, torch.ones_like(region)) == pytest.approx(-1.0)
    assert area_loss(region, torch.zeros_like(region)) == 0
    half = torch.zeros_like(region)
    half[..., :12] = 1.0
    outside = half + (1 - region) * 0.7  # changing the mask outside R changes nothing
    assert area_loss(region, outside) == pytest.approx(area_loss(region, half).item())
    assert area_loss(region, half) == pytest.approx(-0.5)


def test_binary_loss_lowest_for_binary_masks_zero_at_a_half():
    region = _interior()
    half = torch.full_like(region, 0.5)
    binary = (torch.rand_like(region) > 0.5).float()
    assert binary_loss(region, half, "square") == pytest.approx(0.0, abs=1e-7)
    ones = torch.ones_like(region)  # [C]: 0.5 - mean |R M - 0.5|, from 0.5 at M = 0.5 to 0 for a 0/1 mask
    assert binary_loss(ones, half, "l1") == pytest.approx(0.5) and binary_loss(ones, binary, "l1") == 0
    for form in ("square", "l1"):
        assert binary_loss(region, binary, form) < binary_loss(region, half * 0.9 + 0.05, form)
    assert binary_loss(region, binary, "square") == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="form"):
        binary_loss(region, half, "cube")


def test_feature_distances_are_zero_for_equal_features_and_bounded():
    a = torch.randn(2, 8, 5, 5)
    assert feature_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert feature_distance(a, -a) == pytest.approx(2.0, abs=1e-6)
    assert 0.0 <= feature_distance(a, torch.randn(2, 8, 5, 5)) <= 2.0
    e = torch.nn.functional.normalize(torch.randn(3, 512), dim=1)
    assert perceptual_loss(e, e) == pytest.approx(0.0, abs=1e-6)


def test_shallow_presv_is_zero_for_an_all_ones_mask():
    from ofer.frontend.encoders.arcface_torch import torch_arcface

    net = torch_arcface()
    target = _image(3, 112)
    with torch.no_grad():
        masked, clean = net(target * torch.ones(2, 1, 112, 112)).shallow, net(target).shallow
        other = net(_image(4, 112)).shallow
    assert feature_distance(masked, clean) == pytest.approx(0.0, abs=1e-6)
    assert feature_distance(other, clean) > 1e-3


def test_pixel_loss_is_masked_and_normalised():
    target, render = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    render[..., :2] = 1.0  # error ||(1,1,1)||^2 = 3 on the left half
    region, mask = torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    mask[..., 1:3] = 1.0  # half of the masked pixels are wrong
    assert pixel_loss(target, render, region, mask) == pytest.approx(1.5)
    assert pixel_loss(target, render, region, mask, squared=False) == pytest.approx(3 ** 0.5 / 2, abs=1e-4)


def test_landmark_weights_and_loss():
    w = landmark_weights()
    assert w.sum() == 68 - 11 + 11 * 20 and w[27] == 1 and w[28] == 20 and w[30] == 20 and w[59] == 1 and w[60] == 20
    target, predicted = torch.zeros(1, 68, 2), torch.zeros(1, 68, 2)
    predicted[0, 28, 0] = 1.0  # weight inside the square: (20 * 1)^2 / (68 * 2)
    assert landmark_loss(target, predicted) == pytest.approx(400 / 136)


def test_regularisation_covers_the_model_coefficients_only():
    assert regularisation_loss(torch.ones(2, 3), torch.zeros(2, 2), torch.full((2, 1), 2.0)) == pytest.approx(
        (3 + 4) / 6)


def test_preliminary_mask():
    target, region = _image(), _interior()
    torch.testing.assert_close(preliminary_mask(target, target, region), region)
    just_above = target + (0.17 / 3) ** 0.5 + 1e-3  # squared RGB error just above xi
    assert preliminary_mask(target, just_above, region).sum() == 0
    assert preliminary_mask(target, target + 0.05, region, xi=0.17, kind="norm").sum() == region.sum()
    render = target.clone().requires_grad_()
    assert not preliminary_mask(target, render, region).requires_grad
    with pytest.raises(ValueError, match="kind"):
        preliminary_mask(target, target, region, kind="abs")


def test_default_weights_and_the_code_preset():
    paper, code = PRESETS["paper"], PRESETS["code"]
    assert paper.eta == (15.0, 3.0, 0.5, 2.5, 10.0) and paper.lam == (0.5, 0.25, 5e-4, 0.1)
    assert code.eta[3] == 0.25
    terms = {k: torch.tensor(1.0) for k in ("nbr", "dist", "area", "presv", "bin", "pixel", "per", "lm", "reg")}
    assert segmentation_loss(terms, paper) == pytest.approx(31.0)
    assert reconstruction_loss(terms, paper) == pytest.approx(0.8505)
