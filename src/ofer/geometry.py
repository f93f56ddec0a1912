"""Geometry primitives, written once: similarity/rigid alignment (Umeyama/Kabsch) and Rodrigues.

Conventions: points are rows; a similarity maps ``src`` to ``dst ≈ s * src @ R.T + t``.
"""

from __future__ import annotations

import numpy as np
import torch

_SMALL_ANGLE_SQ = 1e-8  # below it, sin(t)/t and (1-cos t)/t^2 use their Taylor series


def umeyama(src, dst, weights=None, scaling: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (Umeyama 1991) minimising ``sum_k w_k ||s R src_k + t - dst_k||^2``.

    Args:
        src, dst: (K, D) corresponding points (D = 2 or 3).
        weights: (K,) non-negative, or ``None`` for equal weights.
        scaling: ``False`` fixes s = 1 (rigid, Kabsch).
    Returns:
        ``(s, R, t)``: scale, proper rotation (D, D) with det +1 (no reflection), translation (D,).
    """
    p = np.asarray(src, dtype=np.float64)
    q = np.asarray(dst, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"src {p.shape} and dst {q.shape} must both be (K, D)")
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (len(p),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be (K,), non-negative and not all zero")
    w = w / w.sum()
    mu_p, mu_q = w @ p, w @ q
    pc, qc = p - mu_p, q - mu_q
    u, sig, vt = np.linalg.svd((qc * w[:, None]).T @ pc)
    d = np.ones(p.shape[1])
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = (u * d) @ vt
    scale = 1.0
    if scaling:
        var_p = float(w @ (pc**2).sum(1))
        scale = float((sig * d).sum() / var_p) if var_p > 0 else 1.0
    return scale, rot, mu_q - scale * rot @ mu_p


def rigid_fit(src, dst, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Rigid transform ``(R, t)`` minimising ``sum_k w_k ||R src_k + t - dst_k||^2`` (Kabsch)."""
    _, rot, t = umeyama(src, dst, weights, scaling=False)
    return rot, t


def apply_similarity(points, scale: float, rot, t) -> np.ndarray:
    """``scale * R p + t`` for (..., D) points."""
    return scale * np.asarray(points, dtype=np.float64) @ np.asarray(rot).T + np.asarray(t)


def similarity_matrix(scale: float, rot, t) -> np.ndarray:
    """The (D, D + 1) affine matrix ``[s R | t]`` of a similarity (for ``cv2.warpAffine`` when D = 2)."""
    return np.hstack([scale * np.asarray(rot), np.asarray(t)[:, None]])


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors -> (..., 3, 3) cross-product matrices."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack((torch.stack((zero, -z, y), -1), torch.stack((z, zero, -x), -1),
                        torch.stack((-y, x, zero), -1)), -2)


def rodrigues(rot_vecs):
    """Rotation matrices from axis-angle vectors (Rodrigues' formula).

    ``R = I + sin(t)/t K + (1 - cos t)/t^2 K^2`` with ``K`` the cross-product matrix of the
    (unnormalised) vector and ``t`` its norm; small angles use Taylor series, so the result and
    its gradient are exact and finite at zero.

    Args:
        rot_vecs: (..., 3) axis-angle vectors, a torch tensor or a numpy array.
    Returns:
        (..., 3, 3) rotation matrices, of the same kind (numpy in, numpy out) and dtype.
    """
    if not torch.is_tensor(rot_vecs):
        return rodrigues(torch.as_tensor(np.asarray(rot_vecs, dtype=np.float64))).numpy()
    angle_sq = (rot_vecs * rot_vecs).sum(dim=-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = angle_sq < _SMALL_ANGLE_SQ
    safe_sq = torch.where(small, torch.ones_like(angle_sq), angle_sq)
    angle = safe_sq.sqrt()
    sin_term = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(angle) / angle)
    cos_term = torch.where(small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(angle)) / safe_sq)
    k = skew(rot_vecs)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)
    return eye + sin_term * k + cos_term * (k @ k)
