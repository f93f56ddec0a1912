"""FOCUS's model-based decoder (BASELINES.md A.2.1, A.11.1): theta -> the face region rendered alone.

theta = [identity (S) | expression (E) | albedo (K) | SH (27) | rotation (3) | translation (3)], with
S + E + K + 27 + 6 entries (the built-in head with an 80-component albedo: 106 + 52 + 80 + 33 = 271).
Read from a zero-initialised output layer, theta = 0 gives the mean identity, the neutral
expression, the mean albedo, ambient light, a frontal pose and the nominal distance:

- identity in standardised units (x the model's prior ``shape_std``); expression as the model's
  coefficients; albedo coefficients in std units, x 3 ([C]'s texture scaling);
- SH: ambient (uniform radiance 1) plus theta's 27 values;
- rotation: yaw, pitch, roll = 0.3 rad x theta ([C]); translation: x, y by 0.1 x the nominal distance
  per unit, z by 0.05 x it (ours: [C]'s are in BFM millimetres);
- the camera: fixed focal length 9.06 x half the image size ([C]: 1014.7 px at 224, a 12.6 degree
  field), the nominal distance chosen so that :data:`~ofer.render.cameras.FACE_FIELD_M` fills the
  image height (the render engine's framing).

Only the face-region triangles (the model's ``front_mask``) are drawn, black elsewhere; the region R is
their coverage (a hard step: no gradient through the silhouette, as in FOCUS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ...facemodels import FaceModel
from ...fitting.albedo import AlbedoModel
from ...render.cameras import FACE_FIELD_M, FRONTAL_R, PerspectiveCameras, head_rotation
from ...render.raster_torch import TorchRasterizer
from ...render.renderer import MeshRenderer
from ...render.shading import SH_CONSTANTS, SHShader

FOCAL_PER_HALF_SIZE = 9.06  # [C]: f = 9.06 x 112 px on a 224 px image
TEXTURE_SCALE = 3.0
ROTATION_SCALE_RAD = 0.3
SHIFT_SCALE, DEPTH_SCALE = 0.1, 0.05  # of the nominal distance, per unit of theta


@dataclass
class FocusParameters:
    """theta split: identity (B, S) standardised, expression (B, E), albedo (B, K) std units, sh (B, 9, 3),
    rotation (B, 3) yaw, pitch, roll in rad, translation (B, 3) metres (camera frame)."""

    identity: torch.Tensor
    expression: torch.Tensor
    albedo: torch.Tensor
    sh: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor


@dataclass
class FocusRendering:
    """image: (B, 3, H, W) in [0, 1]-ish linear RGB, black outside R; region: (B, 1, H, W) 0/1;
    landmarks: (B, 68, 2) pixels; vertices: (B, V, 3) model frame (no pose), metres."""

    image: torch.Tensor
    region: torch.Tensor
    landmarks: torch.Tensor
    vertices: torch.Tensor


class FocusDecoder(nn.Module):
    """theta (B, code_dim) -> :class:`FocusRendering` at ``image_size`` pixels."""

    def __init__(self, model: FaceModel, albedo: AlbedoModel, image_size: int = 224):
        super().__init__()
        self.model, self.albedo, self.image_size = model, albedo, int(image_size)
        self.focal = FOCAL_PER_HALF_SIZE * self.image_size / 2
        self.distance = self.focal * FACE_FIELD_M / self.image_size
        self.register_buffer("face_triangles", model.faces[model.front_mask[model.faces].all(1)].long(),
                             persistent=False)
        self.renderer = MeshRenderer(TorchRasterizer(), SHShader(background=(0.0, 0.0, 0.0)))
        self.sizes = (model.shape_dim, model.expression_dim, albedo.rank, 27, 3, 3)

    @property
    def code_dim(self) -> int:
        return sum(self.sizes)

    def split(self, theta: torch.Tensor) -> FocusParameters:
        if theta.ndim != 2 or theta.shape[1] != self.code_dim:
            raise ValueError(f"FocusDecoder: theta must be (B, {self.code_dim}), got {tuple(theta.shape)}")
        identity, expression, albedo, sh, rotation, shift = torch.split(theta, self.sizes, dim=1)
        ambient = torch.zeros(9, 3, dtype=theta.dtype, device=theta.device)
        ambient[0] = 1.0 / SH_CONSTANTS[0]  # uniform incoming radiance 1
        scale = torch.tensor([SHIFT_SCALE, SHIFT_SCALE, DEPTH_SCALE], dtype=theta.dtype, device=theta.device)
        translation = self.distance * (shift * scale + torch.tensor([0.0, 0.0, 1.0], dtype=theta.dtype,
                                                                     device=theta.device))
        return FocusParameters(identity, expression, TEXTURE_SCALE * albedo, ambient + sh.reshape(-1, 9, 3),
                               ROTATION_SCALE_RAD * rotation, translation)

    def cameras(self, params: FocusParameters) -> PerspectiveCameras:
        yaw, pitch, roll = (params.rotation[:, k] * (180.0 / math.pi) for k in range(3))
        rotation = FRONTAL_R.to(params.rotation) @ head_rotation(yaw, pitch, roll).to(params.rotation)
        return PerspectiveCameras(focal_length=self.focal, R=rotation, T=params.translation,
                                  image_size=self.image_size)

    def forward(self, theta: torch.Tensor) -> FocusRendering:
        params = self.split(theta)
        out = self.model(params.identity * self.model.shape_std.to(theta), params.expression)
        cameras = self.cameras(params)
        rendered = self.renderer(out.vertices, self.face_triangles, cameras, self.albedo(params.albedo), params.sh)
        landmarks = cameras.transform_points_screen(out.landmarks68)[..., :2]
        return FocusRendering(rendered.image.permute(0, 3, 1, 2), rendered.mask[:, None].to(theta.dtype),
                              landmarks, out.vertices)
