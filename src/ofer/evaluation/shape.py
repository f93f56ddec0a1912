"""``ofer eval shape``: the NoW-style error of each method's chosen identity against the protocol's neutral faces."""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..facemodels import FaceModel
from ..methods.base import Method, ReconstructionSettings
from .groundtruth import neutral_meshes
from .now import now_error
from .protocol import CHUNK, Protocol

__all__ = ["shape_distances"]


def shape_distances(method: Method, protocol: Protocol, settings: ReconstructionSettings, model: FaceModel,
                    limit: int | None = None, metrical: bool = False,
                    progress: bool = True) -> tuple[list[np.ndarray], np.ndarray]:
    """Per image the scan-to-mesh distances (mm) of the neutral chosen identity vs the neutral ground truth.

    Both meshes are the face model's (the ground truth plays the scan, its 7 landmarks the scan's);
    ``model`` is the face model on the CPU. Returns the distance arrays and the (count, N) ranking
    scores (to tell whether the method ranks).
    """
    if not model.has_landmarks:
        raise InputError(f"face model {model.spec!r} has no landmark embedding: the NoW-style error needs 7 landmarks")
    faces = model.faces.cpu().numpy()
    data, count = protocol.data, protocol.count(limit)
    distances, scores = [], []
    for start in tqdm(range(0, count, CHUNK), desc=f"eval shape {method.label}", disable=not progress, file=sys.stderr):
        index = np.arange(start, min(start + CHUNK, count))
        h = method.hypotheses(data["arcface"][index], data["appearance"][index], settings, [int(i) for i in index])
        pred, pred_lmk = neutral_meshes(model, h.shapes[np.arange(len(index)), h.chosen])
        gt, gt_lmk = neutral_meshes(model, data["shape"][index])
        for k in range(len(index)):
            result = now_error(pred[k], faces, pred_lmk[k], gt[k], gt_lmk[k], faces, metrical=metrical)
            distances.append(result.distances)
        scores.append(np.asarray(h.scores, np.float64))
    return distances, np.concatenate(scores)
