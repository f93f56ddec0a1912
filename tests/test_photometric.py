"""The fitter's photometric term: closed-form light and albedo, masks, and a refinement that helps."""

import numpy as np
import pytest
import torch

from ofer.evaluation.metrics import aligned_rms
from ofer.fitting import FitOptions, LandmarkObservations, Placement, fit_landmarks, model_points
from ofer.fitting.albedo import albedo_model
from ofer.fitting.photometric import PhotometricTerm, blur, sample
from ofer.render.cameras import FRONTAL_R, head_rotation
from ofer.render.raster_torch import TorchRasterizer
from ofer.render.renderer import MeshRenderer
from ofer.render.shading import SHShader, sh_from_lights

SIZE = 192


def _render(model, shape, yaw=12.0, coef=None, sh=None):
    """A picture of ``shape`` under a known placement, light and low-rank albedo: (image, placement, sh, coef)."""
    rotation = (FRONTAL_R @ head_rotation(yaw, -4.0, 2.0)).float()
    with torch.no_grad():
        vertices = model(shape).vertices.float()
    centre = vertices[0].mean(0)
    translation = (torch.tensor([0.0, 0.0, 0.8]) - rotation[0] @ centre)[None]
    k = torch.tensor([[[700.0, 0, SIZE / 2], [0, 700.0, SIZE / 2], [0, 0, 1]]])
    placement = Placement(rotation, translation, k, "perspective", (SIZE, SIZE))
    albedo = albedo_model(model)
    coef = torch.zeros(1, albedo.rank) if coef is None else coef
    sh = sh_from_lights(ambient=0.45, direction=torch.tensor([[0.4, -0.3, -1.0]]), intensity=0.5) if sh is None else sh
    renderer = MeshRenderer(TorchRasterizer(), SHShader(background=(0.2, 0.3, 0.4)))
    with torch.no_grad():
        out = renderer(vertices, model.faces, placement.cameras(), albedo(coef).clamp(0, 1), sh)
    return out.image[0].clamp(0, 1).numpy(), placement, vertices, sh, coef


def test_the_built_in_head_ships_a_low_rank_albedo(default_model):
    albedo = albedo_model(default_model)
    assert albedo.rank == 10 and albedo.mean.shape == (default_model.num_vertices, 3)
    assert albedo.truncated(3).rank == 3
    assert torch.allclose(albedo(torch.zeros(2, 10)), albedo.mean.expand(2, -1, -1))


def test_sampling_reads_pixel_centres_and_blur_keeps_a_constant():
    picture = torch.arange(12.0).reshape(1, 3, 4)  # (C, H, W)
    values = sample(picture[None], torch.tensor([[[2.5, 1.5], [0.5, 0.5], [1.0, 0.5]]]))[0, :, 0]
    assert np.allclose(values.tolist(), [6.0, 0.0, 0.5], atol=1e-5)  # pixel (x=2, y=1), pixel (0, 0), halfway between two pixels
    flat = torch.full((3, 9, 9), 0.25)
    assert torch.allclose(blur(flat, 1.5), flat)


def test_closed_form_light_and_albedo_reproduce_a_render(default_model):
    shape = torch.zeros(1, default_model.shape_dim)
    coef = torch.zeros(1, 10)
    coef[0, 0] = 1.5
    image, placement, vertices, _, _ = _render(default_model, shape, coef=coef)
    term = PhotometricTerm(default_model, image[None], blur_px=0.0)
    term.initialise(vertices, placement)
    predicted, observed, mask = term.predicted(vertices, placement)
    assert mask.sum() > 500
    error = (predicted - observed).norm(dim=-1)[mask]
    assert error.median() < 0.01  # colour units, the picture is in [0, 1]
    # (the tone component and the light's per-channel gain are confounded: only the product is identifiable)
    shifted = Placement(placement.rotation, placement.translation + torch.tensor([[0.004, 0.0, 0.0]]),
                        placement.intrinsics, placement.projection, placement.image_size)  # about 3.5 px
    assert term.loss(vertices, shifted).item() > 2 * term.loss(vertices, placement).item()


def test_masked_pixels_are_not_compared(default_model):
    shape = torch.zeros(1, default_model.shape_dim)
    image, placement, vertices, _, _ = _render(default_model, shape)
    mask = np.ones((1, SIZE, SIZE), bool)
    mask[:, : SIZE // 2] = False  # the upper half is "occluded"
    term = PhotometricTerm(default_model, image[None], masks=mask)
    term.refresh(vertices, placement)
    rows = placement.project(vertices)[0, :, 1]
    assert term.visible[0].any()
    assert (rows[term.visible[0]] >= SIZE // 2 - 1).all()


def test_photometric_refinement_needs_the_pictures(default_model):
    obs = LandmarkObservations.from_points(torch.rand(1, 478, 2) * 100 + 50, (SIZE, SIZE))
    with pytest.raises(ValueError, match="needs the pictures"):
        fit_landmarks(default_model, obs, FitOptions(photometric_steps=5))


def test_photometric_refinement_brings_the_shape_closer(default_model):
    """Landmarks alone (biased, as a detector's: the face 6 % too narrow) vs plus the picture: the shape improves."""
    shape = default_model.sample_prior(1, torch.Generator().manual_seed(5)).shape
    image, placement, _, _, _ = _render(default_model, shape)
    with torch.no_grad():
        points = model_points(default_model, default_model(shape).vertices, "mediapipe478")
    pixels = placement.project(points.float())
    centre = pixels.mean(1, keepdim=True)
    pixels = centre + (pixels - centre) * torch.tensor([0.94, 1.0])
    pixels = pixels + torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0)) * 0.5
    obs = LandmarkObservations.from_points(pixels, (SIZE, SIZE))
    base = FitOptions(calibrate=False, rotation_prior=0.0)
    landmarks_only = fit_landmarks(default_model, obs, base)
    refined = fit_landmarks(default_model, obs, base.replace(photometric_steps=200),
                            images=(image[None] * 255).astype(np.uint8))
    front = default_model.front_mask

    def error(fit):
        with torch.no_grad():
            return aligned_rms(default_model(fit.shape).vertices[0].numpy(), default_model(shape).vertices[0].numpy(),
                               front.numpy()) * 1000

    assert refined.albedo_coef is not None and refined.sh.shape == (1, 9, 3)
    assert landmarks_only.albedo_coef is None
    assert error(refined) < 0.85 * error(landmarks_only), (error(refined), error(landmarks_only))
