"""Shipped landmark calibrations: where a landmark detector's points sit on a face model's surface.

A calibration file ``data/<scheme>_<fingerprint[:12]>.npz`` holds, for one face model (by its
fingerprint) and one scheme, ``bias`` (L, 3): a model-frame offset (metres) added to each embedded
point, and ``sigma`` (L,): the detector's residual spread per point (relative; the fitter weights
points by ``(mean sigma / sigma)^2``). ``scripts/calibrate_landmarks.py`` measures them on renders
with known ground truth. A model without a file is fitted uncalibrated.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

DATA = Path(__file__).resolve().parent / "data"


def calibration_path(fingerprint: str, scheme: str) -> Path:
    return DATA / f"{scheme}_{fingerprint[:12]}.npz"


@lru_cache(maxsize=8)
def _load(path: str) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    if not Path(path).is_file():
        return None
    with np.load(path) as data:
        return torch.as_tensor(data["bias"], dtype=torch.float32), torch.as_tensor(data["sigma"], dtype=torch.float32)


def landmark_calibration(model, scheme: str) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``(bias (L, 3), sigma (L,))`` shipped for ``model`` and ``scheme``, or ``(None, None)``."""
    found = _load(str(calibration_path(model.fingerprint(), scheme)))
    return (None, None) if found is None else found
