"""Exact closest points on triangle meshes: one triangle (vectorised) and a whole mesh (:class:`SurfaceQuery`).

:class:`SurfaceQuery` covers every triangle with sample points (centroids of a regular subdivision)
whose covering radius is at most ``h``; a point's ``k`` nearest samples give candidate triangles,
and the result is *proved* exact when the best candidate distance ``d*`` satisfies ``d* <= d_k - h``
(``d_k``: distance of the k-th nearest sample; every triangle outside the candidates is at least
``d_k - h`` away). Points failing the test are answered exactly from all the triangles having a
sample within ``d* + h``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["SurfaceHit", "SurfaceQuery", "closest_points_on_triangles", "face_normals", "point_to_surface_distance"]

# Pairs (point, candidate triangle) evaluated at once.
_PAIR_CHUNK = 200_000


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


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals (F, 3) of the triangles (zero for degenerate ones)."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)

