"""NoW-style shape error (topology independent): crop, landmark Procrustes, scan-to-mesh refinement.

For one prediction (a mesh with its 7 NoW landmarks) and one ground-truth scan (with its 7 landmarks),
:func:`now_error` follows the NoW benchmark protocol (Sanyal et al. 2019, ``now_evaluation``):

1. **Crop** the scan to a sphere around the face. NoW's 7 landmarks are, in order: right-eye outer,
   right-eye inner, left-eye inner, left-eye outer, nose bottom, right mouth corner, left mouth corner
   ("right" = the subject's right). With the *nose bridge* taken as the midpoint of the two inner eye
   corners, the centre is ``nose_bottom + 0.3 (nose_bridge - nose_bottom)`` and the radius is
   ``1.4 * mean(|right_eye_outer - left_eye_outer|, |nose_bridge - nose_bottom|)`` (the second term is
   the "nose length"). Scan vertices within the sphere (distance <= radius) are the measured points.
2. **Landmark alignment**: the similarity (Umeyama) that maps the predicted 7 landmarks onto the
   scan's 7 (metrical variant: rigid, scale fixed at 1).
3. **Refinement**: scale, rotation and translation of the prediction are refined (from step 2) by
   minimising the mean squared distance from every cropped scan point to the predicted *surface*
   (exact point-to-triangle distance). Each iteration re-computes the exact closest points, tries a
   Gauss-Newton step on the point-to-surface distances (point-to-plane linearisation, 7 or 6
   parameters) and falls back to a closed-form point-to-point similarity step (which cannot increase
   the objective) when the Gauss-Newton step does not lower it; it stops when an iteration lowers
   the objective by less than ``tolerance`` (relative) or after ``max_iterations``.
4. **Errors**: the distance of each cropped scan point to the aligned predicted surface, in mm.
   Aggregation (:func:`now_statistics`) pools the distances of all scans (as NoW does) and reports
   their median, mean and standard deviation. The per-vertex error of the prediction (distance of each
   aligned predicted vertex to the scan surface; NaN outside the crop sphere) comes back too, for
   heat maps.

Closest points are exact: :class:`SurfaceQuery` covers every triangle with sample points (centroids of
a regular subdivision) whose covering radius is at most ``h``; a point's ``k`` nearest samples give
candidate triangles, and the result is *proved* exact when the best candidate distance ``d*`` satisfies
``d* <= d_k - h`` (``d_k``: distance of the k-th nearest sample; every triangle outside the candidates
is at least ``d_k - h`` away). Points failing the test are answered exactly from all the triangles
having a sample within ``d* + h``.

Folder layout of :func:`evaluate_now` (all meshes ``.ply`` or ``.obj``; landmark files ``.npy`` or
``.txt`` holding 7 x 3 numbers in the units of their mesh, ground truth also MeshLab ``.pp``)::

    PRED/<subject>/<challenge>/<image>.ply|.obj     the prediction
    PRED/<subject>/<challenge>/<image>.npy|.txt     its 7 landmarks
    (PRED/<subject>/<image>.* is accepted too; its challenge is reported as "-")

    GT/scans/<subject>.obj|.ply   or  GT/<subject>.obj|.ply   or  GT/scans/<subject>/<one scan>.obj|.ply
    landmarks, first found of:  GT/scans_lmks/<subject>.npy|.txt|.pp,  <scan>_lmks.npy|.txt beside the
    scan,  GT/scans_lmks/<subject>/<one file>.npy|.txt|.pp,  GT/scans_lmks_onlypp/<subject>/<one file>.pp
    (the last is the official NoW layout)

Units: each mesh is in metres or millimetres; ``units="auto"`` takes a mesh whose bounding box is
smaller than 10 units in every direction to be in metres. Everything is reported in millimetres.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError
from .metrics import apply_similarity, procrustes_similarity

__all__ = [
    "NOW_LANDMARK_NAMES",
    "closest_points_on_triangles",
    "SurfaceQuery",
    "SurfaceHit",
    "point_to_surface_distance",
    "face_crop_sphere",
    "crop_scan",
    "NowResult",
    "now_error",
    "now_statistics",
    "load_landmarks",
    "NowPrediction",
    "find_predictions",
    "find_ground_truth",
    "NowItem",
    "NowReport",
    "evaluate_now",
    "to_millimetres",
    "save_error_heatmap",
    "save_now_heatmap",
]

NOW_LANDMARK_NAMES = (
    "right_eye_outer",
    "right_eye_inner",
    "left_eye_inner",
    "left_eye_outer",
    "nose_bottom",
    "right_mouth_corner",
    "left_mouth_corner",
)
MESH_EXTENSIONS = (".ply", ".obj")
LANDMARK_EXTENSIONS = (".npy", ".txt")
# Pairs (point, candidate triangle) evaluated at once.
_PAIR_CHUNK = 200_000


# ------------------------------------------------------------------------------ closest points


def closest_points_on_triangles(points, a, b, c) -> tuple[np.ndarray, np.ndarray]:
    """Exact closest point of each point on its triangle (vectorised).

    Args:
        points, a, b, c: (P, 3) query points and triangle corners (broadcastable).
    Returns:
        closest (P, 3) points and their barycentric coordinates (P, 3) w.r.t. (a, b, c).
    The orthogonal projection is used when it falls inside the triangle; otherwise (and for
    degenerate, near-collinear triangles) the closest of the three edge segments is taken.
    """
    p, a, b, c = (np.asarray(x, dtype=np.float64) for x in (points, a, b, c))
    p, a, b, c = np.broadcast_arrays(p, a, b, c)
    ab, ac, ap, bc, bp = b - a, c - a, p - a, c - b, p - b
    d00 = (ab * ab).sum(-1)
    d01 = (ab * ac).sum(-1)
    d11 = (ac * ac).sum(-1)
    d20 = (ap * ab).sum(-1)
    d21 = (ap * ac).sum(-1)
    denom = d00 * d11 - d01 * d01

    with np.errstate(divide="ignore", invalid="ignore"):
        ok = denom > 1e-12 * d00 * d11
        v = np.where(ok, (d11 * d20 - d01 * d21) / np.where(ok, denom, 1.0), -1.0)
        w = np.where(ok, (d00 * d21 - d01 * d20) / np.where(ok, denom, 1.0), -1.0)
    u = 1.0 - v - w
    inside = ok & (u >= 0) & (v >= 0) & (w >= 0)

    def _seg(num, den):
        return np.clip(np.divide(num, den, out=np.zeros_like(num), where=den > 0), 0.0, 1.0)

    t_ab = _seg(d20, d00)
    t_ac = _seg(d21, d11)
    t_bc = _seg((bp * bc).sum(-1), (bc * bc).sum(-1))
    q_ab = a + t_ab[..., None] * ab
    q_ac = a + t_ac[..., None] * ac
    q_bc = b + t_bc[..., None] * bc
    e_ab = ((p - q_ab) ** 2).sum(-1)
    e_ac = ((p - q_ac) ** 2).sum(-1)
    e_bc = ((p - q_bc) ** 2).sum(-1)
    zero = np.zeros_like(t_ab)
    bary = np.stack([1.0 - t_ab, t_ab, zero], -1)
    best = e_ab
    pick = e_ac < best
    bary = np.where(pick[..., None], np.stack([1.0 - t_ac, zero, t_ac], -1), bary)
    best = np.where(pick, e_ac, best)
    pick = e_bc < best
    bary = np.where(pick[..., None], np.stack([zero, 1.0 - t_bc, t_bc], -1), bary)
    bary = np.where(inside[..., None], np.stack([u, v, w], -1), bary)
    closest = bary[..., 0:1] * a + bary[..., 1:2] * b + bary[..., 2:3] * c
    return closest, bary


def _subdivision_centroids(n: int) -> np.ndarray:
    """Barycentric coordinates (n^2, 3) of the centroids of the n^2 triangles of a regular n-subdivision."""
    pts = []
    for i in range(n):
        for j in range(n - i):
            pts.append((i + 1 / 3, j + 1 / 3))  # upward triangle (i,j),(i+1,j),(i,j+1)
            if i + j <= n - 2:
                pts.append((i + 2 / 3, j + 2 / 3))  # downward triangle (i+1,j),(i,j+1),(i+1,j+1)
    uv = np.asarray(pts) / n
    return np.column_stack([1.0 - uv.sum(1), uv[:, 0], uv[:, 1]])


@dataclass
class SurfaceHit:
    """Closest points on a triangle mesh.

    ``distances`` (P,), ``points`` (P, 3), ``faces`` (P,) triangle indices, ``barycentric`` (P, 3).
    """

    distances: np.ndarray
    points: np.ndarray
    faces: np.ndarray
    barycentric: np.ndarray


class SurfaceQuery:
    """Exact point-to-surface queries on a fixed triangle mesh (see the module docstring for the guarantee).

    Args:
        vertices: (V, 3); faces: (F, 3) integer.
        spacing: target covering radius ``h`` of the triangle samples (default: the median distance
            from a triangle's centroid to its farthest corner); triangles are subdivided regularly until
            every sample covers at most ``h`` of its triangle.
        max_samples: cap on the number of samples (``h`` grows until it fits).
    """

    def __init__(self, vertices, faces, spacing: float | None = None, max_samples: int = 3_000_000):
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        if len(self.faces) == 0:
            raise ValueError("the mesh has no triangles")
        tri = self.vertices[self.faces]  # (F, 3, 3)
        centroid = tri.mean(1)
        reach = np.sqrt(((tri - centroid[:, None]) ** 2).sum(-1)).max(1)  # centroid -> farthest corner
        h = float(spacing) if spacing else float(np.median(reach))
        h = max(h, 1e-9 * max(float(np.ptp(self.vertices, axis=0).max()), 1e-12))
        while True:
            n = np.maximum(np.ceil(reach / h), 1).astype(np.int64)
            if int((n * n).sum()) <= max_samples:
                break
            h *= 1.5
        samples, owner = [], []
        for k in np.unique(n):
            ids = np.flatnonzero(n == k)
            bary = _subdivision_centroids(int(k))
            samples.append(np.einsum("sk,fkc->fsc", bary, tri[ids]).reshape(-1, 3))
            owner.append(np.repeat(ids, len(bary)))
        self.samples = np.concatenate(samples)
        self.sample_face = np.concatenate(owner)
        # Covering radius actually achieved: sub-triangles are copies of the triangle scaled by 1/n.
        self.sample_radius = (reach / n)[self.sample_face]  # covering radius of each sample
        self.spacing = float(self.sample_radius.max())
        self.tree = cKDTree(self.samples)
        self.num_fallback = 0  # points answered by the exact fallback in the last query

    def _pairs(self, points: np.ndarray, qidx: np.ndarray, fidx: np.ndarray):
        tri = self.vertices[self.faces[fidx]]
        cp, bary = closest_points_on_triangles(points[qidx], tri[:, 0], tri[:, 1], tri[:, 2])
        return np.sqrt(((points[qidx] - cp) ** 2).sum(-1)), cp, bary

    def _reduce(self, points, qidx, fidx, out: SurfaceHit) -> None:
        """Evaluate (point, triangle) pairs grouped by point (qidx sorted) and keep each point's best."""
        for start in range(0, len(qidx), _PAIR_CHUNK):
            # chunk boundaries may split a point's pairs: comparing with the stored best handles it
            q, f = qidx[start : start + _PAIR_CHUNK], fidx[start : start + _PAIR_CHUNK]
            d, cp, bary = self._pairs(points, q, f)
            order = np.lexsort((d, q))
            first = order[np.r_[True, q[order][1:] != q[order][:-1]]]
            qs = q[first]
            better = d[first] < out.distances[qs]
            sel, qs = first[better], qs[better]
            out.distances[qs] = d[sel]
            out.points[qs] = cp[sel]
            out.faces[qs] = f[sel]
            out.barycentric[qs] = bary[sel]

    def _grid(self, points: np.ndarray, rows: np.ndarray, dist: np.ndarray, sidx: np.ndarray, out: SurfaceHit) -> None:
        """Evaluate the candidate samples ``sidx`` (len(rows), k), at distances ``dist``, of the points ``rows``.

        A sample's triangle is skipped when it cannot beat the point's current best: every point of
        the triangle is at least ``dist - radius(sample)`` away.
        """
        k = sidx.shape[1]
        step = max(1, _PAIR_CHUNK // k)
        for start in range(0, len(rows), step):
            r, s, dd = rows[start : start + step], sidx[start : start + step], dist[start : start + step]
            f = self.sample_face[s]  # (r, k)
            need = dd - self.sample_radius[s] <= out.distances[r][:, None]
            if not need.any():
                continue
            ri, ci = np.nonzero(need)
            d, cp, bary = self._pairs(points, r[ri], f[ri, ci])
            grid = np.full(need.shape, np.inf)
            grid[ri, ci] = d
            slot = np.full(need.shape, -1, dtype=np.int64)
            slot[ri, ci] = np.arange(len(ri))
            j = grid.argmin(1)
            rows_here = np.arange(len(r))
            better = grid[rows_here, j] < out.distances[r]
            pick = slot[rows_here[better], j[better]]
            rb = r[better]
            out.distances[rb] = d[pick]
            out.points[rb] = cp[pick]
            out.faces[rb] = f[ri[pick], ci[pick]]
            out.barycentric[rb] = bary[pick]

    def query(self, points, k: int = 16) -> SurfaceHit:
        """Exact closest points on the surface for (P, 3) points.

        Candidates come from the ``k``, then ``4k``, then ``16k`` nearest samples; a point leaves as soon
        as its result is proved exact (``d* <= d_k - h``); the few left are answered from every triangle
        with a sample within ``d* + h`` of them.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        num = len(pts)
        out = SurfaceHit(
            distances=np.full(num, np.inf),
            points=np.zeros((num, 3)),
            faces=np.zeros(num, dtype=np.int64),
            barycentric=np.zeros((num, 3)),
        )
        self.num_fallback = 0
        todo = np.arange(num)
        total = len(self.samples)
        for kk in (k, 4 * k, 16 * k):
            if len(todo) == 0:
                return out
            kk = int(min(max(kk, 1), total))
            dk, idx = self.tree.query(pts[todo], k=kk)
            dk, idx = dk.reshape(len(todo), kk), idx.reshape(len(todo), kk)
            if kk == k:  # an upper bound first: the triangle of the nearest sample
                self._grid(pts, todo, dk[:, :1], idx[:, :1], out)
            self._grid(pts, todo, dk, idx, out)
            if kk == total:
                return out
            todo = todo[out.distances[todo] > dk[:, -1] - self.spacing]
        self.num_fallback = len(todo)
        for start in range(0, len(todo), 256):
            chunk = todo[start : start + 256]
            radii = out.distances[chunk] + self.spacing * (1 + 1e-9) + 1e-12
            lists = self.tree.query_ball_point(pts[chunk], r=radii)
            lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
            if lengths.sum() == 0:
                continue
            sidx = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
            # one evaluation per (point, triangle), grouped by point
            pair = np.unique(np.column_stack([np.repeat(chunk, lengths), self.sample_face[sidx]]), axis=0)
            self._reduce(pts, pair[:, 0], pair[:, 1], out)
        return out


def point_to_surface_distance(points, vertices, faces) -> np.ndarray:
    """Exact unsigned distance (P,) of each point to the triangle mesh (vertices, faces)."""
    return SurfaceQuery(vertices, faces).query(points).distances


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


# ----------------------------------------------------------------------------------------- crop


def face_crop_sphere(landmarks7, ratio: float = 1.4) -> tuple[np.ndarray, float]:
    """NoW face crop: ``(centre, radius)`` from the scan's 7 landmarks (see the module docstring)."""
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


# ------------------------------------------------------------------------------------ alignment


def _rodrigues(omega: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(omega))
    if theta < 1e-15:
        return np.eye(3)
    k = omega / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


@dataclass
class _State:
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    hit: SurfaceHit  # in the prediction's own frame
    distances: np.ndarray  # world (scan) frame, mm
    closest: np.ndarray  # world frame
    energy: float


def _evaluate(query: SurfaceQuery, gt: np.ndarray, s: float, rot, t) -> _State:
    local = (gt - t) @ rot / s  # inverse similarity: R^T (g - t) / s
    hit = query.query(local)
    return _State(
        scale=s,
        rotation=rot,
        translation=t,
        hit=hit,
        distances=s * hit.distances,
        closest=apply_similarity(hit.points, s, rot, t),
        energy=float(np.mean((s * hit.distances) ** 2)),
    )


def _gauss_newton(state: _State, gt: np.ndarray, normals_local: np.ndarray, scaling: bool):
    """One Gauss-Newton step on the point-to-surface distances; returns the new (s, R, t)."""
    c = state.closest
    diff = gt - c
    dist = state.distances
    n = np.divide(diff, dist[:, None], out=np.zeros_like(diff), where=dist[:, None] > 1e-12)
    flat = dist <= 1e-12
    n[flat] = normals_local[state.hit.faces[flat]] @ state.rotation.T
    m = c.mean(0)
    a = c - m
    cols = [np.cross(a, n), n]
    if scaling:
        cols.insert(0, (a * n).sum(1, keepdims=True))
    jac = np.concatenate(cols, 1)
    res = (diff * n).sum(1)
    x, *_ = np.linalg.lstsq(jac, res, rcond=None)
    delta = float(np.clip(x[0], -0.5, 0.5)) if scaling else 0.0  # never flip or collapse the scale
    omega = x[1:4] if scaling else x[0:3]
    tau = x[-3:]
    r_w = _rodrigues(omega)
    s_new = state.scale * (1 + delta)
    rot_new = r_w @ state.rotation
    t_new = (1 + delta) * r_w @ (state.translation - m) + m + tau
    return s_new, rot_new, t_new


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
    """NoW shape error of one prediction against one scan (inputs in mm; see the module docstring).

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

    s, rot, t = procrustes_similarity(pl, gl, scaling=not metrical)
    lmk_rmse = float(np.sqrt(((apply_similarity(pl, s, rot, t) - gl) ** 2).sum(1).mean()))
    lmk_scale = s
    query = SurfaceQuery(pv, pf)
    normals = _face_normals(pv, pf)
    state = _evaluate(query, gt_points, s, rot, t)
    scale_ref = max(radius, 1e-12)
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        energy = state.energy
        if energy <= (1e-12 * scale_ref) ** 2:
            break
        new = _evaluate(query, gt_points, *_gauss_newton(state, gt_points, normals, not metrical))
        if not new.energy < energy:
            # closed-form point-to-point step: never increases the objective
            new = _evaluate(query, gt_points, *procrustes_similarity(state.hit.points, gt_points, scaling=not metrical))
            if not new.energy < energy:
                break
        state = new
        if energy - new.energy <= tolerance * energy:
            break

    aligned = apply_similarity(pv, state.scale, state.rotation, state.translation)
    if gt_query is None:
        gv = np.asarray(gt_vertices, dtype=np.float64)
        has_faces = gt_faces is not None and len(gt_faces) > 0
        gt_query = SurfaceQuery(gv, gt_faces) if has_faces else cKDTree(gv)
    if isinstance(gt_query, SurfaceQuery):
        vertex_errors = gt_query.query(aligned).distances
    else:
        vertex_errors = gt_query.query(aligned)[0]
    vertex_errors = np.where(np.linalg.norm(aligned - centre, axis=1) <= radius, vertex_errors, np.nan)
    return NowResult(
        distances=state.distances,
        scan_points=gt_points,
        pred_vertices=aligned,
        pred_vertex_errors=vertex_errors,
        scale=float(state.scale),
        rotation=state.rotation,
        translation=state.translation,
        landmark_scale=float(lmk_scale),
        landmark_rmse=lmk_rmse,
        crop_centre=centre,
        crop_radius=radius,
        iterations=iterations,
    )


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


# ----------------------------------------------------------------------------------- file layout


def to_millimetres(vertices: np.ndarray, units: str = "auto") -> float:
    """Factor that converts a mesh's numbers to mm: 1000 for ``m``, 1 for ``mm``; ``auto`` guesses from the size."""
    if units == "m":
        return 1000.0
    if units == "mm":
        return 1.0
    if units != "auto":
        raise InputError(f"unknown units {units!r}: use auto, m or mm")
    extent = float(np.ptp(np.asarray(vertices), axis=0).max()) if len(vertices) else 0.0
    return 1000.0 if extent < 10.0 else 1.0


def load_landmarks(path: str | Path) -> np.ndarray:
    """Read 7 x 3 landmarks from ``.npy``, ``.txt`` (whitespace or comma separated) or MeshLab ``.pp``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: landmark file not found")
    try:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".pp":
            root = ET.parse(path).getroot()
            arr = [[float(p.get(a)) for a in "xyz"] for p in root.iter("point")]
        else:
            text = path.read_text().replace(",", " ")
            arr = np.loadtxt(text.splitlines(), dtype=np.float64)
        arr = np.asarray(arr, dtype=np.float64)
    except Exception as exc:  # numpy / xml raise many types for bad files
        raise InputError(f"{path}: not a readable landmark file ({type(exc).__name__}: {exc})") from None
    if arr.size != 21:
        raise InputError(f"{path}: expected 7 x 3 landmarks, got shape {arr.shape}")
    arr = arr.reshape(7, 3)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: landmarks contain NaN or infinite values")
    return arr


@dataclass
class NowPrediction:
    subject: str
    challenge: str
    image: str
    mesh_path: Path
    landmark_path: Path


def find_predictions(pred_dir: str | Path) -> list[NowPrediction]:
    """All predictions under ``PRED/<subject>/<challenge>/<image>.ply|.obj`` with their landmark files."""
    root = Path(pred_dir)
    if not root.is_dir():
        raise InputError(f"{root}: prediction folder not found")
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if path.suffix.lower() not in MESH_EXTENSIONS or not path.is_file() or len(rel) not in (2, 3):
            continue
        if any(part.startswith(".") for part in rel):
            continue
        landmark = next((path.with_suffix(e) for e in LANDMARK_EXTENSIONS if path.with_suffix(e).is_file()), None)
        if landmark is None:
            raise InputError(f"{path}: landmark file not found (expected {path.stem}.npy or {path.stem}.txt beside it)")
        challenge = rel[1] if len(rel) == 3 else "-"
        found.append(NowPrediction(rel[0], challenge, path.stem, path, landmark))
    if not found:
        raise InputError(f"{root}: no predicted meshes (<subject>/<challenge>/<image>.ply|.obj) found")
    return found


def find_ground_truth(gt_dir: str | Path, subject: str) -> tuple[Path, Path]:
    """The scan and landmark file of ``subject`` in the ground-truth folder (layouts: module docstring)."""
    root = Path(gt_dir)
    if not root.is_dir():
        raise InputError(f"{root}: ground-truth folder not found")
    scan = None
    for folder in (root / "scans", root):
        scan = next((folder / f"{subject}{e}" for e in MESH_EXTENSIONS if (folder / f"{subject}{e}").is_file()), None)
        if scan:
            break
    if scan is None and (root / "scans" / subject).is_dir():
        scans = sorted(p for p in (root / "scans" / subject).iterdir() if p.suffix.lower() in MESH_EXTENSIONS)
        scan = scans[0] if scans else None
    if scan is None:
        raise InputError(f"{root}: no ground-truth scan for subject {subject!r} (expected scans/{subject}.obj|.ply)")
    candidates = [root / "scans_lmks" / f"{subject}{e}" for e in (*LANDMARK_EXTENSIONS, ".pp")]
    candidates += [scan.with_name(f"{scan.stem}_lmks{e}") for e in LANDMARK_EXTENSIONS]
    if scan.parent.name == subject:
        candidates += [scan.parent / f"{subject}_lmks{e}" for e in LANDMARK_EXTENSIONS]
    folders = (
        (root / "scans_lmks" / subject, (*LANDMARK_EXTENSIONS, ".pp")),
        (root / "scans_lmks_onlypp" / subject, (".pp",)),
    )
    for folder, exts in folders:
        if folder.is_dir():
            candidates += sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)
    landmark = next((p for p in candidates if p.is_file()), None)
    if landmark is None:
        raise InputError(
            f"{scan}: landmark file not found (expected scans_lmks/{subject}.npy|.txt|.pp or {scan.stem}_lmks.npy|.txt)"
        )
    return scan, landmark


@dataclass
class NowItem:
    """Result of one prediction in a folder evaluation (distances in mm)."""

    subject: str
    challenge: str
    image: str
    mesh_path: Path
    distances: np.ndarray
    pred_vertex_errors: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    mm_per_unit: float
    landmark_rmse: float

    def statistics(self) -> dict[str, float]:
        return now_statistics([self.distances])

    def to_dict(self) -> dict:
        return {
            "subject": self.subject,
            "challenge": self.challenge,
            "image": self.image,
            "mesh": str(self.mesh_path),
            **self.statistics(),
            "scale": self.scale,
            "landmark_rmse": self.landmark_rmse,
        }


@dataclass
class NowReport:
    """All the results of a NoW folder evaluation; statistics pool the distances over predictions."""

    items: list[NowItem]
    metrical: bool
    ground_truth: dict[str, dict] = field(default_factory=dict)  # subject -> scan info

    def overall(self) -> dict[str, float]:
        return now_statistics([i.distances for i in self.items])

    def per_challenge(self) -> dict[str, dict[str, float]]:
        names = sorted({i.challenge for i in self.items})
        out = {}
        for name in names:
            chosen = [i for i in self.items if i.challenge == name]
            out[name] = {**now_statistics([i.distances for i in chosen]), "predictions": len(chosen)}
        return out

    def worst(self) -> NowItem:
        return max(self.items, key=lambda i: float(np.median(i.distances)))

    def to_dict(self) -> dict:
        return {
            "metric": "NoW scan-to-mesh distance (mm), "
            + ("metrical (rigid)" if self.metrical else "non-metrical (similarity)"),
            "metrical": self.metrical,
            "predictions": len(self.items),
            "overall": self.overall(),
            "per_challenge": self.per_challenge(),
            "items": [i.to_dict() for i in self.items],
        }


def evaluate_now(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    metrical: bool = False,
    pred_units: str = "auto",
    gt_units: str = "auto",
    crop_ratio: float = 1.4,
    progress: bool | None = False,
) -> NowReport:
    """Evaluate every prediction of a NoW-layout folder against its subject's scan (see the module docstring).

    All inputs are located and their landmark files checked before any alignment runs, so layout
    problems are reported at once. ``progress``: show a tqdm bar on stderr (``None``: only on a terminal).
    """
    from ..io.mesh import load_mesh

    predictions = find_predictions(pred_dir)
    gt_files = {s: find_ground_truth(gt_dir, s) for s in sorted({p.subject for p in predictions})}

    ground_truth = {}
    gt_cache = {}
    for subject, (scan_path, lmk_path) in gt_files.items():
        v, f = load_mesh(scan_path)
        factor = to_millimetres(v, gt_units)
        lmk = load_landmarks(lmk_path) * factor
        v = v * factor
        _, points, _, centre, radius = crop_scan(v, f, lmk, crop_ratio)
        if len(points) == 0:
            raise InputError(f"{scan_path}: no scan vertex lies inside the face crop (check the landmarks {lmk_path})")
        gt_query = SurfaceQuery(v, f) if len(f) else cKDTree(v)
        gt_cache[subject] = (v, f, lmk, gt_query)
        ground_truth[subject] = {
            "scan": str(scan_path),
            "landmarks": str(lmk_path),
            "mm_per_unit": factor,
            "cropped_points": int(len(points)),
            "crop_radius_mm": radius,
            "landmarks_mm": lmk.tolist(),
        }

    from tqdm import tqdm

    items = []
    bar = tqdm(predictions, desc="NoW", unit="mesh", disable=(None if progress is None else not progress), leave=False)
    for pred in bar:
        v, f = load_mesh(pred.mesh_path)
        if len(f) == 0:
            raise InputError(f"{pred.mesh_path}: mesh has no triangles")
        factor = to_millimetres(v, pred_units)
        lmk = load_landmarks(pred.landmark_path) * factor
        gv, gf, glmk, gq = gt_cache[pred.subject]
        res = now_error(v * factor, f, lmk, gv, glmk, gf, metrical=metrical, crop_ratio=crop_ratio, gt_query=gq)
        items.append(
            NowItem(
                subject=pred.subject,
                challenge=pred.challenge,
                image=pred.image,
                mesh_path=pred.mesh_path,
                distances=res.distances.astype(np.float32),
                pred_vertex_errors=res.pred_vertex_errors.astype(np.float32),
                scale=res.scale,
                rotation=res.rotation,
                translation=res.translation,
                mm_per_unit=factor,
                landmark_rmse=res.landmark_rmse,
            )
        )
    return NowReport(items=items, metrical=metrical, ground_truth=ground_truth)


# ------------------------------------------------------------------------------------- heat map


def _face_frame(landmarks7: np.ndarray | None, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (rows: right, up, towards the viewer) and origin of a frontal view of the face."""
    if landmarks7 is None:
        return np.eye(3), vertices.mean(0)
    lmk = np.asarray(landmarks7, dtype=np.float64)
    x = lmk[3] - lmk[0]  # towards the subject's left = the viewer's right
    x /= np.linalg.norm(x)
    y = 0.5 * (lmk[0] + lmk[3]) - 0.5 * (lmk[5] + lmk[6])  # mouth -> eyes
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)]), lmk[4]


def save_error_heatmap(
    path: str | Path,
    vertices,
    faces,
    errors,
    landmarks7=None,
    title: str | None = None,
    vmax: float | None = None,
    views=(("front", 0.0), ("side", 60.0)),
) -> Path:
    """Picture of a per-vertex error (mm) painted on a mesh, from the front and the side (matplotlib).

    ``landmarks7`` (7, 3), in the mesh's frame, orient the views (else the mesh's own axes are used);
    triangles with a NaN error at a corner are left out; ``vmax`` (top of the colour scale, mm) defaults
    to the 99th percentile of the errors, at least 0.1 mm (so numerical noise does not look like error).
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    e = np.asarray(errors, dtype=np.float64)
    f = f[np.isfinite(e[f]).all(1)]
    if len(f) == 0:
        raise InputError("no triangle has a finite error to draw")
    face_err = e[f].mean(1)
    vmax = float(vmax) if vmax else max(float(np.percentile(e[np.isfinite(e)], 99)), 0.1)
    frame, origin = _face_frame(landmarks7, v)
    local = (v - origin) @ frame.T
    cmap = matplotlib.colormaps["turbo"]
    fig = Figure(figsize=(4.2 * len(views) + 0.8, 4.8))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(views)))
    for ax, (name, yaw) in zip(axes, views):
        a = math.radians(yaw)
        rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        p = local @ rot.T
        tri = p[f]
        order = np.argsort(tri[:, :, 2].mean(1))  # painter's algorithm: far triangles first
        colours = cmap(np.clip(face_err[order] / vmax, 0, 1))
        coll = PolyCollection(tri[order, :, :2], facecolors=colours, edgecolors=colours, linewidths=0.3)
        ax.add_collection(coll)
        ax.set_xlim(tri[:, :, 0].min(), tri[:, :, 0].max())
        ax.set_ylim(tri[:, :, 1].min(), tri[:, :, 1].max())
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(name)
    mappable = ScalarMappable(cmap=cmap, norm=Normalize(0, vmax))
    fig.colorbar(mappable, ax=list(axes), label="error (mm)", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def save_now_heatmap(report: NowReport, path: str | Path, which: str = "worst") -> tuple[Path, NowItem]:
    """Heat map of the per-vertex error of one prediction of a folder evaluation (``worst`` median or ``first``)."""
    from ..io.mesh import load_mesh

    if not report.items:
        raise InputError("no prediction to draw")
    item = report.worst() if which == "worst" else report.items[0]
    v, f = load_mesh(item.mesh_path)
    aligned = apply_similarity(v * item.mm_per_unit, item.scale, item.rotation, item.translation)
    lmk = report.ground_truth.get(item.subject, {}).get("landmarks_mm")
    stats = item.statistics()
    title = (
        f"{item.subject} / {item.challenge} / {item.image}: median {stats['median']:.3f} mm, "
        f"mean {stats['mean']:.3f} mm ({'metrical' if report.metrical else 'non-metrical'})"
    )
    out = save_error_heatmap(path, aligned, f, item.pred_vertex_errors, landmarks7=lmk, title=title)
    return out, item
