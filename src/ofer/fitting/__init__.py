"""Fitting a face model to an image (layer 3): landmarks -> shape, expression, head pose, camera.

::

    from ofer.fitting import FitOptions, LandmarkObservations, fit_landmarks, observe
    face = observe(image, box)                                   # MediaPipe, in image pixels
    obs = LandmarkObservations.from_mediapipe([face], image.shape[:2])
    fit = fit_landmarks(model, obs)                              # shape, code, placement, residuals
    fit = fit_landmarks(model, obs, FitOptions(photometric_steps=PHOTOMETRIC_STEPS), images=image[None])
    fit.placement.project(vertices)                              # (B, V, 2) pixels

Conventions (OpenCV): :mod:`ofer.fitting.placement`.
"""

from .calibration import landmark_calibration
from .albedo import AlbedoModel, albedo_model
from .fit import PHOTOMETRIC_STEPS, FitOptions, FitResult, fit_landmarks, focal_prior_px
from .observations import LandmarkObservations, model_points, observe, scheme_for
from .placement import Placement, project, rotation_angle_deg

__all__ = [
    "PHOTOMETRIC_STEPS",
    "AlbedoModel",
    "FitOptions",
    "FitResult",
    "LandmarkObservations",
    "albedo_model",
    "Placement",
    "fit_landmarks",
    "focal_prior_px",
    "landmark_calibration",
    "model_points",
    "observe",
    "project",
    "rotation_angle_deg",
    "scheme_for",
]
