"""Metrics of the real-photo report (``ofer eval photos``): pure functions, no 3D ground truth needed.

These measures are ours (no benchmark defines them). Lengths are in the units of the inputs (the
report passes millimetres); image errors are in inter-ocular distances (IOD). A metric undefined
for its input is NaN, as in :mod:`ofer.evaluation.metrics`.

- *identity change*: :func:`identity_change`, the RMS distance (face-region vertices) after the
  similarity (Umeyama) alignment of one neutral mesh onto another;
- *same / different person*: :func:`pair_means` of the identity distances between photos;
- *expression agreement*: :func:`group_values` (ARKit names -> the groups of
  :data:`EXPRESSION_GROUPS`), :func:`agreement` (Pearson r and mean bias method - reference);
- *smile kept*: :func:`smile_fraction` of the hypotheses whose smile group exceeds a threshold;
- *hidden-region fidelity*: :func:`landmark_fidelity`, median landmark errors (IOD) over hidden and
  visible points, for the best hypothesis and on average;
- *spread*: :func:`region_spread` (:func:`ofer.evaluation.metrics.std_s` without a reference) on
  the vertices of :func:`region_vertices`.
"""

from __future__ import annotations

import numpy as np

from .metrics import NAN, aligned_rms, std_s

__all__ = [
    "EXPRESSION_GROUPS",
    "REGION_LANDMARKS",
    "SMILE_KEPT",
    "SMILING",
    "agreement",
    "defined_mean",
    "group_values",
    "has_groups",
    "identity_change",
    "identity_distances",
    "interocular",
    "landmark_fidelity",
    "pair_means",
    "pearson",
    "region_spread",
    "region_vertices",
    "smile_fraction",
]

# group -> the ARKit / MediaPipe blendshape names averaged into it
EXPRESSION_GROUPS = {
    "jawOpen": ("jawOpen",),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "blink": ("eyeBlinkLeft", "eyeBlinkRight"),
    "browInnerUp": ("browInnerUp",),
    "funnel/pucker": ("mouthFunnel", "mouthPucker"),
}
SMILING = 0.5  # a clean photo whose MediaPipe smile group exceeds this counts as smiling
SMILE_KEPT = 0.3  # a hypothesis whose smile group exceeds this keeps the smile
# iBUG-68 landmarks whose neighbourhood on the neutral mesh is a region of the spread metric
REGION_LANDMARKS = {"mouth": tuple(range(48, 68)), "eyes": tuple(range(36, 48))}


def identity_change(a: np.ndarray, b: np.ndarray, mask=None) -> float:
    """RMS distance of the (V, 3) mesh ``a`` similarity-aligned onto ``b``, on the vertices ``mask``.

    0 when ``a`` is a similarity transform of ``b``; ``mask``: boolean (V,), indices or ``None``.
    """
    return aligned_rms(a, b, mask, scaling=True)


def identity_distances(meshes: np.ndarray, mask=None) -> np.ndarray:
    """(F, F) symmetric matrix of :func:`identity_change` between (F, V, 3) meshes (row aligned onto column)."""
    count = len(meshes)
    out = np.zeros((count, count))
    for i in range(count):
        for j in range(i + 1, count):
            out[i, j] = out[j, i] = identity_change(meshes[i], meshes[j], mask)
    return out


def pair_means(distances: np.ndarray, persons) -> dict:
    """Mean distance between photos of the same person and of different people, and their ratio.

    Args:
        distances: (F, F) symmetric distances; persons: (F,) labels (``None``: unknown, left out).
    Returns:
        ``same``, ``different`` (NaN without such a pair), ``ratio = different / same`` and the pair
        counts ``same_pairs``, ``different_pairs``.
    """
    same, different = [], []
    for i in range(len(persons)):
        for j in range(i + 1, len(persons)):
            if persons[i] is not None and persons[j] is not None:
                (same if persons[i] == persons[j] else different).append(float(distances[i, j]))
    mean_same, mean_different = defined_mean(same)[0], defined_mean(different)[0]
    ratio = mean_different / mean_same if np.isfinite(mean_same) and mean_same > 0 else NAN
    return {"same": mean_same, "different": mean_different, "ratio": ratio, "same_pairs": len(same),
            "different_pairs": len(different)}


def has_groups(names) -> bool:
    """Whether every name of :data:`EXPRESSION_GROUPS` is among ``names`` (the face model speaks ARKit)."""
    return all(name in list(names) for group in EXPRESSION_GROUPS.values() for name in group)


def group_values(values: np.ndarray, names) -> dict[str, np.ndarray]:
    """Group scores of (..., K) coefficients named ``names`` (K,): {group: (...) mean of its names}."""
    values, names = np.asarray(values, dtype=np.float64), list(names)
    return {group: values[..., [names.index(n) for n in members]].mean(-1)
            for group, members in EXPRESSION_GROUPS.items()}


def pearson(x, y) -> float:
    """Pearson correlation of two (F,) arrays; NaN for fewer than 3 values or a zero variance."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        return NAN
    dx, dy = x - x.mean(), y - y.mean()
    norm = np.sqrt((dx**2).sum() * (dy**2).sum())
    return float((dx * dy).sum() / norm) if norm > 0 else NAN


def agreement(method, reference) -> dict:
    """Agreement of (F,) method scores with (F,) reference scores: ``r`` (:func:`pearson`), ``bias`` (mean of
    method - reference; NaN for F = 0) and ``n`` = F."""
    method, reference = np.asarray(method, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    bias = float((method - reference).mean()) if len(method) else NAN
    return {"r": pearson(method, reference), "bias": bias, "n": len(method)}


def smile_fraction(smile, threshold: float = SMILE_KEPT) -> float:
    """Fraction of the (M,) hypotheses' smile-group values above ``threshold``; NaN for M = 0."""
    smile = np.asarray(smile, dtype=np.float64)
    return float((smile > threshold).mean()) if smile.size else NAN


def interocular(points: np.ndarray) -> float:
    """Distance between the outer eye corners (iBUG 36 and 45) of (68, D) points."""
    return float(np.linalg.norm(np.asarray(points, dtype=np.float64)[45] - np.asarray(points, dtype=np.float64)[36]))


def landmark_fidelity(predicted: np.ndarray, reference: np.ndarray, hidden: np.ndarray) -> dict[str, float]:
    """Median landmark errors of M hypotheses over the hidden and the visible points, in IODs.

    Args:
        predicted: (M, 68, 2) projected landmarks of each hypothesis (pixels).
        reference: (68, 2) landmarks taken as the truth (pixels); its :func:`interocular` normalises.
        hidden: (68,) bool, the points under the occluder.
    Returns:
        ``hidden_best`` / ``hidden_average``: min / mean over the hypotheses of each one's median
        error over the hidden points (NaN if none is hidden); ``visible_best`` / ``visible_average``
        likewise over the other points (NaN if none is visible).
    """
    hidden = np.asarray(hidden, dtype=bool)
    error = np.linalg.norm(np.asarray(predicted, np.float64) - np.asarray(reference, np.float64), axis=-1)
    error = error / max(interocular(reference), 1e-12)  # (M, 68)
    out = {}
    for name, points in (("hidden", hidden), ("visible", ~hidden)):
        medians = np.median(error[:, points], axis=1) if points.any() else np.full(len(error), NAN)
        out[f"{name}_best"] = float(medians.min()) if len(medians) else NAN
        out[f"{name}_average"] = float(medians.mean()) if len(medians) else NAN
    return out


def region_vertices(neutral: np.ndarray, landmarks: np.ndarray, index, radius: float, within=None) -> np.ndarray:
    """(V,) bool: the vertices of the (V, 3) neutral mesh within ``radius`` of any of ``landmarks[index]``.

    ``landmarks``: (68, 3) points on that mesh (same units); ``within``: (V,) bool, a set the region
    is restricted to (e.g. the face region), or ``None``.
    """
    centres = np.asarray(landmarks, dtype=np.float64)[list(index)]
    distance = np.linalg.norm(np.asarray(neutral, np.float64)[:, None] - centres[None], axis=-1).min(1)
    region = distance <= radius
    return region if within is None else region & np.asarray(within, dtype=bool)


def region_spread(meshes: np.ndarray, region) -> float:
    """Spread of (M, V, 3) hypotheses on ``region``: the mean over its vertices of
    ``sqrt(mean_c var_c)``, the per-coordinate population std across the hypotheses, RMS over x, y, z
    (:func:`ofer.evaluation.metrics.std_s` without a reference). NaN for M < 2 or an empty region."""
    return std_s(meshes, None, region)


def defined_mean(values) -> tuple[float, int]:
    """Mean of the finite ``values`` and how many there were (NaN, 0 when none)."""
    values = np.asarray(list(values), dtype=np.float64)
    finite = values[np.isfinite(values)]
    return (float(finite.mean()) if finite.size else NAN), int(finite.size)
