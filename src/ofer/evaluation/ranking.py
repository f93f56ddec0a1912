"""Ranking quality (SPEC section 6): the ranked sample vs the best (oracle) vs the average sample, top-k overlap.

``errors`` and ``scores`` are (B, N): N candidates (identity samples) for each of B images; a higher
score is a better candidate. A single row (N,) is taken as B = 1.
"""

from __future__ import annotations

import numpy as np

__all__ = ["medoid_index", "ranked_errors", "ranking_table", "topk_overlap"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)



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


def medoid_index(meshes) -> np.ndarray:
    """(B, N, F, 3) -> (B,) index of the sample closest (RMS) to the mean of the N samples: a network-free ranker."""
    m = _np(meshes)
    return np.sqrt(((m - m.mean(1, keepdims=True)) ** 2).sum(-1).mean(-1)).argmin(1)
