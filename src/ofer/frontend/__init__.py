"""The image front end: photo -> faces -> crops -> identity (ArcFace) and appearance embeddings.

::

    from ofer.frontend import get_frontend, load_image
    fe = get_frontend(checkpoint_encoders)    # shared; None: the default encoders; networks load on first use
    images = [load_image(p) for p in paths]   # (H, W, 3) uint8 RGB
    faces = fe.main_faces(images)             # per image: MainFace (detection + both crops) or None
    emb = fe.embed([f for f in faces if f])   # Embeddings: identity (N, 512), appearance (N, D), appearance_found (N,)
    fe.encoders                               # {"identity": {"name", "dim"}, "appearance": {"name", "dim"}}

Parts (each usable alone): :func:`load_image`; :class:`FaceDetector` (SCRFD, 5 keypoints) and
:func:`main_face`; :func:`align_arcface` / :func:`crop_appearance`; the encoders and their registry
(:mod:`ofer.frontend.encoders`: :func:`get_encoder`, :func:`available_encoders`); :class:`MediaPipeLandmarker`;
the landmark index tables (:mod:`ofer.frontend.landmark_tables`).
"""

from __future__ import annotations

from .align import ARCFACE_TEMPLATE, align_arcface, arcface_matrix, crop_appearance
from .detect import Detection, FaceDetector, default_detector, main_face
from .encoders import (
    DEFAULT_ENCODERS,
    Encoder,
    EncoderError,
    available_encoders,
    default_encoder,
    get_encoder,
    register_encoder,
)
from .frontend import Embeddings, FrontEnd, MainFace, get_frontend, resolve_encoders
from .image import load_image
from .landmark_tables import MEDIAPIPE_TO_IBUG68, ibug68_from_mediapipe, keypoints5_from_ibug68
from .landmarker import BLENDSHAPE_NAMES, FaceLandmarks, MediaPipeLandmarker, default_landmarker

__all__ = [
    "ARCFACE_TEMPLATE",
    "BLENDSHAPE_NAMES",
    "DEFAULT_ENCODERS",
    "MEDIAPIPE_TO_IBUG68",
    "Detection",
    "Embeddings",
    "Encoder",
    "EncoderError",
    "FaceDetector",
    "FaceLandmarks",
    "FrontEnd",
    "MainFace",
    "MediaPipeLandmarker",
    "align_arcface",
    "arcface_matrix",
    "available_encoders",
    "crop_appearance",
    "default_detector",
    "default_encoder",
    "default_landmarker",
    "get_encoder",
    "get_frontend",
    "ibug68_from_mediapipe",
    "keypoints5_from_ibug68",
    "load_image",
    "main_face",
    "register_encoder",
    "resolve_encoders",
]
