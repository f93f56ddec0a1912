"""A fast headless OpenGL rasteriser (moderngl + EGL), returning the same :class:`Fragments`.

The triangles are drawn unindexed (three vertices per triangle, in ``faces`` order) from screen
coordinates: pixel (x, y) maps to window coordinates (x, y), so GL's pixel centres are the
reference's integer + 0.5 and GL row 0 is image row 0 (the top); there is no perspective
division (w = 1), so barycentrics and depth are interpolated affinely in screen space, as in
:mod:`ofer.render.raster_torch`. Every vertex carries the three corners of its triangle, and its
corner index is ``gl_VertexID % 3`` (no geometry shader). Each fragment writes
``gl_PrimitiveID + 1`` into an R32I attachment, and its barycentrics (corner attributes (1,0,0),
(0,1,0), (0,0,1), up to the growth below) and depth into an RGBA32F attachment; a ``LESS`` depth
test keeps the closest triangle, the first drawn on ties, as in the reference.

Coverage: the reference counts a pixel centre lying exactly on an edge as inside, while GL's fill
rule gives a centre on an edge shared by two triangles to one of them and drops one on the
outline. So the mesh is drawn twice: first as is (GL's fill rule inside the mesh), then with every
triangle grown about its incentre by :data:`EXPAND_PX` (one step of Mesa's 1/256-pixel vertex
snapping; corner barycentrics set so that the interpolated values are those of the original
triangle) with its depths mapped behind all of the first pass, so that it only fills pixels the
first pass left empty: the outline becomes inclusive as in the reference. What remains are pixel
centres within about 1/256 pixel of an edge, where GL's snapping decides (about 0.1 % of the
pixels of a head at 224 x 224 get the neighbouring triangle).

When ``screen`` requires grad, barycentrics and depth are recomputed in PyTorch
from the GL triangle ids (:func:`ofer.render.raster_torch.fragments_from_ids`), so this backend is
differentiable in the same way as the PyTorch one.

One EGL context is created on first use and reused (``Mesa`` llvmpipe works without a GPU).
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from ..errors import OferError
from .fragments import Fragments
from .raster_torch import fragments_from_ids

EXPAND_PX = 1.0 / 256
EGL_HELP = "headless OpenGL (EGL) is unavailable: install the Debian packages libegl1 and libgl1-mesa-dri"

VERTEX_SHADER = """
#version 330
in vec3 in_p0;  // the three corners of this vertex's triangle: pixel x, pixel y, depth
in vec3 in_p1;
in vec3 in_p2;
uniform vec2 u_size;  // width, height
uniform vec2 u_depth;  // depth -> NDC z: z * u_depth.x + u_depth.y
uniform float u_margin;  // pixels by which the triangle's edges move out (0: as is)
noperspective out vec4 v_bary_depth;
void main() {
    int k = gl_VertexID % 3;
    vec3 corner = vec3(float(k == 0), float(k == 1), float(k == 2));
    vec3 sides = vec3(distance(in_p1.xy, in_p2.xy), distance(in_p2.xy, in_p0.xy), distance(in_p0.xy, in_p1.xy));
    float perimeter = max(sides.x + sides.y + sides.z, 1e-30);
    vec2 e1 = in_p1.xy - in_p0.xy, e2 = in_p2.xy - in_p0.xy;
    float inradius = abs(e1.x * e2.y - e1.y * e2.x) / perimeter;
    // Slivers: bound the corner displacement to 0.05 px instead of reaching the full margin.
    float grow = u_margin > 0.0 ? min(u_margin / max(inradius, 1e-30), 0.05 / max(max(sides.x, sides.y), max(sides.z, 1e-30))) : 0.0;
    vec3 bary = corner + grow * (corner - sides / perimeter);  // about the incentre
    vec3 p = bary.x * in_p0 + bary.y * in_p1 + bary.z * in_p2;
    v_bary_depth = vec4(bary, p.z);
    gl_Position = vec4(p.xy / u_size * 2.0 - 1.0, p.z * u_depth.x + u_depth.y, 1.0);
}
"""

FRAGMENT_SHADER = """
#version 330
noperspective in vec4 v_bary_depth;
layout(location = 0) out int out_id;
layout(location = 1) out vec4 out_bary_depth;
void main() {
    out_id = gl_PrimitiveID + 1;
    out_bary_depth = v_bary_depth;
}
"""

_STATE = threading.local()


def gl_context():
    """The shared headless moderngl context (created on first use); raises :class:`OferError`."""
    context = getattr(_STATE, "context", None)
    if context is None:
        try:
            import moderngl
        except ImportError:
            raise OferError("the OpenGL renderer needs the 'moderngl' package (pip install moderngl)") from None
        try:
            context = moderngl.create_standalone_context(backend="egl")
        except Exception as exc:  # noqa: BLE001 - moderngl/glcontext raise plain Exception
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise OferError(f"{EGL_HELP} ({reason})") from None
        _STATE.context = context
        _STATE.program = context.program(vertex_shader=VERTEX_SHADER, fragment_shader=FRAGMENT_SHADER)
        _STATE.targets = {}
    return context


def gl_available() -> bool:
    """Whether a headless OpenGL context can be created on this machine."""
    try:
        gl_context()
    except OferError:
        return False
    return True


def _targets(height: int, width: int):
    """Framebuffer (id, bary+depth, depth buffer) for one image size, cached."""
    key = (height, width)
    if key not in _STATE.targets:
        context = gl_context()
        ids = context.texture((width, height), 1, dtype="i4")
        bary = context.texture((width, height), 4, dtype="f4")
        depth = context.depth_renderbuffer((width, height))
        _STATE.targets[key] = (context.framebuffer(color_attachments=[ids, bary], depth_attachment=depth), ids, bary)
    return _STATE.targets[key]


def triangle_corners(tri: np.ndarray) -> np.ndarray:
    """The vertex buffer of one mesh: screen triangles (F, 3, 3) -> (F, 3 vertices, 9) float32.

    Every vertex carries its triangle's three corners; degenerate or non-finite triangles (skipped
    by the reference) are collapsed to a point off the image.
    """
    edge1, edge2 = tri[:, 1, :2] - tri[:, 0, :2], tri[:, 2, :2] - tri[:, 0, :2]
    cross = edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]  # twice the signed area
    flat = tri.reshape(-1, 1, 9).astype(np.float32)
    flat[~(np.isfinite(tri).all((1, 2)) & (np.abs(cross) >= 1e-12))] = (-1.0, -1.0, 0.0) * 3
    return np.repeat(flat, 3, axis=1)


def _draw(corners: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise one mesh, both passes.

    Args:
        corners: (F, 3, 9) float32 vertex buffer (see :func:`triangle_corners`).
    Returns:
        triangle id + 1 (H, W) int32 (0: background) and barycentrics + depth (H, W, 4) float32.
    """
    import moderngl

    context = gl_context()
    framebuffer, ids, bary = _targets(height, width)
    low, high = float(corners[..., 2].min()), float(corners[..., 2].max())
    span = max(high - low, 1e-6) * 1.02
    program = _STATE.program
    program["u_size"].value = (float(width), float(height))
    buffer = context.buffer(np.ascontiguousarray(corners).tobytes())
    vao = context.vertex_array(program, [(buffer, "3f 3f 3f", "in_p0", "in_p1", "in_p2")])
    framebuffer.use()
    framebuffer.viewport = (0, 0, width, height)
    framebuffer.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
    context.enable(moderngl.DEPTH_TEST)
    context.disable(moderngl.CULL_FACE | moderngl.BLEND)
    context.depth_func = "<"
    for margin, offset in ((0.0, -0.5), (EXPAND_PX, 0.5)):  # depths -> NDC (-0.95, -0.05), then (0.05, 0.95)
        program["u_margin"].value = margin
        program["u_depth"].value = (0.9 / span, offset - 0.9 * (low + high) / (2 * span))
        vao.render(moderngl.TRIANGLES)
    triangle = np.frombuffer(ids.read(), dtype=np.int32).reshape(height, width)
    values = np.frombuffer(bary.read(), dtype=np.float32).reshape(height, width, 4)
    vao.release()
    buffer.release()
    return triangle, values


def rasterize(screen: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> Fragments:
    """Rasterise a batch of meshes given in screen space with OpenGL.

    Args:
        screen: (B, V, 3) pixel x, pixel y, depth (smaller = closer); if it requires grad, the
            barycentrics and depth are recomputed differentiably in PyTorch.
        faces: (F, 3) long, shared by the batch.
    Returns:
        :class:`Fragments` (B, H, W) on ``screen``'s device.
    """
    faces_np = faces.detach().cpu().long().numpy()
    tri = screen.detach().cpu().double().numpy()[:, faces_np]  # (B, F, 3, 3)
    triangle, values = zip(*(_draw(triangle_corners(item), height, width) for item in tri))
    triangle_id = torch.from_numpy(np.stack(triangle).astype(np.int64) - 1).to(screen.device)
    if screen.requires_grad:
        return fragments_from_ids(screen, faces.to(screen.device).long(), triangle_id)
    values = torch.from_numpy(np.stack(values)).to(device=screen.device, dtype=screen.dtype)
    mask = (triangle_id >= 0)[..., None]
    weights = values[..., :3] / values[..., :3].sum(-1, keepdim=True).where(mask, torch.ones_like(values[..., :1]))
    barycentric = torch.where(mask, weights, torch.zeros_like(weights))  # (GL interpolates to ~1e-4)
    depth = torch.where(mask[..., 0], values[..., 3], torch.full_like(values[..., 3], torch.inf))
    return Fragments(triangle_id=triangle_id, barycentric=barycentric, depth=depth)


class GLRasterizer(torch.nn.Module):
    """OpenGL backend: ``rasterizer(screen (B,V,3), faces (F,3), image_size (H,W)) -> Fragments``."""

    def forward(self, screen: torch.Tensor, faces: torch.Tensor, image_size: tuple[int, int]) -> Fragments:
        return rasterize(screen, faces, *image_size)
