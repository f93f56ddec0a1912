"""Metrics of the evaluation suite (SPEC section 6): sample errors, diversity, plausibility.

Ranking quality is in :mod:`ofer.evaluation.ranking`, the NoW-style error in :mod:`ofer.evaluation.now`.

Conventions shared by every function here:

* distances are in millimetres: pass meshes in mm (the face models work in metres, multiply by 1000);
* ``D(A, B) = ||A - B||_F / sqrt(#vertices)``: the RMS vertex distance between two meshes of the same
  topology, without any alignment, computed on an evaluated vertex set (a boolean mask or an index
  array over the ``V`` vertices; ``None`` means all vertices);
* ``samples`` are ``(N, V, 3)`` hypotheses for one image, ``gt`` is ``(V, 3)``.

:func:`rms_distance` works on numpy arrays and on torch tensors (it stays differentiable); every other
function converts its inputs to float64 numpy and returns Python floats or numpy arrays.

A scalar metric that is undefined for its input is NaN (never 0), so that averages can leave it
out and count it: diversity metrics (ASD, minASD-V, maxASD-V, ASD-O, STD-S) with fewer than two
samples, and any metric whose vertex set is empty (e.g. ASD-O or ODE-O of an image without
occluded vertices). Array-valued helpers (:func:`pairwise_rms`, :func:`sample_errors`) raise instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import apply_similarity, umeyama

__all__ = [
    "VertexGaussian",
    "asd",
    "asd_o",
    "closest_sample_error",
    "max_asd_v",
    "min_asd_v",
    "ode",
    "pairwise_rms",
    "rms_distance",
    "sample_error",
    "sample_errors",
    "std_s",
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


def _nonempty(mask, num_vertices: int) -> bool:
    return bool(_vertex_mask(mask, num_vertices).any())


NAN = float("nan")


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


def aligned_rms(pred, gt, mask=None, scaling: bool = True) -> float:
    """RMS distance after the similarity (``scaling=False``: rigid) alignment of ``pred`` onto ``gt``.

    The alignment (Umeyama) and the distance use the same vertices: ``mask`` as in
    :func:`rms_distance` (boolean (V,) or indices; ``None``: all). Units are those of the inputs.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    index = np.arange(len(pred)) if mask is None else np.asarray(mask)
    index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
    scale, rot, t = umeyama(pred[index], gt[index], scaling=scaling)
    return float(rms_distance(apply_similarity(pred[index], scale, rot, t), gt[index]))


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
    """SE: mean over the samples of ``D(x_i, gt)`` on the evaluated vertex set (mm); NaN if the set is empty."""
    if not _nonempty(mask, _np(gt).shape[0]):
        return NAN
    return float(sample_errors(samples, gt, mask).mean())


def closest_sample_error(samples, gt, mask=None) -> float:
    """CSE: min over the samples of ``D(x_i, gt)`` on the evaluated vertex set (mm); NaN if the set is empty."""
    if not _nonempty(mask, _np(gt).shape[0]):
        return NAN
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


def _spread_defined(samples, mask) -> bool:
    """Two samples or more and a non-empty vertex set: the diversity metrics are defined."""
    x = _np(samples)
    return len(x) >= 2 and _nonempty(mask, x.shape[1])


def asd(samples, mask=None) -> float:
    """ASD (Diverse3D): ``mean_i min_{j != i} D(x_i, x_j)`` on the vertex set ``mask`` (mm).

    The average distance of each sample to its nearest other sample: 0 when all samples coincide;
    NaN for fewer than two samples or an empty vertex set.
    """
    if not _spread_defined(samples, mask):
        return NAN
    return float(_neighbour_distances(samples, mask)[0].mean())


def min_asd_v(samples, visible) -> float:
    """minASD-V: ``mean_i min_{j != i} D_vis(x_i, x_j)``, D on the visible vertices only (mm). Lower is better.

    NaN for fewer than two samples or no visible vertex.
    """
    if not _spread_defined(samples, visible):
        return NAN
    return float(_neighbour_distances(samples, visible)[0].mean())


def max_asd_v(samples, visible) -> float:
    """maxASD-V: ``mean_i max_{j != i} D_vis(x_i, x_j)``, D on the visible vertices only (mm). Lower is better.

    NaN for fewer than two samples or no visible vertex.
    """
    if not _spread_defined(samples, visible):
        return NAN
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

    NaN (with empty terms) when it is undefined: fewer than two samples, or no visible or no
    occluded vertex in ``region``.
    """
    if tau <= 0:
        raise ValueError("tau must be positive")
    x, g = _np(samples), _np(gt)
    num_v = g.shape[0]
    reg = _vertex_mask(region, num_v)
    vis = reg & _vertex_mask(visible, num_v)
    occ = reg & ~vis
    if len(x) < 2 or not vis.any() or not occ.any():
        empty = np.zeros(0)
        return (NAN, empty, empty, empty) if return_terms else NAN
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
    each vertex over the reference meshes themselves (the in-distribution threshold), ``count`` = R.
    The reference must not be the evaluated set itself (its own meshes would all be in distribution
    by construction); :mod:`ofer.evaluation.reference` builds it from training or held-out data.
    """

    mean: np.ndarray
    cov: np.ndarray
    precision: np.ndarray
    max_reference: np.ndarray
    ridge: float
    count: int = 0

    @classmethod
    def fit(cls, reference, ridge: float = 1e-3, chunk: int = 256) -> VertexGaussian:
        """Fit on (R, V, 3) reference meshes in mm (float64 sums over ``chunk`` meshes at a time).

        ``ridge`` (mm^2, default 1e-3: a 0.03 mm standard-deviation floor) keeps the covariance of
        vertices that hardly move in the reference set invertible.
        """
        ref = reference.detach().cpu().numpy() if hasattr(reference, "detach") else np.asarray(reference)
        if ref.ndim != 3 or ref.shape[-1] != 3 or len(ref) == 0:
            raise ValueError(f"reference meshes must be (R, V, 3) with R >= 1, got {ref.shape}")
        parts = range(0, len(ref), chunk)
        mean = sum(ref[i : i + chunk].astype(np.float64).sum(0) for i in parts) / len(ref)
        scatter = np.zeros((ref.shape[1], 3, 3))
        for i in parts:
            centred = ref[i : i + chunk].astype(np.float64) - mean
            scatter += np.einsum("rvi,rvj->vij", centred, centred)
        cov = scatter / max(len(ref) - 1, 1) + ridge * np.eye(3)
        out = cls(mean=mean, cov=cov, precision=np.linalg.inv(cov), max_reference=np.zeros(len(mean)),
                  ridge=float(ridge), count=len(ref))
        out.max_reference = np.max([out.mahalanobis(ref[i : i + chunk]).max(0) for i in parts], axis=0)
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
    occluded / visible vertex set as ``mask``. 0 for samples inside the reference distribution; NaN
    when ``mask`` is empty.
    """
    x = _np(samples)
    if x.ndim == 2:
        x = x[None]
    m = _vertex_mask(mask, x.shape[1])
    if not m.any():
        return NAN
    return float(gaussian.excess(x)[:, m].mean())


def std_s(samples, gaussian: VertexGaussian | None = None, mask=None) -> float:
    """STD-S: per-vertex spread across the samples, out-of-distribution vertices excluded (mm).

    For each vertex v in ``mask`` (``None``: all):

    * ``I_v`` = the samples whose vertex v is in distribution, ``MD_v(x_i) <= max_reference_v``
      under ``gaussian`` (all N samples when ``gaussian`` is ``None``); an out-of-distribution
      vertex of one sample thus leaves out that sample only, at that vertex only;
    * ``s_v = sqrt(mean_c var_{i in I_v}(x_{i,v,c}))``: RMS over x, y, z of the population standard
      deviation (ddof = 0) over the samples of ``I_v``;
    * a vertex with ``|I_v| < 2`` has no measurable spread and is dropped.

    ``STD-S = mean of s_v`` over the vertices left; NaN when none is left (e.g. N < 2).
    """
    x = _np(samples)
    keep = _vertex_mask(mask, x.shape[1])
    if len(x) < 2 or not keep.any():
        return NAN
    inside = np.ones((len(x), int(keep.sum())), dtype=bool)  # (N, V')
    if gaussian is not None:
        inside = ~gaussian.out_of_distribution(x)[:, keep]
    x = x[:, keep]  # (N, V', 3)
    count = inside.sum(0)  # (V',)
    measured = count >= 2
    if not measured.any():
        return NAN
    w = inside[:, measured, None].astype(np.float64)  # (N, V'', 1)
    xs = x[:, measured]
    centre = (w * xs).sum(0) / count[measured, None]
    var = (w * (xs - centre) ** 2).sum(0) / count[measured, None]  # (V'', 3)
    return float(np.sqrt(var.mean(-1)).mean())
