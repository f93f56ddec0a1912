"""The interface every encoder implements: crop a detected face, embed crops.

An encoder is identified by its ``name`` and ``dim``; checkpoints store both (see
:meth:`Encoder.record`), so a changed encoder gets a new name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ...errors import OferError
from ..align import APPEARANCE_SIZE, align_arcface, crop_appearance

ROLES = ("identity", "appearance")


class EncoderError(OferError):
    """An unknown encoder, or an encoder record that does not match the encoder (one line)."""


class Encoder(ABC):
    """A frozen network from a face crop to a fixed-size vector.

    Class attributes: ``name`` (stored in checkpoints), ``role`` (one of :data:`ROLES`), ``dim``
    (embedding length), ``input_size`` (crops are (input_size, input_size, 3) uint8 RGB) and
    ``aliases`` (short names accepted by :func:`~ofer.frontend.encoders.get_encoder`).
    Instances are cheap: networks are loaded on first use and shared.
    """

    name: ClassVar[str]
    role: ClassVar[str]
    dim: ClassVar[int]
    input_size: ClassVar[int]
    aliases: ClassVar[tuple[str, ...]] = ()

    def record(self) -> dict:
        """``{"name", "dim"}`` as stored in checkpoints."""
        return {"name": self.name, "dim": self.dim}

    @abstractmethod
    def crop(self, image: np.ndarray, detection) -> np.ndarray:
        """The crop (input_size, input_size, 3) uint8 of one detected face of an (H, W, 3) uint8 RGB image.

        ``detection`` has ``box`` (4,) x1, y1, x2, y2 and ``keypoints`` (5, 2) pixels
        (:class:`ofer.frontend.detect.Detection`).
        """

    @abstractmethod
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, input_size, input_size, 3) uint8 RGB crops (or one crop) -> (N, dim) float32.

        May batch internally; :meth:`ofer.frontend.FrontEnd.embed` calls it one crop at a time.
        """

    def embed_found(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (N, dim) float32, found (N,) bool): ``found`` is False where no face was seen.

        Only encoders that look for a face themselves (MediaPipe) can say False; the default is all True.
        """
        embeddings = self.embed(crops)
        return embeddings, np.ones(len(embeddings), dtype=bool)

    def check_crops(self, crops: np.ndarray) -> np.ndarray:
        """Crops as an (N, S, S, 3) uint8 array (one (S, S, 3) crop gets N = 1); ValueError otherwise."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        size = self.input_size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
            wanted = f"(N, {size}, {size}, 3) uint8 RGB crops"
            raise ValueError(f"{self.name}: expected {wanted}, got {crops.shape} {crops.dtype}")
        return crops

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, role={self.role!r}, dim={self.dim})"


class IdentityEncoder(Encoder):
    """An identity encoder on crops aligned by the 5 detector keypoints (ArcFace's 5-point template)."""

    role = "identity"
    input_size = 112

    def crop(self, image: np.ndarray, detection) -> np.ndarray:
        return align_arcface(image, detection.keypoints, size=self.input_size)


class AppearanceEncoder(Encoder):
    """An appearance/expression encoder on the square crop: side 1.6 x mean(box w, h), resized to 224."""

    role = "appearance"
    input_size = APPEARANCE_SIZE

    def crop(self, image: np.ndarray, detection) -> np.ndarray:
        return crop_appearance(image, detection.box, size=self.input_size)
