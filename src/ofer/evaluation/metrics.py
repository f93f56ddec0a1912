"""Metrics of the evaluation suite (SPEC section 6): sample errors, diversity, plausibility, ranking.

Conventions shared by every function here:

* distances are in millimetres: pass meshes in mm (the face models work in metres, multiply by 1000);
* ``D(A, B) = ||A - B||_F / sqrt(#vertices)``: the RMS vertex distance between two meshes of the same
  topology, without any alignment, computed on an evaluated vertex set (a boolean mask or an index
  array over the ``V`` vertices; ``None`` means all vertices);
* ``samples`` are ``(N, V, 3)`` hypotheses for one image, ``gt`` is ``(V, 3)``.

:func:`rms_distance` works on numpy arrays and on torch tensors (it stays differentiable); every other
function converts its inputs to float64 numpy and returns Python floats or numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "rms_distance",
    "pairwise_rms",
    "sample_errors",
    "sample_error",
    "closest_sample_error",
    "asd",
    "min_asd_v",
    "max_asd_v",
    "asd_o",
    "VertexGaussian",
    "ode",
    "std_s",
    "ranked_errors",
    "topk_overlap",
    "ranking_table",
    "procrustes_similarity",
    "rigid_fit",
    "apply_similarity",
]

# Memory budget (float64 numbers) of one chunk of pairwise differences.
_CHUNK_NUMBERS = 8_000_000


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _vertex_mask(mask, num_vertices: int) -> np.ndarray:
    """A boolean (V,) mask from a boolean mask, an index array or ``None`` (all vertices)."""
    if mask is None:
        return np.ones(num_vertices, dtype=bool)
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.dtype == bool:
        if mask.shape != (num_vertices,):
            raise ValueError(f"vertex mask has shape {mask.shape}, expected ({num_vertices},)")
        return mask
    out = np.zeros(num_vertices, dtype=bool)
    out[mask.astype(np.int64).ravel()] = True
    return out


def _check_nonempty(mask: np.ndarray, what: str) -> None:
    if not mask.any():
        raise ValueError(f"the {what} vertex set is empty")


# --------------------------------------------------------------------------------------- distances


def rms_distance(a, b, mask=None):
    """RMS vertex distance ``D(A, B) = sqrt(mean_v ||a_v - b_v||^2)`` over the vertices in ``mask``.

    Args:
        a, b: (..., V, 3) meshes (broadcastable), numpy arrays or torch tensors, in mm.
        mask: vertex set: boolean (V,) mask, integer indices, or ``None`` for all vertices. A boolean
            mask with leading dimensions (..., V) weights each mesh pair with its own vertex set.
    Returns:
        (...,) distances, same library as the inputs (torch in, differentiable torch out).
    """
    diff2 = ((a - b) ** 2).sum(-1)  # (..., V)
    if mask is None:
        return diff2.mean(-1) ** 0.5
    is_torch = hasattr(diff2, "detach")
    if is_torch:
        import torch

        m = torch.as_tensor(mask, device=diff2.device)
        if m.dtype != torch.bool:
            return diff2[..., m.long()].mean(-1) ** 0.5
        m = m.to(diff2.dtype)
        return ((diff2 * m).sum(-1) / m.sum(-1)) ** 0.5
    m = np.asarray(mask)
    if m.dtype != bool:
        return diff2[..., m.astype(np.int64)].mean(-1) ** 0.5
    m = m.astype(diff2.dtype)
    return ((diff2 * m).sum(-1) / m.sum(-1)) ** 0.5


def pairwise_rms(samples, mask=None) -> np.ndarray:
    """All pairwise distances ``P[i, j] = D(x_i, x_j)`` (N, N) on the vertex set ``mask`` (exact, chunked)."""
    x = _np(samples)
    m = _vertex_mask(mask, x.shape[1])
    _check_nonempty(m, "evaluated")
    x = x[:, m].reshape(len(x), -1)  # (N, 3V')
    n, d = x.shape
    out = np.empty((n, n))
    rows = max(1, _CHUNK_NUMBERS // max(1, n * d))
    for start in range(0, n, rows):
        block = x[start : start + rows, None, :] - x[None, :, :]  # (r, N, 3V')
        out[start : start + rows] = np.sqrt((block**2).sum(-1) / (d // 3))
    np.fill_diagonal(out, 0.0)
    return out


def sample_errors(samples, gt, mask=None) -> np.ndarray:
    """Per-sample error ``e_i = D(x_i, gt)`` (N,) on the evaluated vertex set ``mask`` (mm)."""
    x, g = _np(samples), _np(gt)
    m = _vertex_mask(mask, g.shape[0])
    _check_nonempty(m, "evaluated")
    return np.sqrt(((x[:, m] - g[m]) ** 2).sum(-1).mean(-1))


def sample_error(samples, gt, mask=None) -> float:
    """SE: mean over the samples of ``D(x_i, gt)`` on the evaluated vertex set (mm)."""
    return float(sample_errors(samples, gt, mask).mean())


def closest_sample_error(samples, gt, mask=None) -> float:
    """CSE: min over the samples of ``D(x_i, gt)`` on the evaluated vertex set (mm)."""
    return float(sample_errors(samples, gt, mask).min())


# --------------------------------------------------------------------------------------- diversity


def _neighbour_distances(samples, mask, farthest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For each sample i: distance to its nearest (or farthest) other sample and that sample's index."""
    p = pairwise_rms(samples, mask)
    if len(p) < 2:
        raise ValueError("diversity metrics need at least two samples")
    np.fill_diagonal(p, -np.inf if farthest else np.inf)
    j = p.argmax(1) if farthest else p.argmin(1)
    return p[np.arange(len(p)), j], j


def asd(samples, mask=None) -> float:
    """ASD (Diverse3D): ``mean_i min_{j != i} D(x_i, x_j)`` on the vertex set ``mask`` (mm).

    The average distance of each sample to its nearest other sample: 0 when all samples coincide.
    """
    return float(_neighbour_distances(samples, mask)[0].mean())


def min_asd_v(samples, visible) -> float:
    """minASD-V: ``mean_i min_{j != i} D_vis(x_i, x_j)``, D on the visible vertices only (mm). Lower is better."""
    return float(_neighbour_distances(samples, visible)[0].mean())


def max_asd_v(samples, visible) -> float:
    """maxASD-V: ``mean_i max_{j != i} D_vis(x_i, x_j)``, D on the visible vertices only (mm). Lower is better."""
    return float(_neighbour_distances(samples, visible, farthest=True)[0].mean())


def asd_o(samples, gt, visible, tau: float, region=None, return_terms: bool = False):
    """ASD-O (paper Eq. 7): harmonic mean of visible fidelity and occluded diversity. Higher is better.

    Our definition (the paper's text swaps the names of the two terms; this is the reading that matches
    its stated intent, "occluded regions should be diverse, visible regions close to the ground truth"):

    * visible vertices ``vis = region & visible``, occluded vertices ``occ = region & ~visible``
      (``region`` = evaluated set, e.g. the front-face vertices; ``None`` = all vertices);
    * ``d_v(i) = clip(D_vis(x_i, gt) / tau, 0, 1)``: visible error of sample i (fidelity term);
    * ``j(i) = argmin_{j != i} D_occ(x_i, x_j)``: nearest other sample on the occluded vertices;
    * ``d_o(i) = clip(D_occ(x_i, x_j(i)) / tau, 0, 1)``: occluded diversity of sample i;
    * ``h(i) = 2 (1 - d_v) d_o / ((1 - d_v) + d_o)`` (0 where the denominator is 0);
    * ``ASD-O = mean_i h(i)``.

    Args:
        samples: (N, V, 3) mm; gt: (V, 3) mm; visible: (V,) mask or indices.
        tau: the fixed normaliser in mm (the same for both terms). The paper derives it from a maximum
            Mahalanobis distance of occluded vertices, which has no length unit; pick a length at which
            errors count as total failure / spread counts as full diversity (e.g. 10 mm) and keep it fixed
            across the methods you compare.
        return_terms: also return the per-sample ``(h, d_v, d_o)``.
    """
    x, g = _np(samples), _np(gt)
    num_v = g.shape[0]
    reg = _vertex_mask(region, num_v)
    vis = reg & _vertex_mask(visible, num_v)
    occ = reg & ~vis
    _check_nonempty(vis, "visible")
    _check_nonempty(occ, "occluded")
    if tau <= 0:
        raise ValueError("tau must be positive")
    d_v = np.clip(sample_errors(x, g, vis) / tau, 0.0, 1.0)
    d_o = np.clip(_neighbour_distances(x, occ)[0] / tau, 0.0, 1.0)
    num = 2.0 * (1.0 - d_v) * d_o
    den = (1.0 - d_v) + d_o
    h = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    value = float(h.mean())
    return (value, h, d_v, d_o) if return_terms else value


# ---------------------------------------------------------------------------------- plausibility


@dataclass
class VertexGaussian:
    """A per-vertex 3D Gaussian fitted on reference ground-truth meshes (for ODE and STD-S).

    ``mean`` (V, 3), ``cov`` (V, 3, 3) = sample covariance (ddof = 1 when R > 1) + ``ridge`` I (mm^2),
    ``precision`` = inverse of ``cov``, ``max_reference`` (V,) = the largest Mahalanobis distance of
    each vertex over the reference meshes themselves (the in-distribution threshold).
    """

    mean: np.ndarray
    cov: np.ndarray
    precision: np.ndarray
    max_reference: np.ndarray
    ridge: float

    @classmethod
    def fit(cls, reference, ridge: float = 1e-3) -> "VertexGaussian":
        """Fit on (R, V, 3) reference meshes in mm.

        ``ridge`` (mm^2, default 1e-3: a 0.03 mm standard-deviation floor) keeps the covariance of
        vertices that hardly move in the reference set invertible.
        """
        ref = _np(reference)
        if ref.ndim != 3 or ref.shape[-1] != 3:
            raise ValueError(f"reference meshes must be (R, V, 3), got {ref.shape}")
        mean = ref.mean(0)
        centred = ref - mean
        dof = max(len(ref) - 1, 1)
        cov = np.einsum("rvi,rvj->vij", centred, centred) / dof + ridge * np.eye(3)
        precision = np.linalg.inv(cov)
        out = cls(mean=mean, cov=cov, precision=precision, max_reference=np.zeros(len(mean)), ridge=float(ridge))
        out.max_reference = out.mahalanobis(ref).max(0)
        return out

    def mahalanobis(self, meshes) -> np.ndarray:
        """Per-vertex Mahalanobis distance ``sqrt((x - mu)^T Sigma^-1 (x - mu))`` of (..., V, 3) meshes -> (..., V)."""
        d = _np(meshes) - self.mean
        return np.sqrt(np.maximum(np.einsum("...vi,vij,...vj->...v", d, self.precision, d), 0.0))

    def excess(self, meshes) -> np.ndarray:
        """``max(0, mahalanobis - max_reference)`` per vertex, (..., V)."""
        return np.maximum(self.mahalanobis(meshes) - self.max_reference, 0.0)

    def out_of_distribution(self, meshes) -> np.ndarray:
        """Boolean (..., V): the vertex lies beyond the reference maximum (``mahalanobis > max_reference``)."""
        return self.mahalanobis(meshes) > self.max_reference


def ode(samples, gaussian: VertexGaussian, mask=None) -> float:
    """ODE (out-of-distribution error): ``mean_{i, v in mask} max(0, MD_v(x_i) - max_reference_v)``.

    ``MD_v`` is the Mahalanobis distance of vertex v under ``gaussian`` (unitless), averaged over the
    samples (N, V, 3) or one mesh (V, 3) and over the vertices of ``mask``. ODE-O / ODE-V: pass the
    occluded / visible vertex set as ``mask``. 0 for samples inside the reference distribution.
    """
    x = _np(samples)
    if x.ndim == 2:
        x = x[None]
    m = _vertex_mask(mask, x.shape[1])
    _check_nonempty(m, "evaluated")
    return float(gaussian.excess(x)[:, m].mean())


def std_s(samples, gaussian: VertexGaussian | None = None, mask=None) -> float:
    """STD-S: mean over in-distribution vertices of the per-vertex spread across samples (mm).

    Per vertex ``s_v = sqrt(mean_c var_i(x_{i,v,c}))`` (RMS over x, y, z of the population standard
    deviation across the N samples, ddof = 0). Vertices with ``MD > max_reference`` in any sample are
    excluded (when ``gaussian`` is given), and only vertices in ``mask`` count. NaN if none is left.
    """
    x = _np(samples)
    if len(x) < 2:
        raise ValueError("STD-S needs at least two samples")
    keep = _vertex_mask(mask, x.shape[1]).copy()
    if gaussian is not None:
        keep &= ~gaussian.out_of_distribution(x).any(0)
    if not keep.any():
        return float("nan")
    spread = np.sqrt(x[:, keep].var(0).mean(-1))
    return float(spread.mean())


# --------------------------------------------------------------------------------------- ranking


def ranked_errors(errors, scores) -> dict[str, np.ndarray]:
    """Per-row ranked / oracle / average errors of (B, N) candidate errors and scores (higher = better).

    ``ranked`` = error of ``argmax(scores)`` (ties: first), ``oracle`` = min error, ``average`` = mean.
    """
    e, s = _np(errors), _np(scores)
    if e.ndim == 1:
        e, s = e[None], s[None]
    if e.shape != s.shape:
        raise ValueError(f"errors {e.shape} and scores {s.shape} differ in shape")
    rows = np.arange(len(e))
    return {"ranked": e[rows, s.argmax(1)], "oracle": e.min(1), "average": e.mean(1)}


def topk_overlap(errors, scores, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row top-k precision ``|A ∩ B| / k`` and IoU ``|A ∩ B| / |A ∪ B|`` (B,).

    A = the k candidates with the highest scores, B = the k candidates with the lowest errors (stable
    sort: ties are broken by index). ``k`` is clipped to N.
    """
    e, s = _np(errors), _np(scores)
    if e.ndim == 1:
        e, s = e[None], s[None]
    k = int(min(max(k, 1), e.shape[1]))
    by_score = np.argsort(-s, axis=1, kind="stable")[:, :k]
    by_error = np.argsort(e, axis=1, kind="stable")[:, :k]
    a = np.zeros(e.shape, dtype=bool)
    b = np.zeros(e.shape, dtype=bool)
    rows = np.arange(len(e))[:, None]
    a[rows, by_score] = True
    b[rows, by_error] = True
    inter = (a & b).sum(1)
    return inter / k, inter / (a | b).sum(1)


def ranking_table(errors, scores, ks=(1, 5, 10)) -> dict[str, float]:
    """Ranking quality over B images with N candidates each (errors and scores (B, N); higher score = better).

    Keys:
        ``ranked_error`` / ``oracle_error`` / ``average_error``: means over the B rows of the error of the
            top-scored candidate, of the best candidate, and of all candidates;
        ``gap_closed``: ``(average - ranked) / (average - oracle)`` on those means (1 = the ranking always
            picks the best, 0 = no better than a random pick, negative = worse; NaN when the gap is 0);
        ``precision@k`` / ``iou@k``: mean over rows of :func:`topk_overlap`;
        ``top{k}_error_by_score`` / ``top{k}_error_by_error``: mean error of the k best-scored candidates
            and of the k truly best candidates (the paper's "error (GT/Pred) avg k").
        ``num_rows``, ``num_candidates``.
    """
    e, s = _np(errors), _np(scores)
    if e.ndim == 1:
        e, s = e[None], s[None]
    r = ranked_errors(e, s)
    out = {
        "num_rows": int(e.shape[0]),
        "num_candidates": int(e.shape[1]),
        "ranked_error": float(r["ranked"].mean()),
        "oracle_error": float(r["oracle"].mean()),
        "average_error": float(r["average"].mean()),
    }
    gap = out["average_error"] - out["oracle_error"]
    out["gap_closed"] = float((out["average_error"] - out["ranked_error"]) / gap) if gap > 0 else float("nan")
    rows = np.arange(len(e))[:, None]
    for k in ks:
        precision, iou = topk_overlap(e, s, k)
        kk = int(min(max(k, 1), e.shape[1]))
        out[f"precision@{k}"] = float(precision.mean())
        out[f"iou@{k}"] = float(iou.mean())
        out[f"top{k}_error_by_score"] = float(e[rows, np.argsort(-s, axis=1, kind="stable")[:, :kk]].mean())
        out[f"top{k}_error_by_error"] = float(np.sort(e, axis=1)[:, :kk].mean())
    return out


# ----------------------------------------------------------------------------------- alignment


def procrustes_similarity(src, dst, weights=None, scaling: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (Umeyama 1991) minimising ``sum_k w_k ||s R src_k + t - dst_k||^2``; returns ``(s, R, t)``.

    ``src``/``dst`` (K, 3) corresponding points, ``weights`` (K,) non-negative or ``None``; R is a proper
    rotation (det +1, no reflection). ``scaling=False`` fixes s = 1 (rigid). Apply with
    :func:`apply_similarity`: ``dst ≈ s * src @ R.T + t``.
    """
    p, q = _np(src), _np(dst)
    if p.shape != q.shape or p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"src {p.shape} and dst {q.shape} must both be (K, 3)")
    w = np.ones(len(p)) if weights is None else _np(weights).ravel()
    w = w / w.sum()
    mu_p, mu_q = w @ p, w @ q
    pc, qc = p - mu_p, q - mu_q
    cov = (qc * w[:, None]).T @ pc  # sum_k w_k q_k p_k^T
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = (u * d) @ vt
    if scaling:
        var_p = float(w @ (pc**2).sum(1))
        scale = float((sig * d).sum() / var_p) if var_p > 0 else 1.0
    else:
        scale = 1.0
    t = mu_q - scale * rot @ mu_p
    return scale, rot, t


def rigid_fit(src, dst, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Rigid transform (R, t) minimising ``sum_k w_k ||R src_k + t - dst_k||^2`` (Kabsch)."""
    _, rot, t = procrustes_similarity(src, dst, weights, scaling=False)
    return rot, t


def apply_similarity(points, scale: float, rot, t) -> np.ndarray:
    """``scale * R p + t`` for (..., 3) points."""
    return scale * _np(points) @ np.asarray(rot).T + np.asarray(t)
