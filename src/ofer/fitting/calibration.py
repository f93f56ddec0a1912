"""Shipped landmark calibrations: where a landmark detector's points sit on a face model's surface.

A calibration file ``data/<scheme>_<fingerprint[:12]>.npz`` holds, for one face model (by its
fingerprint) and one scheme:

- ``bias`` (L, 3): a model-frame offset (metres) added to each embedded point;
- ``sigma`` (L,): the detector's residual spread per point (the fitter weights points by
  ``(mean sigma / sigma)^2``);
- ``depth_offset`` (L,), optional: the detector's mean relative-depth error per point, in face sizes
  (RMS distance of its points to their centroid), subtracted from the observed depth;
- ``rotation_offset`` (3, 3), optional: the constant ``C`` with ``R_model ~ R_detector @ C``, which
  turns the detector's own head rotation into a prior on the model's.

``scripts/calibrate_landmarks.py`` measures them on renders with known ground truth (seed 777, not
the held-out set). A model without a file is fitted uncalibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class LandmarkCalibration:
    """``bias`` (L, 3) metres, ``sigma`` (L,), ``depth_offset`` (L,) face sizes, ``rotation_offset`` (3, 3)."""

    bias: torch.Tensor
    sigma: torch.Tensor
    depth_offset: Optional[torch.Tensor] = None
    rotation_offset: Optional[torch.Tensor] = None


def calibration_path(fingerprint: str, scheme: str) -> Path:
    return DATA / f"{scheme}_{fingerprint[:12]}.npz"


@lru_cache(maxsize=8)
def _load(path: str) -> Optional[LandmarkCalibration]:
    if not Path(path).is_file():
        return None
    with np.load(path) as data:
        get = lambda key: torch.as_tensor(data[key], dtype=torch.float32) if key in data else None  # noqa: E731
        return LandmarkCalibration(get("bias"), get("sigma"), get("depth_offset"), get("rotation_offset"))


def landmark_calibration(model, scheme: str) -> Optional[LandmarkCalibration]:
    """The calibration shipped for ``model`` and ``scheme``, or ``None``."""
    return _load(str(calibration_path(model.fingerprint(), scheme)))
