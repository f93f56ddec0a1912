"""Reconstructions in the image frame: the head pose and camera of every mesh, fitted to the photo.

The 1 + M meshes of a :class:`~ofer.methods.base.Reconstruction` (index 0: the ranked neutral
identity, ``identity.ply``; index i: hypothesis i - 1, ``expression_{i-1:02d}.ply``) each get a pose
and a camera from :func:`~ofer.fitting.fit_landmarks` in ``pose`` mode (shape and expression fixed)
against MediaPipe's landmarks of the face in the detection box. Conventions (OpenCV):
:mod:`ofer.fitting.placement`; the numbers written to ``params.npz`` and ``summary.json``:
:func:`placement_arrays`, :func:`camera_record`.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..facemodels import FaceModel
from ..fitting import FitOptions, LandmarkObservations, Placement, fit_landmarks, observe, scheme_for

CONVENTION = ("OpenCV: X_cam = R X + t, x right, y down, z forward; pixel = K X_cam / Z; mesh = the written .ply "
              "in the model frame; index 0 = identity.ply, i = expression_{i-1:02d}.ply")


def placeable(model: FaceModel) -> bool:
    """Whether ``model`` has a landmark embedding the fitter can use."""
    try:
        scheme_for(model)
    except ValueError:
        return False
    return True


def mesh_codes(model: FaceModel, expressions: np.ndarray, jaw_scale: float = 1.0) -> torch.Tensor:
    """(1 + M, C) codes of the written meshes: zeros (the neutral identity), then the M hypotheses
    with the jaw scaled as in their meshes."""
    codes = torch.as_tensor(np.asarray(expressions), dtype=torch.float32)
    written = model.join_code(*model.split_code(codes, jaw_scale=jaw_scale)).float().cpu()
    return torch.cat([torch.zeros(1, model.code_dim), written])


def fit_poses(model: FaceModel, shape: np.ndarray, codes: torch.Tensor, observations: LandmarkObservations):
    """Pose and camera (``FitResult``) of the meshes of one shape (S,) with K codes (K, C) on one image."""
    count = len(codes)
    shape = torch.as_tensor(np.asarray(shape), dtype=torch.float32)[None].expand(count, -1)
    return fit_landmarks(model, observations.repeat([count]), FitOptions(mode="pose"), shape=shape,
                         code=torch.as_tensor(codes, dtype=torch.float32))


def set_placement(rec, placement: Placement, error: torch.Tensor, landmarks68: torch.Tensor) -> None:
    """Store a placement of the 1 + M meshes, their (1 + M,) reprojection errors and (1 + M, 68, 2) landmarks."""
    rec.placement = placement
    rec.reprojection_error = error.detach().cpu().double().numpy()
    rec.landmarks68_2d = landmarks68.detach().cpu().double().numpy()
    rec.image_size = tuple(int(s) for s in placement.image_size)


def place_in_image(model: FaceModel, rec, image: np.ndarray, jaw_scale: float = 1.0):
    """Fit the pose and camera of every mesh of ``rec`` to ``image`` (RGB uint8), in place; returns ``rec``.

    ``rec.landmarks_found`` is False (and ``rec.placement`` stays ``None``) where MediaPipe finds no
    face around ``rec.box``; a face model without a landmark embedding is left unplaced. The time
    spent is ``rec.timings["pose"]``.
    """
    rec.image_size = tuple(int(s) for s in image.shape[:2])
    if not placeable(model):
        return rec
    started = time.perf_counter()
    face = observe(image, rec.box)
    rec.landmarks_found = face is not None
    if face is not None:
        obs = LandmarkObservations.from_mediapipe([face], image.shape[:2])
        fit = fit_poses(model, rec.shape, mesh_codes(model, rec.expressions, jaw_scale), obs)
        set_placement(rec, fit.placement, fit.reprojection_error, fit.landmarks68)
    rec.timings["pose"] = time.perf_counter() - started
    return rec


def placement_arrays(rec) -> dict[str, np.ndarray]:
    """The ``params.npz`` entries of a placed reconstruction (``{}`` if unplaced; ``image_size`` if known)."""
    arrays = {} if rec.image_size is None else {"image_size": np.asarray(rec.image_size, np.int64)}
    if rec.placement is None:
        return arrays
    return {**arrays, **rec.placement.to_arrays(), "projection": np.asarray(rec.placement.projection),
            "reprojection_error": np.asarray(rec.reprojection_error, np.float64),
            "landmarks68_2d": np.asarray(rec.landmarks68_2d, np.float64)}


def camera_record(rec, units: str = "m") -> dict | None:
    """The ``camera`` block of ``summary.json`` (``None`` if unplaced): convention, errors, the identity's R, t, K."""
    if rec.placement is None:
        return None
    first = {key: np.round(value[0], 9).tolist() for key, value in rec.placement.to_arrays().items()}
    error = np.asarray(rec.reprojection_error, np.float64)
    return {
        "convention": CONVENTION,
        "units": {"translation": "m", "meshes": units, "intrinsics": "px",
                  **({"note": "divide the mm meshes by 1000 before applying R and t"} if units == "mm" else {})},
        "projection": rec.placement.projection,
        "image_size": list(rec.image_size),
        "reprojection_error_px": {"identity": round(float(error[0]), 4),
                                  "hypotheses_mean": round(float(error[1:].mean()), 4) if len(error) > 1 else None},
        "identity": first,
        "arrays": "params.npz: rotation, translation, intrinsics (1 + M), reprojection_error, landmarks68_2d",
    }
