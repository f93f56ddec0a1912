"""The default appearance encoder: MediaPipe Face Landmarker blendshapes, pose-normalised landmarks, head pose."""

from __future__ import annotations

import zipfile
from functools import cache

import numpy as np

from ...errors import OferError
from ...geometry import apply_similarity, umeyama
from .._onnx import _fields, _read_varint
from ..landmark_tables import MEDIAPIPE_TO_IBUG68
from ..landmarker import BLENDSHAPE_NAMES, FaceLandmarks, default_landmarker, face_landmarker_path
from .base import AppearanceEncoder
from .registry import register_encoder


@cache
def canonical_face() -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's canonical face (468, 3) cm (x right in the image, y up, z towards the camera) and
    the indices of its rigid "Procrustes basis" landmarks, read from ``face_landmarker.task``."""
    with zipfile.ZipFile(face_landmarker_path()) as archive:
        buf = archive.read("geometry_pipeline_metadata_landmarks.binarypb")
    vertices: list[float] = []
    basis: list[int] = []
    for number, _, _, payload in _fields(buf, 0, len(buf)):
        if number == 1:  # canonical_mesh (Mesh3d): vertex_buffer = repeated float field 3, x y z u v per vertex
            for sub, _, _, (start, end) in _fields(buf, *payload):
                if sub == 3:
                    vertices.append(float(np.frombuffer(buf[start:end], dtype="<f4")[0]))
        elif number == 2:  # procrustes_landmark_basis (WeightedLandmarkRef): landmark_id = varint field 1
            for sub, begin, _, _ in _fields(buf, *payload):
                if sub == 1:
                    basis.append(_read_varint(buf, _read_varint(buf, begin)[1])[0])
    canonical = np.asarray(vertices, dtype=np.float64).reshape(-1, 5)[:, :3]
    if canonical.shape != (468, 3) or not basis:
        raise OferError("unexpected face_landmarker.task: no 468-point canonical face in its geometry metadata")
    return canonical, np.asarray(basis, dtype=np.int64)


@register_encoder
class MediaPipeExpressionEncoder(AppearanceEncoder):
    """Expression descriptor from the MediaPipe Face Landmarker, 260 numbers per crop:

    - ``[0:52]``   the 52 blendshape scores in [0, 1] (:data:`ofer.frontend.landmarker.BLENDSHAPE_NAMES`);
    - ``[52:256]`` the 68 iBUG points (taken from the 478) in MediaPipe's canonical face frame, minus
      their canonical positions, in cm (x, y, z per point). The frame is a similarity fit (rotation,
      scale, translation) of the image points (x, -y, -z) onto the canonical face on its 32 rigid
      landmarks, so head pose, face size and position are removed while expression is kept;
    - ``[256:259]`` head rotation, the axis-angle vector (radians) of that fit's rotation;
    - ``[259]``     1 when a face was found.

    When MediaPipe finds no face in a crop the whole vector is zeros (flag 0 included) and
    :meth:`embed_found` says False.
    """

    name = "mediapipe-blendshapes-landmarks"
    aliases = ("mediapipe",)
    dim = 260

    def describe(self, found: FaceLandmarks | None) -> np.ndarray:
        """The 260-d vector of one :class:`~ofer.frontend.landmarker.FaceLandmarks` (zeros for ``None``)."""
        from scipy.spatial.transform import Rotation

        out = np.zeros(self.dim, dtype=np.float32)
        if found is None:
            return out
        canonical, basis = canonical_face()
        points = found.points[: len(canonical)] * np.array([1.0, -1.0, -1.0])
        scale, rotation, translation = umeyama(points[basis], canonical[basis])
        aligned = apply_similarity(points, scale, rotation, translation)
        ibug = list(MEDIAPIPE_TO_IBUG68)
        out[: len(BLENDSHAPE_NAMES)] = found.blendshapes
        out[52:256] = (aligned[ibug] - canonical[ibug]).ravel()
        out[256:259] = Rotation.from_matrix(rotation.T).as_rotvec()  # canonical -> image frame
        out[259] = 1.0
        return out

    def embed_found(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 260) float32 and found (N,) bool: MediaPipe runs on each crop alone (image mode, no batch)."""
        crops = self.check_crops(crops)
        landmarker = default_landmarker()
        out = np.zeros((len(crops), self.dim), dtype=np.float32)
        found = np.zeros(len(crops), dtype=bool)
        for i, crop in enumerate(crops):
            face = landmarker.detect(crop)
            found[i] = face is not None
            out[i] = self.describe(face)
        return out, found

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.embed_found(crops)[0]
