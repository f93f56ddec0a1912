"""The low-rank albedo of a face model: mean colour plus a few principal components per vertex.

A file ``data/albedo_<fingerprint[:12]>.npz`` (``mean`` (V, 3), ``basis`` (K, V, 3), the components
scaled by their standard deviations) is the PCA of the data engine's albedo sampler, written by
``scripts/albedo_pca.py``. A model without a file gets its painted default colours and rank 0.
The fitter's photometric refinement uses it; FOCUS's decoder reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..facemodels import FaceModel
from .calibration import DATA


@dataclass(frozen=True)
class AlbedoModel:
    """``mean`` (V, 3) and ``basis`` (K, V, 3): albedo = mean + sum_k coef_k basis_k, coef ~ N(0, 1)."""

    mean: torch.Tensor
    basis: torch.Tensor

    @property
    def rank(self) -> int:
        return self.basis.shape[0]

    def truncated(self, rank: int) -> "AlbedoModel":
        """The first ``rank`` components (at most the model's)."""
        return AlbedoModel(self.mean, self.basis[: max(0, rank)])

    def __call__(self, coef: torch.Tensor) -> torch.Tensor:
        """(B, K) coefficients -> (B, V, 3) albedo (not clipped)."""
        return self.mean.to(coef) + torch.einsum("bk,kvc->bvc", coef, self.basis.to(coef))


def albedo_path(fingerprint: str) -> Path:
    return DATA / f"albedo_{fingerprint[:12]}.npz"


@lru_cache(maxsize=4)
def _load(path: str) -> AlbedoModel | None:
    if not Path(path).is_file():
        return None
    with np.load(path) as data:
        return AlbedoModel(torch.as_tensor(data["mean"], dtype=torch.float32),
                           torch.as_tensor(data["basis"], dtype=torch.float32))


def albedo_model(model: FaceModel) -> AlbedoModel:
    """The shipped low-rank albedo of ``model``, or its painted colours with rank 0."""
    shipped = _load(str(albedo_path(model.fingerprint())))
    if shipped is not None and shipped.mean.shape[0] == model.num_vertices:
        return shipped
    from ..render.renderer import paint_face_model

    mean = paint_face_model(model).float().cpu()
    return AlbedoModel(mean, torch.zeros(0, *mean.shape))
