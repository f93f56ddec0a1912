"""The landmark fitter: exact recovery on synthetic landmarks, per-point weights, the OpenCV convention."""

import math

import numpy as np
import pytest
import torch

from ofer.config import ConfigError
from ofer.fitting import FitOptions, LandmarkObservations, Placement, fit_landmarks, project, rotation_angle_deg
from ofer.fitting.observations import scheme_embedding
from ofer.render.cameras import FRONTAL_R, head_rotation


def _scene(model, yaw, pitch, roll, expression=None, distance=0.9, focal=800.0, size=256):
    """Exact 478-point landmarks of the neutral shape with ``expression`` under a known camera."""
    rotation = (FRONTAL_R @ head_rotation(yaw, pitch, roll)).double()
    code = torch.zeros(1, model.code_dim) if expression is None else expression
    with torch.no_grad():
        points = model.surface_points(torch.zeros(1, model.shape_dim), *model.split_code(code),
                                      *scheme_embedding(model, "mediapipe478")).double()
    centre = points[0].mean(0)
    translation = (torch.tensor([0.01, -0.02, distance], dtype=torch.float64) - rotation[0] @ centre)[None]
    k = torch.tensor([[[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]]], dtype=torch.float64)
    pixels = project(points, rotation, translation, k)
    return pixels.float(), rotation, code


def test_pose_mode_recovers_a_known_pose_from_exact_landmarks(default_model):
    pixels, rotation, code = _scene(default_model, yaw=25.0, pitch=-10.0, roll=6.0)
    obs = LandmarkObservations.from_points(pixels, (256, 256))
    fit = fit_landmarks(default_model, obs, FitOptions(mode="pose", calibrate=False, fov_deg=18.0),
                        shape=torch.zeros(1, default_model.shape_dim), code=code)
    assert rotation_angle_deg(fit.placement.rotation.numpy(), rotation.numpy())[0] < 0.5
    assert fit.reprojection_error.item() < 0.3  # pixels


def test_full_fit_recovers_a_known_expression_and_pose(default_model):
    code = torch.zeros(1, default_model.code_dim)
    names = default_model.expression_names
    code[0, names.index("jawOpen")] = 0.6
    code[0, names.index("mouthSmileLeft")] = 0.7
    code[0, names.index("mouthSmileRight")] = 0.7
    pixels, rotation, _ = _scene(default_model, yaw=-15.0, pitch=5.0, roll=0.0, expression=code)
    obs = LandmarkObservations.from_points(pixels, (256, 256))
    fit = fit_landmarks(default_model, obs, FitOptions(calibrate=False, expression_prior=0.01))
    assert rotation_angle_deg(fit.placement.rotation.numpy(), rotation.numpy())[0] < 2.0
    assert abs(fit.code[0, names.index("jawOpen")].item() - 0.6) < 0.15
    smile = fit.code[0, [names.index("mouthSmileLeft"), names.index("mouthSmileRight")]].mean().item()
    assert smile > 0.4
    assert fit.reprojection_error.item() < 1.0


def test_a_point_with_weight_zero_has_no_influence(default_model):
    pixels, _, code = _scene(default_model, yaw=10.0, pitch=0.0, roll=0.0)
    weights = torch.ones(1, 478)
    weights[0, :40] = 0.0
    moved = pixels.clone()
    moved[0, :40] += 60.0  # an occluder's false detections
    options = FitOptions(calibrate=False, rigid_steps=40, full_steps=40)
    clean = fit_landmarks(default_model, LandmarkObservations.from_points(pixels, (256, 256), weights), options)
    noisy = fit_landmarks(default_model, LandmarkObservations.from_points(moved, (256, 256), weights), options)
    assert torch.equal(clean.shape, noisy.shape) and torch.equal(clean.code, noisy.code)
    assert torch.equal(clean.placement.rotation, noisy.placement.rotation)
    # ... while with weight 1 the same points pull the fit away
    pulled = fit_landmarks(default_model, LandmarkObservations.from_points(moved, (256, 256)), options)
    assert (pulled.placement.translation - clean.placement.translation).abs().max() > 1e-3


def test_drop_masked_zeroes_the_points_under_the_mask():
    points = torch.tensor([[[10.5, 10.5], [50.2, 20.7], [200.0, 5.0]] + [[1.0, 1.0]] * 65])
    mask = np.zeros((64, 64), dtype=bool)
    mask[20:30, 45:55] = True  # covers the second point; the third lies outside the 64 x 64 image
    obs = LandmarkObservations.from_points(points, (64, 64)).drop_masked(mask)
    assert obs.weights[0, :3].tolist() == [1.0, 0.0, 0.0]


def test_projection_follows_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    points = rng.normal(0, 0.05, (1, 20, 3))
    rvec, tvec = np.array([0.1, -0.3, 0.05]), np.array([0.02, -0.01, 0.8])
    k = np.array([[700.0, 0, 120], [0, 710.0, 130], [0, 0, 1]])
    expected, _ = cv2.projectPoints(points[0], rvec, tvec, k, None)
    rotation = cv2.Rodrigues(rvec)[0]
    placement = Placement(torch.as_tensor(rotation[None]), torch.as_tensor(tvec[None]), torch.as_tensor(k[None]),
                          "perspective", (256, 256))
    assert np.allclose(placement.project(torch.as_tensor(points)).numpy()[0], expected[:, 0], atol=1e-9)
    cameras = placement.cameras()  # the renderer's camera lands the points on the same pixels
    screen = cameras.transform_points_screen(torch.as_tensor(points, dtype=torch.float32))[0, :, :2]
    assert np.allclose(screen.numpy(), expected[:, 0], atol=1e-3)


def test_fit_does_not_depend_on_the_batch(default_model):
    a, _, _ = _scene(default_model, yaw=20.0, pitch=0.0, roll=0.0)
    b, _, _ = _scene(default_model, yaw=-20.0, pitch=8.0, roll=3.0)
    options = FitOptions(calibrate=False, rigid_steps=30, full_steps=30)
    alone = fit_landmarks(default_model, LandmarkObservations.from_points(b, (256, 256)), options)
    both = fit_landmarks(default_model, LandmarkObservations.from_points(torch.cat([a, b]), (256, 256)), options)
    assert torch.allclose(alone.shape[0], both.shape[1], atol=1e-4)
    assert torch.allclose(alone.placement.rotation[0], both.placement.rotation[1], atol=1e-5)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="mode"):
        FitOptions(mode="magic")
    with pytest.raises(ConfigError, match="fov_deg"):
        FitOptions(fov_deg=0.0)
    assert math.isclose(FitOptions().fov_deg, 20.0)


def test_pose_mode_needs_shape_and_code(default_model):
    pixels, _, _ = _scene(default_model, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="pose"):
        fit_landmarks(default_model, LandmarkObservations.from_points(pixels, (256, 256)), FitOptions(mode="pose"))


def test_the_built_in_head_ships_a_calibration_of_mediapipe(default_model):
    from ofer.fitting import landmark_calibration

    calibration = landmark_calibration(default_model, "mediapipe478")
    assert calibration is not None, "scripts/calibrate_landmarks.py writes src/ofer/fitting/data/mediapipe478_*.npz"
    assert calibration.bias.shape == (478, 3) and calibration.sigma.shape == (478,)
    assert torch.isfinite(calibration.bias).all() and (calibration.sigma > 0).all()
    assert landmark_calibration(default_model, "ibug68") is None  # none shipped for the 68 points


def test_the_rotation_prior_pulls_towards_the_detectors_head_rotation(default_model, monkeypatch):
    from ofer.fitting import fit as fit_module
    from ofer.fitting.calibration import LandmarkCalibration

    identity = LandmarkCalibration(bias=torch.zeros(478, 3), sigma=torch.ones(478), rotation_offset=torch.eye(3))
    monkeypatch.setattr(fit_module, "landmark_calibration", lambda model, scheme: identity)
    pixels, rotation, code = _scene(default_model, yaw=10.0, pitch=0.0, roll=0.0)
    target = (FRONTAL_R @ head_rotation(20.0, 0.0, 0.0)).double()  # the detector says 20 degrees of yaw
    obs = LandmarkObservations.from_points(pixels, (256, 256), rotation=target[None])
    shape = torch.zeros(1, default_model.shape_dim)
    angles = {}
    for weight in (0.0, 100.0):
        fit = fit_landmarks(default_model, obs, FitOptions(mode="pose", rotation_prior=weight, fov_deg=18.0),
                            shape=shape, code=code)
        angles[weight] = rotation_angle_deg(fit.placement.rotation.numpy(), target.numpy())[0]
    assert abs(angles[0.0] - 10.0) < 0.5  # off: the landmarks alone, 10 degrees from the detector's rotation
    assert angles[100.0] < 5.0  # a strong prior pulls the pose more than halfway towards it


def test_a_shared_shape_fit_gives_one_identity_and_per_picture_expressions(default_model):
    names = default_model.expression_names
    smile = torch.zeros(1, default_model.code_dim)
    smile[0, names.index("mouthSmileLeft")] = smile[0, names.index("mouthSmileRight")] = 0.8
    neutral, _, _ = _scene(default_model, yaw=12.0, pitch=0.0, roll=0.0)
    smiling, _, _ = _scene(default_model, yaw=-18.0, pitch=6.0, roll=2.0, expression=smile)
    options = FitOptions(calibrate=False, rigid_steps=40, full_steps=60, expression_prior=0.01)
    obs = LandmarkObservations.from_points(torch.cat([neutral, smiling]), (256, 256))
    both = fit_landmarks(default_model, obs, options, shared_shape=True)
    assert torch.equal(both.shape[0], both.shape[1])
    smiles = both.code[:, [names.index("mouthSmileLeft"), names.index("mouthSmileRight")]].mean(1)
    assert smiles[1] > smiles[0] + 0.15  # the expression stays per picture
    # two copies of one picture: the data and the prior both count twice, so the optimum (and, with
    # Adam's scale invariance, the path) is the single picture's fit
    single = fit_landmarks(default_model, LandmarkObservations.from_points(smiling, (256, 256)), options)
    twice = fit_landmarks(default_model, LandmarkObservations.from_points(smiling.repeat(2, 1, 1), (256, 256)),
                          options, shared_shape=True)
    assert torch.allclose(twice.shape[0], single.shape[0], atol=1e-3)
    assert torch.allclose(twice.code[1], single.code[0], atol=1e-3)
    unshared = fit_landmarks(default_model, obs, options)
    assert not torch.equal(unshared.shape[0], unshared.shape[1])
