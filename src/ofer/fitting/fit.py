"""Fit a face model to 2D landmarks: shape, expression, head pose and camera, batched, in torch.

::

    obs = LandmarkObservations.from_mediapipe([observe(image, box)], image.shape[:2])
    result = fit_landmarks(model, obs)                                  # full fit
    placed = fit_landmarks(model, obs.repeat([M]), FitOptions(mode="pose"), shape=..., code=...)

Steps (each measured in ``benchmarks/bench_fit.py``):

1. *Closed-form start*: a similarity (Umeyama) from the model's landmarks to the observed
   (x, y, relative depth) points, or a weak-perspective affine fit when there is no depth; it gives
   the rotation, the scale and so the distance for the focal prior.
2. *Rigid*: rotation, translation and focal length by Adam on the robust reprojection loss.
3. *Full* (``mode="full"``): expression (blendshape weights projected onto [0, 1]) and standardised
   shape join, under their priors.

Loss per image: ``sum_l w_l rho(|pi(x_l) - u_l| / s) / sum_l w_l`` with ``s`` the face's size in the
image (RMS distance of the observed points to their centroid), ``rho`` the pseudo-Huber function
(scale ``robust_scale``), plus ``depth_weight`` times the same on the relative depth, plus
``shape_prior * mean(z_shape^2)``, ``expression_prior * mean(code^2)`` and ``focal_prior * log(f/f0)^2``.
Images are independent: their losses are summed, so a result does not depend on the batch; with
``shared_shape`` the images are views of one face and share the identity (a multi-image fit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..config import Config, require, require_choice, require_int
from ..facemodels import FaceModel
from ..geometry import rodrigues, umeyama
from .calibration import landmark_calibration
from .observations import LandmarkObservations, scheme_embedding, scheme_for
from .photometric import PhotometricTerm
from .placement import PROJECTIONS, Placement, intrinsics_matrix

MODES = ("full", "pose")
# Photometric iterations of ``--method fit`` and the photo engine's labels (identity error on 50
# held-out renders: 0 steps 2.82 mm, 100: 2.50, 150: 2.30, 300: 2.17; about 11 ms per image and step).
PHOTOMETRIC_STEPS = 200


@dataclass
class FitOptions(Config):
    """Options of :func:`fit_landmarks` (validated at construction).

    Attributes:
        mode: ``full`` (shape, expression, pose, camera) or ``pose`` (pose and camera; shape and
            expression given).
        projection: ``perspective`` or ``weak-perspective``.
        fov_deg: the focal prior's field of view across the longer image side (degrees).
        focal_prior: weight of ``log(f / f0)^2``; ``fixed_focal``: keep f = f0.
        rigid_steps, full_steps: Adam iterations of the rigid and the full stage.
        lr: Adam step size (parameters are scaled to be of unit order).
        robust_scale: pseudo-Huber scale, as a fraction of the face size in the image.
        depth_weight: weight of the relative-depth term (0: 2D only); ``depth_pose_only``: the
            depth term moves the pose and camera, not the shape and expression.
        shape_prior, expression_prior: weights of the standardised-shape and expression priors.
        rotation_prior: weight of ``|R - R_detector C|^2``, the detector's own head rotation mapped
            to the model frame by the calibration's ``rotation_offset`` C (0, or either missing: off).
        calibrate: apply the face model's shipped landmark calibration (bias and per-point noise).
        photometric_steps: Adam iterations of the photometric refinement after the landmark fit
            (``mode="full"``; needs the pictures; 0: off). See :mod:`ofer.fitting.photometric`.
        photometric_weight: weight of the photometric term against the landmark term.
        albedo_rank: low-rank albedo components (:mod:`ofer.fitting.albedo`).
        photometric_blur: blur of the pictures before sampling, in face sizes (RMS distance of the
            landmarks to their centroid; 0.0125 is half a pixel on the renders' 40-pixel faces).
        photometric_refresh: steps between two visibility updates.
    """

    mode: str = "full"
    projection: str = "perspective"
    fov_deg: float = 20.0
    focal_prior: float = 1.0
    fixed_focal: bool = False
    rigid_steps: int = 100
    full_steps: int = 300
    lr: float = 0.02
    robust_scale: float = 0.02
    depth_weight: float = 0.0
    depth_pose_only: bool = True
    shape_prior: float = 0.1
    rotation_prior: float = 1.0
    expression_prior: float = 1.0
    calibrate: bool = True
    photometric_steps: int = 0
    photometric_weight: float = 2.0
    albedo_rank: int = 10
    photometric_blur: float = 0.0125
    photometric_refresh: int = 10

    def validate(self) -> None:
        require_choice(self.mode, "mode", MODES)
        require_choice(self.projection, "projection", PROJECTIONS)
        require(1.0 <= self.fov_deg <= 120.0, f"fov_deg must be in [1, 120], got {self.fov_deg}")
        require_int(self.rigid_steps, "rigid_steps", 0, 100_000)
        require_int(self.full_steps, "full_steps", 0, 100_000)
        require_int(self.photometric_steps, "photometric_steps", 0, 100_000)
        require_int(self.albedo_rank, "albedo_rank", 0, 1000)
        require_int(self.photometric_refresh, "photometric_refresh", 1, 100_000)
        for name in ("focal_prior", "lr", "robust_scale", "depth_weight", "shape_prior", "expression_prior",
                     "rotation_prior", "photometric_weight", "photometric_blur"):
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
                    f"{name} must be a finite number >= 0, got {value!r}")
        require(self.lr > 0 and self.robust_scale > 0, "lr and robust_scale must be > 0")


@dataclass
class FitResult:
    """The fit of B images (CPU tensors).

    Attributes:
        shape: (B, S) identity coefficients; code: (B, C) expression codes (``split_code`` layout).
        placement: poses and cameras (see :class:`~ofer.fitting.placement.Placement`).
        vertices: (B, V, 3) posed-free mesh in the model frame (metres).
        landmarks2d: (B, L, 2) the model's points of the observation scheme, projected (pixels).
        landmarks68: (B, 68, 2) the model's iBUG-68 points, projected (pixels).
        residuals: (B, L) reprojection distance per point (pixels).
        reprojection_error: (B,) weighted mean of ``residuals`` over the points that count (pixels).
        loss: (B,) final objective.
        albedo_coef: (B, K) low-rank albedo coefficients, sh: (B, 9, 3) light in the camera frame
            (``None`` without the photometric refinement).
    """

    shape: torch.Tensor
    code: torch.Tensor
    placement: Placement
    vertices: torch.Tensor
    landmarks2d: torch.Tensor
    landmarks68: torch.Tensor
    residuals: torch.Tensor
    reprojection_error: torch.Tensor
    loss: torch.Tensor
    albedo_coef: Optional[torch.Tensor] = None
    sh: Optional[torch.Tensor] = None


def focal_prior_px(image_size, fov_deg: float) -> float:
    """Focal length (pixels) giving ``fov_deg`` across the longer image side."""
    return max(image_size) / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def face_size(points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B,) weighted RMS distance of (B, L, 2) points to their weighted centroid (pixels)."""
    w = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
    centre = (w[..., None] * points).sum(1, keepdim=True)
    return ((w * ((points - centre) ** 2).sum(-1)).sum(1)).sqrt().clamp(min=1e-3)


def pseudo_huber(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale^2 (sqrt(1 + (x / scale)^2) - 1)``: quadratic near 0, linear beyond ``scale``."""
    return scale**2 * (torch.sqrt(1 + (x / scale) ** 2) - 1)


def initial_pose(src: np.ndarray, obs_points: np.ndarray, obs_depth: Optional[np.ndarray], weights: np.ndarray
                 ) -> tuple[float, np.ndarray, np.ndarray]:
    """Scaled-orthographic start ``u ~ s (R x)_xy + t`` of one image: (s, R (3, 3), t (2,)).

    With depth, a 3D similarity onto (u, v, depth); without, an affine least-squares fit whose two
    rows are turned into the nearest rotation.
    """
    keep = weights > 0
    if keep.sum() < 4:
        keep = np.ones_like(keep)
    if obs_depth is not None:
        dst = np.concatenate([obs_points, obs_depth[:, None]], 1)
        s, rot, t = umeyama(src[keep], dst[keep], weights[keep])
        return s, rot, t[:2]
    a = np.concatenate([src[keep], np.ones((keep.sum(), 1))], 1)
    coef, *_ = np.linalg.lstsq(a * weights[keep, None], obs_points[keep] * weights[keep, None], rcond=None)
    rows = coef[:3].T  # (2, 3)
    s = float(np.sqrt(np.linalg.norm(rows[0]) * np.linalg.norm(rows[1])))
    r12 = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    full = np.stack([r12[0], r12[1], np.cross(r12[0], r12[1])])
    u, _, vt = np.linalg.svd(full)
    rot = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
    return s, rot, coef[3]


class _Problem:
    """The parameters and the objective of one batched fit."""

    def __init__(self, model: FaceModel, obs: LandmarkObservations, options: FitOptions,
                 shape: Optional[torch.Tensor], code: Optional[torch.Tensor], shared_shape: bool = False):
        self.model, self.options = model, options
        self.scheme = obs.scheme
        self.embedding = scheme_embedding(model, obs.scheme)
        batch = len(obs)
        dtype = torch.float32
        self.points = obs.points.to(dtype)
        calibration = landmark_calibration(model, obs.scheme) if options.calibrate else None
        self.bias = None if calibration is None else calibration.bias  # (L, 3) model-frame offsets, or None
        sigma = None if calibration is None else calibration.sigma
        self.weights = obs.weights.to(dtype) * (1.0 if sigma is None else (sigma.mean() / sigma) ** 2)
        self.depth = obs.depth.to(dtype) if (obs.depth is not None and options.depth_weight > 0) else None
        if self.depth is not None and calibration is not None and calibration.depth_offset is not None:
            size = face_size(self.points, torch.ones_like(self.depth))  # the calibration's face size
            self.depth = self.depth - calibration.depth_offset * size[:, None]
        self.size = face_size(self.points, self.weights)
        offset = None if calibration is None else calibration.rotation_offset
        self.rotation_target = None  # (B, 3, 3) the detector's rotation in the model frame
        if options.rotation_prior > 0 and obs.rotation is not None and offset is not None:
            self.rotation_target = obs.rotation.to(dtype) @ offset
        self.image_size = obs.image_size
        height, width = obs.image_size
        self.centre = torch.tensor([width / 2.0, height / 2.0])
        self.f0 = focal_prior_px(obs.image_size, options.fov_deg)
        self.base_shape = torch.zeros(batch, model.shape_dim) if shape is None else shape.detach().float().cpu()
        self.base_code = torch.zeros(batch, model.code_dim) if code is None else code.detach().float().cpu()
        self.shape_std = getattr(model, "shape_std", torch.ones(model.shape_dim)).detach().float().cpu()
        self.shape_std = torch.where(self.shape_std > 0, self.shape_std, torch.ones_like(self.shape_std))
        self.batch = batch
        start = self.base_shape.mean(0, keepdim=True) if shared_shape else self.base_shape
        self.z_shape = (start / self.shape_std).clone().requires_grad_(True)  # (B or 1, S)
        self.code = self.base_code.clone().requires_grad_(True)
        self.fixed_points = None
        self.frozen_points = None  # the points while only the camera moves
        self.photometric: Optional[PhotometricTerm] = None  # on during the photometric refinement
        if options.mode == "pose":
            with torch.no_grad():
                self.fixed_points = self.surface_points(self.base_shape, self.base_code)
        self._start()

    # -- model --------------------------------------------------------------------------
    def shape(self) -> torch.Tensor:
        """(B, S) the current identity coefficients (one row repeated for a shared shape)."""
        return (self.z_shape * self.shape_std).expand(self.batch, -1)

    def surface_points(self, shape: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        expression, pose = self.model.split_code(code)
        points = self.model.surface_points(shape, expression, pose, *self.embedding).float().cpu()
        return points if self.bias is None else points + self.bias

    def mesh(self) -> torch.Tensor:
        """(B, V, 3) the current model-frame mesh."""
        expression, pose = self.model.split_code(self.code)
        return self.model(self.shape(), expression, pose).vertices.float().cpu()

    def current_points(self) -> torch.Tensor:
        if self.fixed_points is not None:
            return self.fixed_points
        if self.frozen_points is not None:
            return self.frozen_points
        return self.surface_points(self.shape(), self.code)

    # -- camera -------------------------------------------------------------------------
    def _start(self) -> None:
        with torch.no_grad():
            src = self.current_points().double().numpy()
        rotations, scales, shifts = [], [], []
        for b in range(len(src)):
            depth = None if self.depth is None else self.depth[b].double().numpy()
            s, rot, t = initial_pose(src[b], self.points[b].double().numpy(), depth, self.weights[b].double().numpy())
            rotations.append(rot)
            scales.append(s)
            shifts.append(t)
        self.r0 = torch.as_tensor(np.stack(rotations), dtype=torch.float32)
        s0 = torch.as_tensor(scales, dtype=torch.float32).clamp(min=1e-3)
        t2 = torch.as_tensor(np.stack(shifts), dtype=torch.float32)
        centroid = torch.as_tensor(src.mean(1), dtype=torch.float32)  # (B, 3)
        rc = (centroid[:, None] @ self.r0.transpose(1, 2))[:, 0]  # rotated centroid
        pixel_c = s0[:, None] * rc[:, :2] + t2  # where the centroid projects
        self.omega = torch.zeros(len(src), 3, requires_grad=True)
        if self.options.projection == "perspective":
            self.z0 = self.f0 / s0  # distance that gives the observed scale with the prior focal
            cam_c = torch.cat([(pixel_c - self.centre) * (self.z0 / self.f0)[:, None], self.z0[:, None]], 1)
            self.t0 = cam_c - rc
        else:
            self.s0, self.t2_0 = s0, t2
        self.shift = torch.zeros(len(src), 3, requires_grad=True)  # translation in units of the distance
        self.log_focal = torch.zeros(len(src), requires_grad=True)  # log(f / f0), or log(s / s0)

    def rotation(self) -> torch.Tensor:
        return rodrigues(self.omega) @ self.r0

    def placement(self) -> Placement:
        batch = self.omega.shape[0]
        rotation = self.rotation()
        if self.options.projection == "perspective":
            focal = self.f0 * torch.exp(self.log_focal)
            translation = self.t0 + self.shift * self.z0[:, None]
            k = intrinsics_matrix(focal, focal, self.centre[0].expand(batch), self.centre[1].expand(batch))
        else:
            scale = self.s0 * torch.exp(self.log_focal)
            translation = torch.zeros(batch, 3)
            offset = self.t2_0 + self.shift[:, :2] * self.size[:, None]
            k = intrinsics_matrix(scale, scale, offset[:, 0], offset[:, 1])
        return Placement(rotation, translation, k, self.options.projection, self.image_size)

    # -- objective ----------------------------------------------------------------------
    def losses(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) objective and (B, L) pixel residuals."""
        opts = self.options
        points = self.current_points()
        placement = self.placement()
        pixels = placement.project(points)
        residual = (pixels - self.points).norm(dim=-1)
        w = self.weights
        wsum = w.sum(1).clamp(min=1e-12)
        loss = (w * pseudo_huber(residual / self.size[:, None], opts.robust_scale)).sum(1) / wsum
        if self.depth is not None:
            # The depth moves the pose only: MediaPipe's depth is too coarse to shape the face (measured).
            cam = placement.to_camera(points.detach() if opts.depth_pose_only else points)[..., 2]
            if opts.projection == "perspective":
                depth_px = cam * (placement.intrinsics[:, 0, 0] / cam.detach().mean(1))[:, None]
            else:
                depth_px = cam * placement.intrinsics[:, 0, 0][:, None]
            wn = w / wsum[:, None]
            pred = depth_px - (wn * depth_px).sum(1, keepdim=True)
            seen = self.depth - (wn * self.depth).sum(1, keepdim=True)
            # MediaPipe's depth is on its own scale (about 0.87 of the true one on renders): fit it per image.
            gain = ((wn * pred * seen).sum(1) / (wn * pred * pred).sum(1).clamp(min=1e-9)).detach().clamp(0.5, 1.5)
            pred = pred * gain[:, None]
            loss = loss + opts.depth_weight * (w * pseudo_huber((pred - seen) / self.size[:, None],
                                                                opts.robust_scale)).sum(1) / wsum
        if self.rotation_target is not None:
            loss = loss + opts.rotation_prior * 0.1 * ((placement.rotation - self.rotation_target) ** 2).sum((1, 2))
        if opts.projection == "perspective" and not opts.fixed_focal:
            loss = loss + opts.focal_prior * 1e-3 * self.log_focal**2
        if self.photometric is not None:
            loss = loss + opts.photometric_weight * self.photometric.loss(self.mesh(), placement)
        if self.fixed_points is None:
            loss = loss + opts.shape_prior * (self.z_shape**2).mean(1).expand(self.batch) * 1e-2
            loss = loss + opts.expression_prior * (self.code**2).mean(1) * 1e-2
        return loss, residual

    def run(self, parameters: list[torch.Tensor], steps: int, lr: float) -> None:
        if steps == 0:
            return
        moving = any(p is self.z_shape or p is self.code for p in parameters)
        with torch.no_grad():  # while only the camera moves, the surface points are computed once
            self.frozen_points = None
            if not moving:
                self.frozen_points = self.current_points().detach()
        optimiser = torch.optim.Adam(parameters, lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps, eta_min=lr * 0.05)
        for step in range(steps):
            if self.photometric is not None and step % self.options.photometric_refresh == 0:
                self.photometric.refresh(self.mesh().detach(), self.placement())
            optimiser.zero_grad(set_to_none=True)
            loss, _ = self.losses()
            loss.sum().backward()
            optimiser.step()
            schedule.step()
            if not moving:
                continue
            with torch.no_grad():
                self.code.copy_(self.model.clamp_expression(self.code))
                self.z_shape.copy_(self.model.clamp_shape(self.z_shape * self.shape_std) / self.shape_std)


def fit_landmarks(model: FaceModel, observations: LandmarkObservations, options: Optional[FitOptions] = None,
                  shape: Optional[torch.Tensor] = None, code: Optional[torch.Tensor] = None,
                  images=None, image_masks=None, shared_shape: bool = False) -> FitResult:
    """Fit ``model`` to B images' landmarks (see the module docstring).

    Args:
        model: any face model with a landmark embedding (the scheme must match: 478 points need
            the model's MediaPipe embedding; otherwise convert with ``observations.to_scheme("ibug68")``).
        observations: B images' landmarks.
        options: :class:`FitOptions` (default: full fit, perspective).
        shape: (B, S) identity coefficients (``mode="pose"``: fixed; ``full``: the start).
        code: (B, C) expression codes (likewise).
        images: (B, H, W, 3) the pictures (uint8 or float in [0, 1]), for ``photometric_steps > 0``.
        image_masks: (B, H, W) bool, the pixels the photometric term may compare (``None``: all;
            pass the complement of a known occluder mask).
        shared_shape: the B images show one face (a multi-image fit): one identity for all of them
            (started from the mean of ``shape``), expression, pose and camera per image.
    Returns:
        :class:`FitResult`.
    """
    options = options or FitOptions()
    if observations.scheme == "mediapipe478" and scheme_for(model) != "mediapipe478":
        observations = observations.to_scheme("ibug68")
    if options.mode == "pose" and (shape is None or code is None):
        raise ValueError("mode='pose' needs the shape and the expression code of every image")
    photometric = options.photometric_steps > 0 and options.mode == "full"
    if photometric and images is None:
        raise ValueError("photometric_steps > 0 needs the pictures (images=)")
    with torch.enable_grad():
        problem = _Problem(model, observations, options, shape, code, shared_shape)
        camera = [problem.omega, problem.shift] + ([] if options.fixed_focal else [problem.log_focal])
        problem.run(camera, options.rigid_steps, options.lr)
        if options.mode == "full":  # expression first (shape at its start), then shape joins
            problem.run(camera + [problem.code], options.full_steps // 2, options.lr)
            problem.run(camera + [problem.z_shape, problem.code], options.full_steps - options.full_steps // 2,
                        options.lr)
        if photometric:
            term = PhotometricTerm(model, images, image_masks, options.albedo_rank,
                                   options.photometric_blur * problem.size)
            with torch.no_grad():
                term.initialise(problem.mesh(), problem.placement())
            problem.photometric = term
            problem.run(camera + [problem.z_shape, problem.code, *term.parameters()], options.photometric_steps,
                        options.lr)
    return _result(problem)


@torch.no_grad()
def _result(problem: _Problem) -> FitResult:
    model = problem.model
    problem.frozen_points = None
    loss, residual = problem.losses()
    shape = problem.shape().detach().clone()
    code = problem.code.detach().clone()
    if problem.fixed_points is not None:
        shape, code = problem.base_shape, problem.base_code
    expression, pose = model.split_code(code)
    out = model(shape, expression, pose)
    vertices = out.vertices.float().cpu()
    placement = problem.placement()
    placement = Placement(*(t.detach() for t in (placement.rotation, placement.translation, placement.intrinsics)),
                          placement.projection, placement.image_size)
    landmarks68 = placement.project(out.landmarks68.float().cpu()) if out.landmarks68 is not None else \
        torch.full((len(vertices), 68, 2), float("nan"))
    w = (problem.weights > 0).float()
    error = (w * residual).sum(1) / w.sum(1).clamp(min=1)
    term = problem.photometric
    return FitResult(shape=shape, code=code, placement=placement, vertices=vertices,
                     landmarks2d=placement.project(problem.current_points()), landmarks68=landmarks68,
                     residuals=residual, reprojection_error=error, loss=loss.detach(),
                     albedo_coef=None if term is None else term.coef.detach().clone(),
                     sh=None if term is None else term.sh.detach().clone())
