"""The front end as one object: detector + identity encoder + appearance encoder, chosen by an encoder record."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .detect import Detection, FaceDetector, default_detector, main_face
from .encoders import ROLES, Encoder, EncoderError, default_encoder, get_encoder


@dataclass
class MainFace:
    """One face of an image and the crops of both encoders."""

    detection: Detection
    index: int  # position of the face in ``detections``
    detections: list[Detection] = field(repr=False)
    identity_crop: np.ndarray = field(repr=False)  # (Si, Si, 3) uint8 RGB, e.g. the aligned 112x112 ArcFace crop
    appearance_crop: np.ndarray = field(repr=False)  # (Sa, Sa, 3) uint8 RGB, e.g. the 224x224 square


@dataclass
class Embeddings:
    """The embeddings of N faces.

    Attributes:
        identity: (N, Di) float32.
        appearance: (N, Da) float32 (zeros where ``appearance_found`` is False, for MediaPipe).
        appearance_found: (N,) bool, False where the appearance encoder found no face in its crop.
    """

    identity: np.ndarray
    appearance: np.ndarray
    appearance_found: np.ndarray

    def __len__(self) -> int:
        return len(self.identity)


class FrontEnd:
    """Detector + identity encoder + appearance encoder (shared ones: see :func:`get_frontend`)."""

    def __init__(self, identity: Encoder, appearance: Encoder, detector: FaceDetector | None = None):
        self.identity = identity
        self.appearance = appearance
        self.detector = detector or default_detector()

    @property
    def encoders(self) -> dict:
        """``{"identity": {"name", "dim"}, "appearance": {"name", "dim"}}``, as checkpoints store it."""
        return {"identity": self.identity.record(), "appearance": self.appearance.record()}

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """The faces of each (H, W, 3) uint8 RGB image, by decreasing score."""
        return self.detector.detect_batch(images)

    def face(
        self, image: np.ndarray, detection: Detection, index: int = 0, detections: list[Detection] | None = None
    ) -> MainFace:
        """The crops of one detected (or otherwise located) face of an image."""
        return MainFace(
            detection=detection,
            index=index,
            detections=[detection] if detections is None else detections,
            identity_crop=self.identity.crop(image, detection),
            appearance_crop=self.appearance.crop(image, detection),
        )

    def main_faces(self, images: list[np.ndarray]) -> list[MainFace | None]:
        """The main face (closest to the image centre) of each image with its crops; ``None`` if no face."""
        out: list[MainFace | None] = []
        for image, detections in zip(images, self.detect(images)):
            index = main_face(detections, image.shape)
            out.append(None if index is None else self.face(image, detections[index], index, detections))
        return out

    def embed(self, faces: list[MainFace]) -> Embeddings:
        """Both embeddings of each face (``None`` entries are not allowed).

        The encoders run one crop at a time, so a face's embeddings do not depend on the other faces.
        """
        if any(face is None for face in faces):
            raise ValueError("embed: faces must not contain None (drop the images without a face first)")
        identity = np.zeros((len(faces), self.identity.dim), np.float32)
        appearance = np.zeros((len(faces), self.appearance.dim), np.float32)
        found = np.zeros(len(faces), dtype=bool)
        for i, face in enumerate(faces):
            identity[i] = self.identity.embed(face.identity_crop[None])[0]
            emb, ok = self.appearance.embed_found(face.appearance_crop[None])
            appearance[i], found[i] = emb[0], ok[0]
        return Embeddings(identity=identity, appearance=appearance, appearance_found=found)


def resolve_encoders(encoders: Mapping | None = None) -> dict[str, Encoder]:
    """The shared encoder of each role named by a record ``{role: {"name", "dim"}}``.

    ``None`` or a missing role gives the default encoder of that role. An unknown role or name, an
    encoder of the other role, or a ``dim`` other than the encoder's raise :class:`EncoderError`.
    """
    encoders = {} if encoders is None else encoders
    if not isinstance(encoders, Mapping):
        raise EncoderError(f"encoder record must be a dict {{role: {{name, dim}}}}, not {type(encoders).__name__}")
    unknown = sorted(set(encoders) - set(ROLES))
    if unknown:
        raise EncoderError(f"encoder record: unknown role {unknown[0]!r} (roles: {', '.join(ROLES)})")
    out = {}
    for role in ROLES:
        record = encoders.get(role)
        if record is None:
            out[role] = default_encoder(role)
            continue
        if not isinstance(record, Mapping) or not isinstance(record.get("name"), str):
            raise EncoderError(f"encoder record: {role} must be {{'name': str, 'dim': int}}, not {record!r}")
        encoder = get_encoder(record["name"])
        if encoder.role != role:
            raise EncoderError(f"encoder {encoder.name!r} is an {encoder.role} encoder, not an {role} one")
        dim = record.get("dim")
        if dim is not None and dim != encoder.dim:
            raise EncoderError(f"{role} encoder {encoder.name!r} gives {encoder.dim} numbers, the record says {dim}")
        out[role] = encoder
    return out


_FRONTENDS: dict[tuple[str, str], FrontEnd] = {}
_LOCK = threading.Lock()


def get_frontend(encoders: Mapping | None = None) -> FrontEnd:
    """The shared :class:`FrontEnd` with the encoders of a record (see :func:`resolve_encoders`).

    ``encoders`` is what checkpoints store: ``{"identity": {"name", "dim"}, "appearance": {"name", "dim"}}``.
    """
    chosen = resolve_encoders(encoders)
    key = (chosen["identity"].name, chosen["appearance"].name)
    with _LOCK:
        if key not in _FRONTENDS:
            _FRONTENDS[key] = FrontEnd(chosen["identity"], chosen["appearance"])
        return _FRONTENDS[key]
