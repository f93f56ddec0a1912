"""Segmentation and image-fitting metrics of FOCUS's paper (BASELINES.md A.9.4, A.11.6), as pure functions.

The positive class is the *visible face*; only pixels inside a region count (FOCUS: its own rendered
face region R, so background outside the rendering is not scored); per image, then averaged by the
caller. A mask with no positive prediction has PPV NaN (undefined), as one with no visible face has TPR NaN.
"""

from __future__ import annotations

import numpy as np


def segmentation_scores(predicted: np.ndarray, truth: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """ACC, PPV, TPR and F1 of a predicted visible-face mask against the truth, inside ``region``.

    Args: three (H, W) bool arrays. Example: predicting all face on a region 30 % occluded gives
    TPR 1, PPV 0.7, ACC 0.7, F1 0.82.
    """
    region = np.asarray(region, bool)
    p, t = np.asarray(predicted, bool) & region, np.asarray(truth, bool) & region
    count = int(region.sum())
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    tn = count - tp - fp - fn
    nan = float("nan")
    return {"acc": (tp + tn) / count if count else nan, "ppv": tp / (tp + fp) if tp + fp else nan,
            "tpr": tp / (tp + fn) if tp + fn else nan, "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan}


def fitting_rmse(target: np.ndarray, rendered: np.ndarray, mask: np.ndarray) -> float:
    """RMS colour error (0-255 scale, over the RGB channels) of a rendering inside ``mask``.

    Args: target, rendered: (H, W, 3) in [0, 1]; mask: (H, W) bool (FOCUS: the true visible face).
    NaN for an empty mask.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    diff = (np.asarray(target, np.float64) - np.asarray(rendered, np.float64))[mask] * 255.0
    return float(np.sqrt((diff**2).mean()))


__all__ = ["fitting_rmse", "segmentation_scores"]
