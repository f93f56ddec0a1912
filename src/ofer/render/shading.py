"""Shading: per-vertex albedo under spherical-harmonics (SH) lighting, Lambertian skin.

Lighting is given as 9 SH coefficients per colour channel, ``sh`` (B, 9, 3), of the *incoming
radiance* in the view frame (x to the image right, y to the image top, z towards the camera; see
:mod:`ofer.render.cameras`), so the light stays put when the head turns. The real SH basis, for a
unit normal n = (x, y, z), in the order of ``sh``::

    Y0 = 1 / (2 sqrt(pi))                          = 0.282095
    Y1 = sqrt(3 / (4 pi)) * y,   Y2 = ... * z,   Y3 = ... * x       (0.488603)
    Y4 = sqrt(15 / (4 pi)) * x y,  Y5 = ... * y z,  Y7 = ... * x z   (1.092548)
    Y6 = sqrt(5 / (16 pi)) * (3 z^2 - 1)                          (0.315392)
    Y8 = sqrt(15 / (16 pi)) * (x^2 - y^2)                         (0.546274)

A Lambertian surface of albedo rho then reflects ``rho * sum_k A_l(k) sh_k Y_k(n)``, where
``A_l = (1, 2/3, 1/4)`` for bands l = 0, 1, 2 is the clamped-cosine kernel divided by pi
(Ramamoorthi and Hanrahan 2001). Hence a uniform radiance L (``sh_0 = L / Y0``) gives
``rho * L``, and a distant light of intensity I from direction d (``sh_k = pi I Y_k(d)``) gives
about ``rho * I * max(n . d, 0)``; :func:`sh_from_lights` builds coefficients this way.
Colours are linear and not clamped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .cameras import Cameras
from .fragments import Fragments

SH_CONSTANTS = (
    0.5 / math.sqrt(math.pi),  # Y0
    math.sqrt(3 / (4 * math.pi)),  # Y1..Y3
    math.sqrt(15 / (4 * math.pi)),  # Y4, Y5, Y7
    math.sqrt(5 / (16 * math.pi)),  # Y6
    math.sqrt(15 / (16 * math.pi)),  # Y8
)
LAMBERT_BANDS = (1.0, 2.0 / 3.0, 0.25)  # clamped-cosine kernel / pi, bands 0, 1, 2
BAND_OF = (0, 1, 1, 1, 2, 2, 2, 2, 2)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The 9 real SH basis functions of unit vectors (..., 3) -> (..., 9) (order: module docstring)."""
    x, y, z = normals.unbind(-1)
    c0, c1, c2, c6, c8 = SH_CONSTANTS
    return torch.stack(
        [
            torch.full_like(x, c0),
            c1 * y,
            c1 * z,
            c1 * x,
            c2 * x * y,
            c2 * y * z,
            c6 * (3 * z * z - 1),
            c2 * x * z,
            c8 * (x * x - y * y),
        ],
        -1,
    )


def _lambert_kernel(like: torch.Tensor) -> torch.Tensor:
    """(9,) band factors A_l of the SH coefficients."""
    return torch.tensor([LAMBERT_BANDS[band] for band in BAND_OF], dtype=like.dtype, device=like.device)


def irradiance_basis(normals: torch.Tensor) -> torch.Tensor:
    """The SH basis times the Lambert kernel, (..., 3) -> (..., 9): irradiance = irradiance_basis(n) @ sh."""
    return sh_basis(normals) * _lambert_kernel(normals)


def sh_irradiance(normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """Lambertian shading factor per colour: normals (B, ..., 3), sh (B, 9, C) -> (B, ..., C)."""
    basis = irradiance_basis(normals)  # (B, ..., 9)
    flat = basis.reshape(basis.shape[0], -1, 9)
    return (flat @ sh.to(normals)).reshape(*basis.shape[:-1], sh.shape[-1])


def _rgb(value) -> torch.Tensor:
    """A float, (3,) RGB, (B,) grey or (B, 3) value as (B, 3)."""
    tensor = torch.as_tensor(value, dtype=torch.float32)
    if tensor.ndim == 0 or tensor.shape[-1] != 3:
        return tensor.reshape(-1, 1).expand(-1, 3)
    return tensor.reshape(-1, 3)


def sh_from_lights(
    ambient: float | Sequence[float] | torch.Tensor = 0.5,
    direction: Sequence[float] | torch.Tensor = (0.0, 0.0, 1.0),
    intensity: float | Sequence[float] | torch.Tensor = 0.5,
) -> torch.Tensor:
    """SH coefficients (B, 9, 3) of a uniform ambient light plus one distant light (view frame).

    Args:
        ambient: shading of a surface in the ambient light alone: float, (3,) RGB, (B,) or (B, 3).
        direction: (3,) or (B, 3) direction towards the light (normalised here).
        intensity: like ``ambient``; a surface facing the light gets about ``ambient + intensity``.
    """
    direction = torch.nn.functional.normalize(torch.as_tensor(direction, dtype=torch.float32).reshape(-1, 3), dim=-1)
    ambient, intensity = _rgb(ambient), _rgb(intensity)
    batch = max(len(ambient), len(intensity), len(direction))
    key = math.pi * sh_basis(direction)[:, :, None] * intensity[:, None, :]  # (B, 9, 3)
    constant = torch.zeros(batch, 9, 3)
    constant[:, 0] = ambient / SH_CONSTANTS[0]
    return constant + key


def default_sh(batch: int = 1) -> torch.Tensor:
    """Default lighting (B, 9, 3): ambient 0.45 plus a soft key light from the upper front right."""
    return sh_from_lights(ambient=0.45, direction=(0.35, 0.45, 1.0), intensity=0.6).expand(batch, -1, -1).clone()


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (B, V, 3) of meshes (B, V, 3) with counter-clockwise faces (F, 3)."""
    tri = vertices[:, faces]  # (B, F, 3, 3)
    face_normals = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)  # 2 x area
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals = normals.index_add(1, faces[:, corner], face_normals)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


def interpolate_packed(fragments: Fragments, faces: torch.Tensor, attributes: torch.Tensor):
    """Per-vertex attributes (B, V, C) interpolated at the foreground pixels only.

    Returns:
        ``pixels`` (N,) flat indices of the foreground pixels into (B*H*W) and their values (N, C).
    """
    _, num_vertices, channels = attributes.shape
    height, width = fragments.triangle_id.shape[1:]
    pixels = fragments.mask.reshape(-1).nonzero()[:, 0]
    triangle = fragments.triangle_id.reshape(-1).index_select(0, pixels)
    corner_ids = faces.index_select(0, triangle) + (pixels // (height * width) * num_vertices)[:, None]  # (N, 3)
    corners = attributes.reshape(-1, channels).index_select(0, corner_ids.reshape(-1)).reshape(-1, 3, channels)
    weights = fragments.barycentric.reshape(-1, 3).index_select(0, pixels).to(attributes)
    return pixels, torch.einsum("nk,nkc->nc", weights, corners)


def interpolate(fragments: Fragments, faces: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Per-vertex attributes (B, V, C) interpolated at the pixels (B, H, W, C); zeros on background."""
    pixels, values = interpolate_packed(fragments, faces, attributes)
    flat = attributes.new_zeros(fragments.triangle_id.numel(), attributes.shape[-1]).index_copy(0, pixels, values)
    return flat.reshape(*fragments.triangle_id.shape, -1)


@dataclass
class ShadedImage:
    """Output of a shader.

    Attributes:
        image: (B, H, W, 3) linear colour, background composited.
        alpha: (B, H, W) coverage (1 on the mesh, 0 on background).
    """

    image: torch.Tensor
    alpha: torch.Tensor


class SHShader(torch.nn.Module):
    """Lambertian shading of per-vertex albedo under SH lighting, over a background colour or image.

    Args:
        background: RGB colour (3,) or image (B, H, W, 3) behind the mesh.
    """

    def __init__(self, background: Sequence[float] | torch.Tensor = (0.0, 0.0, 0.0)):
        super().__init__()
        # a buffer, so that ``.to(device)`` moves it with the module (not saved in a state dict)
        self.register_buffer("background", torch.as_tensor(background, dtype=torch.float32), persistent=False)

    def forward(
        self,
        fragments: Fragments,
        vertices: torch.Tensor,
        faces: torch.Tensor,
        cameras: Cameras,
        albedo: torch.Tensor,
        sh: torch.Tensor,
        background: torch.Tensor | None = None,
    ) -> ShadedImage:
        """Shade rasterised meshes.

        Args:
            fragments: :class:`Fragments` (B, H, W).
            vertices: (B, V, 3) world vertices (for the normals).
            faces: (F, 3) long.
            cameras: the cameras used to rasterise (their rotation brings normals to the view frame).
            albedo: (B, V, 3) or (V, 3) per-vertex colour.
            sh: (B, 9, 3) SH lighting in the view frame.
            background: overrides the shader's background, (3,) or (B, H, W, 3).
        Returns:
            :class:`ShadedImage`.
        """
        batch = vertices.shape[0]
        albedo = (albedo.expand(batch, -1, -1) if albedo.ndim == 2 else albedo).to(vertices)
        normals = cameras.rotate_to_view(vertex_normals(vertices, faces))
        pixels, values = interpolate_packed(fragments, faces, torch.cat([albedo, normals], -1))
        pixel_normals = torch.nn.functional.normalize(values[:, 3:], dim=-1, eps=1e-12)
        basis = irradiance_basis(pixel_normals)  # (N, 9)
        height, width = fragments.triangle_id.shape[1:]
        lights = sh.to(vertices).expand(batch, 9, 3).reshape(batch, 27).index_select(0, pixels // (height * width))
        colour = values[:, :3] * torch.einsum("nk,nkc->nc", basis, lights.reshape(-1, 9, 3))
        back = (self.background if background is None else background).to(colour)
        image = back.expand(batch, height, width, 3).reshape(-1, 3).index_copy(0, pixels, colour)
        return ShadedImage(image=image.reshape(batch, height, width, 3), alpha=fragments.mask.to(colour.dtype))
