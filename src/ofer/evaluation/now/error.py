"""The NoW-style error of one prediction against one scan: crop, alignment, distances; pooled statistics.

NoW's 7 landmarks are, in order: right-eye outer, right-eye inner, left-eye inner, left-eye outer,
nose bottom, right mouth corner, left mouth corner ("right" = the subject's right).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ...errors import InputError
from ...geometry import apply_similarity
from .align import landmark_alignment, refine_alignment
from .surface import SurfaceQuery

__all__ = ["NOW_LANDMARK_NAMES", "NowResult", "crop_scan", "face_crop_sphere", "now_error", "now_statistics"]

NOW_LANDMARK_NAMES = (
    "right_eye_outer",
    "right_eye_inner",
    "left_eye_inner",
    "left_eye_outer",
    "nose_bottom",
    "right_mouth_corner",
    "left_mouth_corner",
)


def face_crop_sphere(landmarks7, ratio: float = 1.4) -> tuple[np.ndarray, float]:
    """NoW face crop: ``(centre, radius)`` from the scan's 7 landmarks (see :mod:`ofer.evaluation.now`)."""
    lmk = np.asarray(landmarks7, dtype=np.float64).reshape(7, 3)
    nose_bottom = lmk[4]
    nose_bridge = 0.5 * (lmk[1] + lmk[2])  # midpoint of the inner eye corners
    centre = nose_bottom + 0.3 * (nose_bridge - nose_bottom)
    outer_eye = np.linalg.norm(lmk[0] - lmk[3])
    nose_length = np.linalg.norm(nose_bridge - nose_bottom)
    return centre, float(ratio * 0.5 * (outer_eye + nose_length))


def crop_scan(vertices, faces, landmarks7, ratio: float = 1.4):
    """Keep the scan vertices inside the NoW face sphere.

    Returns ``(keep, points, cropped_faces, centre, radius)``: the boolean (V,) mask, the kept vertices,
    the triangles whose three corners are kept (re-indexed into ``points``; empty without ``faces``).
    """
    v = np.asarray(vertices, dtype=np.float64)
    centre, radius = face_crop_sphere(landmarks7, ratio)
    keep = np.linalg.norm(v - centre, axis=1) <= radius
    points = v[keep]
    if faces is None or len(faces) == 0:
        return keep, points, np.zeros((0, 3), dtype=np.int64), centre, radius
    f = np.asarray(faces, dtype=np.int64)
    f = f[keep[f].all(1)]
    remap = np.full(len(v), -1, dtype=np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    return keep, points, remap[f], centre, radius


@dataclass
class NowResult:
    """NoW error of one prediction (all lengths in mm, in the scan's frame).

    Attributes:
        distances: (P,) distance of each cropped scan point to the aligned predicted surface.
        scan_points: (P, 3) the cropped scan points.
        pred_vertices: (V, 3) the predicted vertices after alignment.
        pred_vertex_errors: (V,) distance of each aligned predicted vertex to the scan surface (to the
            nearest scan vertex when the scan has no triangles); NaN outside the crop sphere.
        scale, rotation, translation: the final similarity ``x -> scale * R x + t`` applied to the prediction.
        landmark_scale, landmark_rmse: scale of the landmark alignment and its landmark RMS residual.
        crop_centre, crop_radius: the crop sphere.
        iterations: refinement iterations run.
    """

    distances: np.ndarray
    scan_points: np.ndarray
    pred_vertices: np.ndarray
    pred_vertex_errors: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    landmark_scale: float
    landmark_rmse: float
    crop_centre: np.ndarray
    crop_radius: float
    iterations: int

    @property
    def median(self) -> float:
        return float(np.median(self.distances))

    @property
    def mean(self) -> float:
        return float(np.mean(self.distances))


def now_error(
    pred_vertices,
    pred_faces,
    pred_landmarks,
    gt_vertices,
    gt_landmarks,
    gt_faces=None,
    *,
    metrical: bool = False,
    crop_ratio: float = 1.4,
    max_iterations: int = 50,
    tolerance: float = 1e-7,
    gt_query: SurfaceQuery | cKDTree | None = None,
) -> NowResult:
    """NoW shape error of one prediction against one scan (inputs in mm; see :mod:`ofer.evaluation.now`).

    Args:
        pred_vertices (V, 3), pred_faces (F, 3), pred_landmarks (7, 3): the prediction.
        gt_vertices (G, 3), gt_landmarks (7, 3), gt_faces (H, 3) or None: the scan.
        metrical: rigid alignment only (scale fixed at 1): absolute size errors count.
        crop_ratio: radius factor of the crop sphere (NoW: 1.4).
        max_iterations, tolerance: refinement stops after ``max_iterations`` or when one iteration lowers
            the mean squared distance by less than ``tolerance`` times its value.
        gt_query: a prebuilt :class:`SurfaceQuery` of the whole scan (or a ``cKDTree`` of its vertices when it
            has no triangles), reused across predictions for the per-vertex errors.
    """
    pv = np.asarray(pred_vertices, dtype=np.float64)
    pf = np.asarray(pred_faces, dtype=np.int64)
    pl = np.asarray(pred_landmarks, dtype=np.float64).reshape(7, 3)
    gl = np.asarray(gt_landmarks, dtype=np.float64).reshape(7, 3)
    _, gt_points, _, centre, radius = crop_scan(gt_vertices, None, gl, crop_ratio)
    if len(gt_points) == 0:
        raise InputError("no scan point lies inside the face crop (are the scan landmarks in the scan's units?)")
    s, rot, t, lmk_rmse = landmark_alignment(pl, gl, scaling=not metrical)
    state, iterations = refine_alignment(pv, pf, gt_points, (s, rot, t), scaling=not metrical,
                                         max_iterations=max_iterations, tolerance=tolerance, length=radius)
    aligned = apply_similarity(pv, state.scale, state.rotation, state.translation)
    vertex_errors = _vertex_errors(aligned, gt_vertices, gt_faces, gt_query)
    vertex_errors = np.where(np.linalg.norm(aligned - centre, axis=1) <= radius, vertex_errors, np.nan)
    return NowResult(
        distances=state.distances,
        scan_points=gt_points,
        pred_vertices=aligned,
        pred_vertex_errors=vertex_errors,
        scale=float(state.scale),
        rotation=state.rotation,
        translation=state.translation,
        landmark_scale=float(s),
        landmark_rmse=lmk_rmse,
        crop_centre=centre,
        crop_radius=radius,
        iterations=iterations,
    )


def _vertex_errors(aligned: np.ndarray, gt_vertices, gt_faces, gt_query) -> np.ndarray:
    """Distance (V,) of each aligned predicted vertex to the scan surface (its vertices without triangles)."""
    if gt_query is None:
        gv = np.asarray(gt_vertices, dtype=np.float64)
        has_faces = gt_faces is not None and len(gt_faces) > 0
        gt_query = SurfaceQuery(gv, gt_faces) if has_faces else cKDTree(gv)
    if isinstance(gt_query, SurfaceQuery):
        return gt_query.query(aligned).distances
    return gt_query.query(aligned)[0]


def now_statistics(distances) -> dict[str, float]:
    """Pool per-scan distance arrays (mm) and return ``{median, mean, std, count}`` over all of them.

    As in NoW, the statistics are over the concatenation of all distances, not averages of per-image values.
    """
    arrays = [np.asarray(d, dtype=np.float64).ravel() for d in distances]
    pooled = np.concatenate(arrays) if arrays else np.zeros(0)
    if pooled.size == 0:
        return {"median": float("nan"), "mean": float("nan"), "std": float("nan"), "count": 0}
    return {
        "median": float(np.median(pooled)),
        "mean": float(pooled.mean()),
        "std": float(pooled.std()),
        "count": int(pooled.size),
    }
