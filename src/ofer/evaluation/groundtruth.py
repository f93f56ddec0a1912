"""Meshes (mm, on the CPU) of the coefficients stored in data folders.

Data folders store ``shape`` (S,), ``expression`` (E,) and, for models with a jaw, ``jaw`` (jaw_dim,);
``expression`` and ``jaw`` together are the model's code (``code_dim`` = E + jaw_dim), which
``FaceModel.split_code`` turns into the expression and pose arguments of the model.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.shards import code_fields, stored_code
from ..facemodels import FaceModel

__all__ = ["code_meshes", "code_of", "ground_truth", "neutral_meshes"]

_CHUNK = 256  # meshes per face-model call


def code_of(data: dict[str, np.ndarray], index, model: FaceModel) -> np.ndarray:
    """The (B, code_dim) codes of the rows ``index``: ``expression`` followed by ``jaw`` where the model has one."""
    rows = {name: data[name][index] for name in code_fields(model.jaw_dim)}
    return np.asarray(stored_code(rows, model.jaw_dim), dtype=np.float32)


@torch.no_grad()
def code_meshes(model: FaceModel, shape, code=None) -> np.ndarray:
    """(B, V, 3) float32 meshes in mm of (B, S) shapes with (B, code_dim) codes (``None``: neutral)."""
    shape = torch.as_tensor(np.asarray(shape, dtype=np.float32))
    code = None if code is None else torch.as_tensor(np.asarray(code, dtype=np.float32))
    parts = []
    for start in range(0, len(shape), _CHUNK):
        part = slice(start, start + _CHUNK)
        expression, pose = (None, None) if code is None else model.split_code(code[part])
        parts.append(model(shape[part], expression, pose).vertices.float().cpu().numpy() * 1000)
    return np.concatenate(parts) if parts else np.zeros((0, model.num_vertices, 3), np.float32)


@torch.no_grad()
def neutral_meshes(model: FaceModel, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(..., S) shapes -> neutral vertices (..., V, 3) and NoW landmarks (..., 7, 3) (or None), mm."""
    lead = shapes.shape[:-1]
    out = model(torch.as_tensor(np.asarray(shapes, dtype=np.float32).reshape(-1, shapes.shape[-1])))
    vertices = out.vertices.float().cpu().numpy().reshape(*lead, -1, 3) * 1000
    if out.landmarks7 is None:
        return vertices, None
    return vertices, out.landmarks7.float().cpu().numpy().reshape(*lead, 7, 3) * 1000


def ground_truth(model: FaceModel, data: dict[str, np.ndarray], index) -> tuple[np.ndarray, np.ndarray]:
    """Expressive (B, V, 3) and neutral (B, V, 3) ground-truth meshes (mm) of the rows ``index``."""
    shape = data["shape"][index]
    return code_meshes(model, shape, code_of(data, index, model)), code_meshes(model, shape)
