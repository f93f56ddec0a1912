"""NoW alignment: similarity from the 7 landmarks, then scan-to-surface refinement (Gauss-Newton).

:func:`refine_alignment` minimises the mean squared distance from the scan points to the predicted
*surface* over scale, rotation and translation of the prediction. Each iteration re-computes the
exact closest points, tries a Gauss-Newton step on the point-to-surface distances (point-to-plane
linearisation, 7 or 6 parameters) and falls back to the closed-form point-to-point similarity
(Umeyama) step, which cannot increase the objective, when the Gauss-Newton step does not lower it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...geometry import apply_similarity, rodrigues, umeyama
from .surface import SurfaceHit, SurfaceQuery, face_normals

__all__ = ["Alignment", "landmark_alignment", "refine_alignment"]


@dataclass
class Alignment:
    """A similarity ``x -> scale * R x + t`` of the prediction and how well it fits the scan points.

    ``hit``: closest points on the prediction in its own frame; ``distances`` (P,) and ``closest``
    (P, 3): in the scan's frame (mm); ``energy``: mean squared distance (mm^2).
    """

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    hit: SurfaceHit
    distances: np.ndarray
    closest: np.ndarray
    energy: float


def evaluate_alignment(query: SurfaceQuery, points: np.ndarray, s: float, rot, t) -> Alignment:
    """Closest points on the surface moved by (s, R, t) for the (P, 3) scan points."""
    local = (points - t) @ rot / s  # inverse similarity: R^T (p - t) / s
    hit = query.query(local)
    distances = s * hit.distances
    return Alignment(scale=s, rotation=rot, translation=t, hit=hit, distances=distances,
                     closest=apply_similarity(hit.points, s, rot, t), energy=float(np.mean(distances**2)))


def landmark_alignment(pred_landmarks, gt_landmarks,
                       scaling: bool = True) -> tuple[float, np.ndarray, np.ndarray, float]:
    """Similarity (rigid if not ``scaling``) of the (7, 3) predicted landmarks onto the scan's: (s, R, t, rmse)."""
    s, rot, t = umeyama(pred_landmarks, gt_landmarks, scaling=scaling)
    rmse = float(np.sqrt(((apply_similarity(pred_landmarks, s, rot, t) - gt_landmarks) ** 2).sum(1).mean()))
    return s, rot, t, rmse


def _gauss_newton(state: Alignment, points: np.ndarray, normals_local: np.ndarray, scaling: bool):
    """One Gauss-Newton step on the point-to-surface distances; returns the new (s, R, t)."""
    c = state.closest
    diff = points - c
    dist = state.distances
    n = np.divide(diff, dist[:, None], out=np.zeros_like(diff), where=dist[:, None] > 1e-12)
    flat = dist <= 1e-12
    n[flat] = normals_local[state.hit.faces[flat]] @ state.rotation.T
    m = c.mean(0)
    a = c - m
    cols = [np.cross(a, n), n]
    if scaling:
        cols.insert(0, (a * n).sum(1, keepdims=True))
    x, *_ = np.linalg.lstsq(np.concatenate(cols, 1), (diff * n).sum(1), rcond=None)
    delta = float(np.clip(x[0], -0.5, 0.5)) if scaling else 0.0  # never flip or collapse the scale
    omega = x[1:4] if scaling else x[0:3]
    r_w = rodrigues(omega)
    return state.scale * (1 + delta), r_w @ state.rotation, (1 + delta) * r_w @ (state.translation - m) + m + x[-3:]


def refine_alignment(vertices, faces, points, start: tuple, scaling: bool = True, max_iterations: int = 50,
                     tolerance: float = 1e-7, length: float = 1.0) -> tuple[Alignment, int]:
    """Refine ``start = (s, R, t)`` so the moved mesh (vertices (V, 3), faces (F, 3)) fits the (P, 3) points.

    Stops when an iteration lowers the energy by less than ``tolerance`` (relative), after
    ``max_iterations``, or when the fit is exact to ``1e-12 * length`` (``length``: a size of the
    problem, e.g. the crop radius). Returns the final alignment and the iterations run.
    """
    query = SurfaceQuery(vertices, faces)
    normals = face_normals(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64))
    state = evaluate_alignment(query, points, *start)
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        energy = state.energy
        if energy <= (1e-12 * max(length, 1e-12)) ** 2:
            break
        new = evaluate_alignment(query, points, *_gauss_newton(state, points, normals, scaling))
        if not new.energy < energy:
            new = evaluate_alignment(query, points, *umeyama(state.hit.points, points, scaling=scaling))
            if not new.energy < energy:
                break
        state = new
        if energy - new.energy <= tolerance * energy:
            break
    return state, iterations
