"""FOCUS's model-based decoder (BASELINES.md A.12: theta's layout, theta = 0 is the mean face, frontal)."""

import pytest
import torch

from ofer.fitting.albedo import albedo_model
from ofer.methods.focus.decoder import FocusDecoder


@pytest.fixture(scope="module")
def decoder(default_model):
    return FocusDecoder(default_model, albedo_model(default_model), image_size=64)


def test_theta_layout(decoder, default_model):
    assert decoder.code_dim == default_model.shape_dim + default_model.expression_dim + decoder.albedo.rank + 27 + 6
    with pytest.raises(ValueError, match=r"theta must be \(B, "):
        decoder(torch.zeros(1, decoder.code_dim + 1))


def test_zero_theta_is_the_mean_face_frontal_under_ambient_light(decoder, default_model):
    params = decoder.split(torch.zeros(1, decoder.code_dim))
    assert not params.identity.any() and not params.expression.any() and not params.rotation.any()
    torch.testing.assert_close(params.translation, torch.tensor([[0.0, 0.0, decoder.distance]]))
    with torch.no_grad():
        out = decoder(torch.zeros(1, decoder.code_dim))
    torch.testing.assert_close(out.vertices, default_model().vertices)
    left, right = out.landmarks[0, 36:42, 0].mean(), out.landmarks[0, 42:48, 0].mean()
    assert abs((left + right) / 2 - 32) < 2 and right > left  # frontal and centred
    face = out.region[0, 0] > 0
    assert 0.15 < face.float().mean() < 0.6 and (out.image[0][:, ~face] == 0).all()
    colour = out.image[0][:, face].mean(1)
    mean_albedo = decoder.albedo.mean[default_model.front_mask].mean(0)
    assert (colour - mean_albedo).abs().max() < 0.1  # ambient light of radiance 1 shows the albedo


def test_gradients_reach_every_part_of_theta_but_the_region_is_hard(decoder):
    theta = (0.1 * torch.randn(2, decoder.code_dim, generator=torch.Generator().manual_seed(0))).requires_grad_()
    out = decoder(theta)
    assert not out.region.requires_grad
    (out.image.sum() + out.landmarks.sum()).backward()
    sizes = torch.split(theta.grad, decoder.sizes, dim=1)
    assert all(part.abs().sum() > 0 for part in sizes)
