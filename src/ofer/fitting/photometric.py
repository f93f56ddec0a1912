"""The fitter's photometric term: the picture's colours at the visible face vertices vs albedo x SH light.

Per image, at every visible front-of-face vertex ``v`` projected to pixel ``u_v``:

    c_v = I(u_v)                     (bilinear, on the picture blurred by ``blur_px``)
    p_v = albedo_v(coef) * H(n_v) L  (low-rank albedo, 9 SH coefficients per channel, Lambert kernel)
    loss = sum_v m_v rho(|p_v - c_v|) / sum_v m_v

with ``n_v`` the vertex normal in the camera frame, ``rho`` the pseudo-Huber function and ``m_v`` the
visibility (z-buffer test, refreshed every ``refresh`` steps, no gradient) times the image mask
(pixels under a known occluder are not compared). Sampling the picture at the vertices rather than
rasterising a full image costs a few milliseconds per step; gradients reach the shape and the pose
through the normals (shading) and through the sampled positions (the picture's gradient).

The albedo coefficients and the light start from a closed form: alternating least squares between
the light (linear with the albedo fixed) and the albedo coefficients (linear with the light fixed).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..facemodels import FaceModel
from ..render.raster_torch import rasterize
from ..render.renderer import vertex_visibility
from ..render.shading import irradiance_basis, vertex_normals
from .albedo import albedo_model
from .placement import Placement

FACING_MIN = 0.25  # cosine between the normal and the direction to the camera: grazing vertices are not compared


def as_float_images(images) -> torch.Tensor:
    """(B, H, W, 3) uint8 or float pictures -> (B, H, W, 3) float32 in [0, 1]."""
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(i) for i in images])
    tensor = images if torch.is_tensor(images) else torch.tensor(np.asarray(images))  # a copy: inputs may be read-only
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    return tensor.float()


def blur(picture: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """(C, H, W) -> (C, H, W) Gaussian-blurred (separable, replicated border; ``sigma_px`` <= 0: unchanged)."""
    if sigma_px <= 0:
        return picture
    radius = max(1, int(round(3 * sigma_px)))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma_px) ** 2)
    k = (k / k.sum()).to(picture)
    channels = picture.shape[0]
    x = torch.nn.functional.pad(picture[None], (radius, radius, radius, radius), mode="replicate")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)[0]


def sample(picture: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of (B, C, H, W) at (B, N, 2) continuous pixel positions (centres at i + 0.5): (B, N, C)."""
    height, width = picture.shape[-2:]
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=pixels.dtype)
    grid = (pixels * scale - 1.0)[:, :, None]  # (B, N, 1, 2)
    out = torch.nn.functional.grid_sample(picture, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


class PhotometricTerm:
    """The photometric loss of B pictures (see the module docstring).

    Args:
        model: the face model being fitted.
        images: (B, H, W, 3) uint8 or float in [0, 1].
        masks: (B, H, W) bool, the pixels that may be compared (``None``: all).
        rank: albedo components used (at most the shipped ones).
        blur_px: Gaussian blur of the pictures before sampling (pixels), one value or one per picture.
        robust_scale: pseudo-Huber scale of the colour residual.
        albedo_prior: weight of ``mean(coef^2)``.
    """

    def __init__(self, model: FaceModel, images, masks=None, rank: int = 10, blur_px=0.5,
                 robust_scale: float = 0.05, albedo_prior: float = 1e-3):
        images = as_float_images(images)
        self.model = model
        self.faces = model.faces.long().cpu()
        self.front = model.front_mask.bool().cpu()
        sigmas = torch.as_tensor(blur_px, dtype=torch.float32).reshape(-1).expand(len(images))
        self.picture = torch.stack([blur(image.permute(2, 0, 1), float(sigma)) for image, sigma in zip(images, sigmas)])
        self.image_size = tuple(images.shape[1:3])
        valid = torch.ones(images.shape[:3]) if masks is None else torch.as_tensor(np.asarray(masks)).float()
        self.valid = valid[:, None]
        self.albedo = albedo_model(model).truncated(rank)
        self.robust_scale, self.albedo_prior = robust_scale, albedo_prior
        batch = images.shape[0]
        self.coef = torch.zeros(batch, self.albedo.rank, requires_grad=True)
        self.sh = torch.zeros(batch, 9, 3, requires_grad=True)
        self.visible: Optional[torch.Tensor] = None

    def parameters(self) -> list[torch.Tensor]:
        return [self.coef, self.sh] if self.albedo.rank else [self.sh]

    @torch.no_grad()
    def refresh(self, vertices: torch.Tensor, placement: Placement) -> None:
        """Recompute which front vertices are seen (z-buffer) and fall on comparable pixels."""
        cameras = placement.cameras()
        vertices = vertices.detach().float()
        screen = cameras.transform_points_screen(vertices)
        fragments = rasterize(screen, self.faces, *self.image_size)
        seen = vertex_visibility(vertices, self.faces, cameras, screen, fragments) & self.front
        inside = sample(self.valid, placement.project(vertices).float())[..., 0] > 0.99
        self.visible = seen & inside

    def _geometry(self, vertices: torch.Tensor, placement: Placement):
        """(B, V, 2) pixels, (B, V, 9) lit SH basis, (B, V) mask of the compared vertices."""
        rotation = placement.rotation.to(vertices)
        normals = vertex_normals(vertices, self.faces) @ rotation.transpose(1, 2)
        cam = placement.to_camera(vertices)
        towards = torch.nn.functional.normalize(-cam, dim=-1)
        if placement.projection != "perspective":
            towards = torch.tensor([0.0, 0.0, -1.0]).expand_as(cam)
        facing = (normals * towards).sum(-1)
        mask = self.visible & (facing.detach() > FACING_MIN)
        return placement.project(vertices), irradiance_basis(normals), mask.float()

    @torch.no_grad()
    def initialise(self, vertices: torch.Tensor, placement: Placement, rounds: int = 4) -> None:
        """Closed-form albedo coefficients and light for the current geometry (alternating least squares)."""
        self.refresh(vertices, placement)
        pixels, basis, mask = self._geometry(vertices.float(), placement)
        colours = sample(self.picture, pixels.float())  # (B, V, 3)
        for b in range(len(colours)):
            keep = mask[b] > 0
            if keep.sum() < 20:
                continue
            h, c = basis[b, keep].double(), colours[b, keep].double()  # (N, 9), (N, 3)
            mean = self.albedo.mean[keep].double()
            comps = self.albedo.basis[:, keep].double()  # (K, N, 3)
            coef = torch.zeros(self.albedo.rank, dtype=torch.float64)
            for _ in range(rounds):
                albedo = mean + torch.einsum("k,knc->nc", coef, comps)
                light = torch.stack([torch.linalg.lstsq(h * albedo[:, ch:ch + 1], c[:, ch:ch + 1]).solution[:, 0]
                                     for ch in range(3)], 1)  # (9, 3)
                if not self.albedo.rank:
                    break
                shade = h @ light  # (N, 3)
                design = (comps * shade[None]).permute(1, 2, 0).reshape(-1, self.albedo.rank)  # (N*3, K)
                target = (c - mean * shade).reshape(-1)
                ridge = self.albedo_prior * len(target) * torch.eye(self.albedo.rank, dtype=torch.float64)
                coef = torch.linalg.solve(design.T @ design + ridge, design.T @ target)
            self.sh[b] = light.float()
            if self.albedo.rank:
                self.coef[b] = coef.float()

    def loss(self, vertices: torch.Tensor, placement: Placement) -> torch.Tensor:
        """(B,) photometric loss of (B, V, 3) model-frame vertices placed by ``placement``."""
        if self.visible is None:
            self.refresh(vertices, placement)
        pixels, basis, mask = self._geometry(vertices, placement)
        colours = sample(self.picture, pixels)
        shade = torch.einsum("bvk,bkc->bvc", basis, self.sh)
        predicted = self.albedo(self.coef) * shade
        residual = (predicted - colours).norm(dim=-1)
        scale = self.robust_scale
        rho = scale**2 * (torch.sqrt(1 + (residual / scale) ** 2) - 1)
        loss = (mask * rho).sum(1) / mask.sum(1).clamp(min=1.0)
        return loss + self.albedo_prior * (self.coef**2).mean(1) if self.albedo.rank else loss

    @torch.no_grad()
    def predicted(self, vertices: torch.Tensor, placement: Placement) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V, 3) predicted and (B, V, 3) observed colours, (B, V) compared mask: for checks and figures."""
        pixels, basis, mask = self._geometry(vertices, placement)
        shade = torch.einsum("bvk,bkc->bvc", basis, self.sh)
        return self.albedo(self.coef) * shade, sample(self.picture, pixels), mask > 0
