"""What the fitter sees: 2D landmarks of B images, optional relative depth, and per-point weights.

Two landmark schemes:

- ``mediapipe478``: MediaPipe's 478 points (x, y pixels and its relative depth z, in the same pixel
  scale, smaller = closer), for face models with a 478-point embedding (the built-in head has one);
- ``ibug68``: the 68 iBUG points (taken from MediaPipe's 478 with the front end's one table, or
  given), for every face model with a 68-point embedding (FLAME, npz).

Weights (B, L) >= 0 say how much each point counts: 0 drops it (an occluded point), 1 is a normal
point. :meth:`LandmarkObservations.drop_masked` zeroes the points that fall on an occluder mask.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
import torch

from ..facemodels import FaceModel
from ..frontend import FaceLandmarks, MEDIAPIPE_TO_IBUG68, default_landmarker

SCHEMES = ("mediapipe478", "ibug68")
# Side of the square crop around a detection box, in box sizes, and its resolution, for MediaPipe.
BOX_CONTEXT = 1.8
BOX_RESOLUTION = 384


@dataclass
class LandmarkObservations:
    """Landmarks of B images (float32 tensors on the CPU).

    Attributes:
        points: (B, L, 2) pixels (x right, y down).
        weights: (B, L) >= 0.
        depth: (B, L) relative depth in pixels (smaller = closer), or ``None``.
        scheme: ``mediapipe478`` or ``ibug68``.
        image_size: (H, W).
        rotation: (B, 3, 3) the detector's own head rotation (MediaPipe's canonical face to the
            OpenCV camera axes), or ``None``; a calibration maps it to the model frame.
    """

    points: torch.Tensor
    weights: torch.Tensor
    depth: Optional[torch.Tensor]
    scheme: str
    image_size: tuple[int, int]
    rotation: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        expected = 478 if self.scheme == "mediapipe478" else 68
        if self.points.ndim != 3 or self.points.shape[1:] != (expected, 2):
            raise ValueError(f"{self.scheme} points must be (B, {expected}, 2), got {tuple(self.points.shape)}")
        if self.weights.shape != self.points.shape[:2]:
            raise ValueError(f"weights must be {tuple(self.points.shape[:2])}, got {tuple(self.weights.shape)}")
        if self.depth is not None and self.depth.shape != self.points.shape[:2]:
            raise ValueError(f"depth must be {tuple(self.points.shape[:2])}, got {tuple(self.depth.shape)}")

    def __len__(self) -> int:
        return self.points.shape[0]

    @classmethod
    def from_mediapipe(cls, faces: Sequence[FaceLandmarks], image_size, scheme: str = "mediapipe478"
                       ) -> "LandmarkObservations":
        """Observations from MediaPipe results (one per image, all found), in ``scheme``."""
        points = np.stack([face.points for face in faces]).astype(np.float32)  # (B, 478, 3)
        if scheme == "ibug68":
            points = points[:, list(MEDIAPIPE_TO_IBUG68)]
        tensor = torch.from_numpy(points)
        rotation = torch.from_numpy(np.stack([mediapipe_rotation(face.matrix) for face in faces])).float()
        return cls(points=tensor[..., :2].contiguous(), weights=torch.ones(tensor.shape[:2]),
                   depth=tensor[..., 2].contiguous(), scheme=scheme, image_size=tuple(image_size), rotation=rotation)

    @classmethod
    def from_points(cls, points, image_size, weights=None, depth=None, rotation=None) -> "LandmarkObservations":
        """Observations from (B, L, 2) pixel points (L = 478 or 68 picks the scheme), optional (B, L)
        weights and depth and the detector's (B, 3, 3) head rotation."""
        points = torch.as_tensor(np.asarray(points, dtype=np.float32))
        scheme = "mediapipe478" if points.shape[1] == 478 else "ibug68"
        def as_float(value):
            return None if value is None else torch.as_tensor(np.asarray(value), dtype=torch.float32)

        weights = torch.ones(points.shape[:2]) if weights is None else as_float(weights)
        return cls(points=points, weights=weights, depth=as_float(depth), scheme=scheme, image_size=tuple(image_size),
                   rotation=as_float(rotation))

    def to_scheme(self, scheme: str) -> "LandmarkObservations":
        """The same observations in another scheme (478 -> 68 only)."""
        if scheme == self.scheme:
            return self
        if scheme != "ibug68":
            raise ValueError(f"cannot turn {self.scheme} observations into {scheme}")
        index = list(MEDIAPIPE_TO_IBUG68)
        depth = None if self.depth is None else self.depth[:, index]
        return LandmarkObservations(self.points[:, index], self.weights[:, index], depth, scheme, self.image_size,
                                    self.rotation)

    def select(self, index) -> "LandmarkObservations":
        """The observations of images ``index`` (a slice or an index array)."""
        pick = lambda value: None if value is None else value[index]  # noqa: E731
        return replace(self, points=self.points[index], weights=self.weights[index], depth=pick(self.depth),
                       rotation=pick(self.rotation))

    def repeat(self, counts: Sequence[int]) -> "LandmarkObservations":
        """Image ``b`` repeated ``counts[b]`` times (to fit several meshes to one image)."""
        index = torch.repeat_interleave(torch.arange(len(self)), torch.as_tensor(list(counts)))
        depth = None if self.depth is None else self.depth[index]
        rotation = None if self.rotation is None else self.rotation[index]
        return replace(self, points=self.points[index], weights=self.weights[index], depth=depth, rotation=rotation)

    def with_weights(self, weights: torch.Tensor) -> "LandmarkObservations":
        return replace(self, weights=torch.as_tensor(weights, dtype=torch.float32).reshape(self.weights.shape))

    def drop_masked(self, masks) -> "LandmarkObservations":
        """Zero the weight of every point that falls on a True pixel of ``masks`` (B, H, W) (or outside)."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim == 2:
            masks = masks[None]
        height, width = masks.shape[1:]
        pixel = np.floor(self.points.numpy()).astype(np.int64)
        inside = (pixel[..., 0] >= 0) & (pixel[..., 0] < width) & (pixel[..., 1] >= 0) & (pixel[..., 1] < height)
        x, y = np.clip(pixel[..., 0], 0, width - 1), np.clip(pixel[..., 1], 0, height - 1)
        hidden = masks[np.arange(len(self))[:, None], y, x] | ~inside
        return self.with_weights(self.weights * torch.from_numpy(~hidden).float())


def mediapipe_rotation(matrix: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of MediaPipe's 4x4 facial transformation matrix in OpenCV camera axes.

    MediaPipe's camera looks down -z with y up; OpenCV's looks down +z with y down.
    """
    return np.diag([1.0, -1.0, -1.0]) @ np.asarray(matrix, dtype=np.float64)[:3, :3]


def scheme_for(model: FaceModel) -> str:
    """The richest scheme ``model`` has an embedding for (``mediapipe478`` or ``ibug68``)."""
    if hasattr(model, "mp_faces_idx") and getattr(model, "mp_faces_idx").numel() == 478:
        return "mediapipe478"
    if model.has_landmarks:
        return "ibug68"
    raise ValueError(f"face model {model.spec} has no landmark embedding: it cannot be fitted to landmarks")


def scheme_embedding(model: FaceModel, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(faces_idx (L,), bary (L, 3))``: where the points of ``scheme`` lie on ``model``'s surface."""
    if scheme == "mediapipe478":
        return model.mp_faces_idx.long(), model.mp_bary
    return model.lmk_faces_idx, model.lmk_bary


def model_points(model: FaceModel, vertices: torch.Tensor, scheme: str) -> torch.Tensor:
    """(B, V, 3) vertices of ``model`` -> (B, L, 3) surface points of ``scheme``."""
    from ..facemodels.base import vertices_to_landmarks

    return vertices_to_landmarks(vertices, model.faces, *scheme_embedding(model, scheme))


def observe(image: np.ndarray, box=None, landmarker=None) -> Optional[FaceLandmarks]:
    """MediaPipe's landmarks of the face in ``box`` (x0, y0, x1, y1) of an RGB uint8 image, in image pixels.

    MediaPipe runs on a square crop of :data:`BOX_CONTEXT` box sizes around the box, resized to
    :data:`BOX_RESOLUTION` (so a small face in a large photo, or the second face of a group, is
    found), and its points are mapped back. ``box=None``: the whole image. ``None`` if no face.
    """
    landmarker = landmarker or default_landmarker()
    if box is None:
        return landmarker.detect(image)
    from ..frontend.align import appearance_window, crop_square

    x0, y0, side = appearance_window(box, BOX_CONTEXT)
    crop = crop_square(image, x0, y0, side, BOX_RESOLUTION)
    face = landmarker.detect(crop)
    if face is None:
        return None
    points = face.points.copy()
    scale = side / BOX_RESOLUTION  # continuous pixel coordinates: image = crop * side / size + origin
    points *= scale
    points[:, :2] += (x0, y0)
    return FaceLandmarks(points=points, blendshapes=face.blendshapes, matrix=face.matrix)
