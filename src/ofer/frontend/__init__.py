"""The image front end: photo -> faces -> aligned crops -> identity (ArcFace) and appearance embeddings.

::

    from ofer.frontend import get_frontend, load_image
    fe = get_frontend()                       # shared; every network is loaded once, on first use
    images = [load_image(p) for p in paths]   # (H, W, 3) uint8 RGB
    faces = fe.main_faces(images)             # per image: MainFace (detection + both crops) or None
    identity, appearance = fe.embed(faces)    # (N, 512) unit vectors, (N, D)

Parts (each usable alone): :func:`load_image`; :class:`FaceDetector` (SCRFD, 5 keypoints) and
:func:`main_face`; :func:`align_arcface` / :func:`crop_appearance`; :class:`ArcFaceEncoder`;
the appearance encoders (:func:`get_appearance_encoder`); :class:`MediaPipeLandmarker`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from .align import ARCFACE_TEMPLATE, align_arcface, arcface_matrix, crop_appearance, similarity_transform
from .appearance import (
    APPEARANCE_ENCODERS,
    DEFAULT_APPEARANCE,
    AppearanceEncoder,
    DinoV2Encoder,
    EfficientNetLite0Encoder,
    MediaPipeExpressionEncoder,
    get_appearance_encoder,
)
from .arcface import ArcFaceEncoder, default_arcface
from .detect import Detection, FaceDetector, default_detector, main_face
from .image import load_image
from .landmarker import BLENDSHAPE_NAMES, FaceLandmarks, MediaPipeLandmarker, default_landmarker


@dataclass
class MainFace:
    """The main face of one image and its two crops."""

    detection: Detection
    index: int  # position of the main face in ``detections``
    detections: list[Detection] = field(repr=False)
    arcface_crop: np.ndarray = field(repr=False)  # (112, 112, 3) uint8 RGB, aligned
    appearance_crop: np.ndarray = field(repr=False)  # (224, 224, 3) uint8 RGB


class FrontEnd:
    """Detector + ArcFace + appearance encoder, shared (see :func:`get_frontend`)."""

    def __init__(self, appearance: str = DEFAULT_APPEARANCE):
        self.detector = default_detector()
        self.arcface = default_arcface()
        self.appearance = get_appearance_encoder(appearance)

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return self.detector.detect_batch(images)

    def main_faces(self, images: list[np.ndarray]) -> list[MainFace | None]:
        """The main face (closest to the image centre) of each image with its crops; ``None`` if no face."""
        out: list[MainFace | None] = []
        for image, detections in zip(images, self.detect(images)):
            index = main_face(detections, image.shape)
            if index is None:
                out.append(None)
                continue
            det = detections[index]
            out.append(
                MainFace(
                    detection=det,
                    index=index,
                    detections=detections,
                    arcface_crop=align_arcface(image, det.keypoints),
                    appearance_crop=crop_appearance(image, det.box),
                )
            )
        return out

    def embed(self, faces: list[MainFace]) -> tuple[np.ndarray, np.ndarray]:
        """ArcFace (N, 512) and appearance (N, D) embeddings of faces (``None`` entries are not allowed)."""
        if not faces:
            return np.zeros((0, self.arcface.dim), np.float32), np.zeros((0, self.appearance.dim), np.float32)
        identity = self.arcface.embed(np.stack([f.arcface_crop for f in faces]))
        appearance = self.appearance.embed(np.stack([f.appearance_crop for f in faces]))
        return identity, appearance


_FRONTENDS: dict[str, FrontEnd] = {}
_LOCK = threading.Lock()


def get_frontend(appearance: str = DEFAULT_APPEARANCE) -> FrontEnd:
    """The shared :class:`FrontEnd` for this appearance encoder (created on first call)."""
    with _LOCK:
        if appearance not in _FRONTENDS:
            _FRONTENDS[appearance] = FrontEnd(appearance)
        return _FRONTENDS[appearance]


__all__ = [
    "APPEARANCE_ENCODERS",
    "ARCFACE_TEMPLATE",
    "BLENDSHAPE_NAMES",
    "DEFAULT_APPEARANCE",
    "AppearanceEncoder",
    "ArcFaceEncoder",
    "Detection",
    "DinoV2Encoder",
    "EfficientNetLite0Encoder",
    "FaceDetector",
    "FaceLandmarks",
    "FrontEnd",
    "MainFace",
    "MediaPipeExpressionEncoder",
    "MediaPipeLandmarker",
    "align_arcface",
    "arcface_matrix",
    "crop_appearance",
    "default_arcface",
    "default_detector",
    "default_landmarker",
    "get_appearance_encoder",
    "get_frontend",
    "load_image",
    "main_face",
    "similarity_transform",
]
