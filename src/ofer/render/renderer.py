"""The mesh renderer: cameras -> rasteriser -> shader, plus per-vertex visibility.

::

    from ofer.render.cameras import look_at_face
    from ofer.render.raster_torch import TorchRasterizer   # or raster_gl.GLRasterizer
    from ofer.render.renderer import MeshRenderer, default_sh, paint_face_model
    from ofer.render.shading import SHShader

    renderer = MeshRenderer(TorchRasterizer(), SHShader(background=(0.3, 0.3, 0.3)))
    out = renderer(vertices, model.faces, look_at_face(yaw=20.0), paint_face_model(model), default_sh())
    out.image       # (B, H, W, 3)
    out.visibility  # (B, V) bool
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import raster_gl
from .cameras import Cameras
from .fragments import Fragments
from .raster_torch import TorchRasterizer
from .shading import ShadedImage, default_sh, vertex_normals

__all__ = ["MeshRenderer", "RenderOutput", "default_sh", "paint_face_model", "vertex_visibility"]

# Depth tolerance of the visibility test, metres: about two pixels of a face at 224 x 224.
VISIBILITY_TOLERANCE_M = 3e-3
SKIN_RGB = (0.78, 0.58, 0.48)
SCLERA_RGB = (0.90, 0.88, 0.85)
PUPIL_RGB = (0.03, 0.025, 0.02)
TEETH_RGB = (0.90, 0.87, 0.78)
LIP_TINT = (0.88, 0.66, 0.64)  # multiplies the skin colour
MOUTH_RGB = (0.25, 0.09, 0.08)  # inside of the mouth


@dataclass
class RenderOutput:
    """Result of :class:`MeshRenderer`.

    Attributes:
        image: (B, H, W, 3) linear colour (background composited).
        alpha: (B, H, W) float coverage.
        mask: (B, H, W) bool foreground.
        depth: (B, H, W) depth (camera z, metres; +inf on background).
        triangle_id: (B, H, W) long, -1 on background.
        barycentric: (B, H, W, 3) screen-space barycentrics.
        screen: (B, V, 3) projected vertices (pixel x, pixel y, depth).
        visibility: (B, V) bool, vertex faces the camera and is not hidden by the mesh.
    """

    image: torch.Tensor
    alpha: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    triangle_id: torch.Tensor
    barycentric: torch.Tensor
    screen: torch.Tensor
    visibility: torch.Tensor


@torch.no_grad()
def vertex_visibility(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    cameras: Cameras,
    screen: torch.Tensor,
    fragments: Fragments,
    tolerance: float = VISIBILITY_TOLERANCE_M,
) -> torch.Tensor:
    """Per-vertex visibility (B, V) bool.

    A vertex is visible when it projects inside the image, its normal faces the camera
    (``normal . view direction > 0``) and it is not hidden by the mesh: the pixel it falls in shows
    one of its own triangles, or a surface at most ``tolerance`` closer than the vertex (z-buffer test).

    Args:
        vertices: (B, V, 3) world vertices; faces: (F, 3); cameras: the cameras of ``screen``.
        screen: (B, V, 3) projected vertices; fragments: the rasterised z-buffer (B, H, W).
        tolerance: in depth units (metres for :mod:`ofer.render.cameras`).
    """
    batch, num_vertices = screen.shape[:2]
    height, width = fragments.depth.shape[1:]
    facing = (vertex_normals(vertices, faces) * cameras.view_directions(vertices)).sum(-1) > 0
    x, y, z = screen.unbind(-1)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    col = x.floor().long().clamp(0, width - 1)
    row = y.floor().long().clamp(0, height - 1)
    items = torch.arange(batch, device=screen.device)[:, None]
    triangle = fragments.triangle_id[items, row, col]  # (B, V)
    own = (faces[triangle.clamp(min=0)] == torch.arange(num_vertices, device=screen.device)[:, None]).any(-1)
    unhidden = (own & (triangle >= 0)) | (z <= fragments.depth[items, row, col] + tolerance)
    return facing & inside & unhidden


class MeshRenderer(torch.nn.Module):
    """A renderer made of a rasteriser and a shader (each swappable), driven by cameras.

    Args:
        rasterizer: ``rasterizer(screen (B,V,3), faces (F,3), image_size) -> Fragments``
            (:class:`~ofer.render.raster_torch.TorchRasterizer` or :class:`~ofer.render.raster_gl.GLRasterizer`).
        shader: ``shader(fragments, vertices, faces, cameras, albedo, sh) -> ShadedImage``
            (:class:`~ofer.render.shading.SHShader`).
        visibility_tolerance: depth tolerance (metres) of :func:`vertex_visibility`.
    """

    def __init__(
        self, rasterizer: torch.nn.Module, shader: torch.nn.Module, visibility_tolerance: float = VISIBILITY_TOLERANCE_M
    ):
        super().__init__()
        self.rasterizer = rasterizer
        self.shader = shader
        self.visibility_tolerance = visibility_tolerance

    def forward(
        self,
        vertices: torch.Tensor,
        faces: torch.Tensor,
        cameras: Cameras,
        albedo: torch.Tensor,
        sh: torch.Tensor | None = None,
    ) -> RenderOutput:
        """Render meshes.

        Args:
            vertices: (B, V, 3) world vertices, metres.
            faces: (F, 3) long.
            cameras: batch B (or 1).
            albedo: (B, V, 3) or (V, 3) per-vertex colour.
            sh: (B, 9, 3) SH lighting in the view frame (``None``: :func:`default_sh`).
        Returns:
            :class:`RenderOutput`; ``image`` is differentiable in vertices, cameras, albedo and sh.
        """
        faces = faces.to(vertices.device).long()
        sh = default_sh(vertices.shape[0]).to(vertices) if sh is None else sh
        screen = cameras.transform_points_screen(vertices)
        fragments = self.rasterizer(screen, faces, cameras.image_size)
        shaded: ShadedImage = self.shader(fragments, vertices, faces, cameras, albedo, sh)
        visibility = vertex_visibility(vertices, faces, cameras, screen, fragments, self.visibility_tolerance)
        return RenderOutput(
            image=shaded.image,
            alpha=shaded.alpha,
            mask=fragments.mask,
            depth=fragments.depth,
            triangle_id=fragments.triangle_id,
            barycentric=fragments.barycentric,
            screen=screen,
            visibility=visibility,
        )


@torch.no_grad()
def paint_face_model(model, skin=SKIN_RGB, iris=(0.30, 0.18, 0.09)) -> torch.Tensor:
    """Per-vertex albedo (V, 3) of a face model: skin, and for the default head painted eyes, teeth, lips.

    Uses ``model.part`` (0 skin, 1/2 eyeballs, 3 teeth) when the model has one: each eyeball gets
    a pupil and an iris around its most frontal direction (in the neutral head) and white sclera,
    teeth are off-white; with landmarks, skin vertices on the front of the ellipse of the outer lip
    contour (iBUG 48-59) are tinted towards red, those behind the lips (the inside of the mouth)
    dark red. Models without ``part`` are skin-coloured.
    """
    neutral = model()
    vertices = neutral.vertices[0]
    like = {"dtype": vertices.dtype, "device": vertices.device}
    albedo = torch.tensor(skin, **like).repeat(vertices.shape[0], 1)
    part = getattr(model, "part", None)
    if part is None:
        return albedo
    for eye in (1, 2):
        selected = part == eye
        if selected.any():
            albedo[selected] = _eye_colours(vertices[selected], iris)
    albedo[part == 3] = torch.tensor(TEETH_RGB, **like)
    if neutral.landmarks68 is not None:
        lips, mouth = _mouth_weights(vertices, neutral.landmarks68[0])
        tinted = albedo * torch.tensor(LIP_TINT, **like)
        albedo = albedo + (lips * (part == 0))[:, None] * (tinted - albedo)
        albedo[mouth & (part == 0)] = torch.tensor(MOUTH_RGB, **like)
    return albedo


def _eye_colours(eyeball: torch.Tensor, iris) -> torch.Tensor:
    """(N, 3) colours of an eyeball's vertices (N, 3): pupil, iris, sclera by angle from the front."""
    centre = eyeball.mean(0)
    cos_front = torch.nn.functional.normalize(eyeball - centre, dim=-1)[:, 2]
    like = {"dtype": eyeball.dtype, "device": eyeball.device}
    colour = torch.tensor(SCLERA_RGB, **like).repeat(len(eyeball), 1)
    colour[cos_front > 0.85] = torch.tensor(iris, **like)
    colour[cos_front > 0.96] = torch.tensor(PUPIL_RGB, **like)
    return colour


def _mouth_weights(vertices: torch.Tensor, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip weight (V,) in [0, 1] (1 inside the ellipse through the outer lip contour, fading out over
    20 %, on the front of the face) and the mouth-interior mask (V,) bool (inside the ellipse, behind)."""
    lips = landmarks[48:60]
    centre = 0.5 * (landmarks[48] + landmarks[54])
    half_width = 0.5 * (landmarks[54, 0] - landmarks[48, 0]).abs()
    top = (lips[:, 1].max() - centre[1]).clamp(min=1e-3)
    bottom = (centre[1] - lips[:, 1].min()).clamp(min=1e-3)
    dx = (vertices[:, 0] - centre[0]) / half_width
    dy = (vertices[:, 1] - centre[1]) / torch.where(vertices[:, 1] > centre[1], top, bottom)
    radius = torch.sqrt(dx * dx + dy * dy)
    depth = centre[2] - vertices[:, 2]  # > 0: behind the mouth corners
    lips_weight = ((1.2 - radius) / 0.2).clamp(0, 1) * (depth < 0.012)
    return lips_weight, (radius < 1.2) & (depth >= 0.012) & (depth < 0.08)


def make_rasterizer(backend: str) -> torch.nn.Module:
    """The rasteriser for ``backend`` (auto, gl, torch); ``gl`` raises OferError without EGL."""
    if backend == "torch" or (backend == "auto" and not raster_gl.gl_available()):
        return TorchRasterizer()
    raster_gl.gl_context()
    return raster_gl.GLRasterizer()
