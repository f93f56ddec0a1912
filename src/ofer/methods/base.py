"""The method protocol (Medusa's ``BaseReconModel``, diffusers' pipelines): one reconstruction API
over every method, and the output types they share.

::

    method = ofer.methods.get("ofer").from_run(run, device="cpu")
    results = method.reconstruct(images, settings, names)     # per image: Reconstruction or InputError
    hyp = method.hypotheses(identity, appearance, settings, keys)   # protocol evaluation, mm

Determinism: every random draw of image ``key`` comes from :func:`image_generator` seeded with
(seed, key, stream), and every image is run through the networks on its own, so a result never
depends on the other images of the call, on their order, or on the batch size.
"""

from __future__ import annotations

import copy
import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional, Sequence

import numpy as np
import torch

from ..config import Config, require, require_choice, require_int
from ..errors import InputError
from ..facemodels import FaceModel
from ..fitting import Placement
from ..frontend import get_frontend
from .image_frame import place_in_image

SAMPLERS = ("ddim", "ddpm")
MAX_TIMESTEPS = 1000  # T of every shipped scheduler; checked again against each checkpoint's own T


@dataclass
class ReconstructionSettings(Config):
    """Sampling settings of a reconstruction (validated at construction).

    Attributes:
        shapes: identity samples N; expressions: expression hypotheses M.
        sampler: ``ddim`` or ``ddpm``; steps: denoising steps (``None``: the method's default).
        seed: base seed; image ``key`` draws from ``image_generator(seed, key, stream)``.
        jaw_scale: factor on a predicted jaw rotation (the authors halve it; 1 = off).
    """

    shapes: int = 100
    expressions: int = 16
    sampler: str = "ddim"
    steps: Optional[int] = None
    seed: int = 0
    jaw_scale: float = 1.0

    def validate(self) -> None:
        require_int(self.shapes, "--shapes", 1, 100_000)
        require_int(self.expressions, "--expressions", 1, 10_000)
        require_choice(self.sampler, "--sampler", SAMPLERS)
        if self.steps is not None:
            require_int(self.steps, "--steps", 1, MAX_TIMESTEPS)
        require_int(self.seed, "--seed", 0, 2**63 - 1)
        require(isinstance(self.jaw_scale, (int, float)) and np.isfinite(self.jaw_scale) and 0 <= self.jaw_scale <= 2,
                f"--jaw-scale must be a number in [0, 2], got {self.jaw_scale!r}")


def image_generator(seed: int, key, stream: str) -> torch.Generator:
    """A CPU generator for one image and one random process, seeded from (seed, key, stream).

    ``key`` names the image within the call (its result name, or its index in a protocol);
    ``stream`` names the process (``"idgen"``, ``"expgen"``, ``"prior"``, ...), so two networks never
    share random numbers and adding one process does not shift another.
    """
    digest = hashlib.sha256(f"{int(seed)}/{key}/{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@dataclass
class Reconstruction:
    """The result for one image (coefficients in the face model's units, vertices in metres).

    Attributes:
        shapes: (N, S) all identity samples; rank_scores: (N,); chosen: index of the ranked one.
        expressions: (M, C) expression codes (``face_model.split_code`` gives expression and pose).
        identity_vertices: (V, 3) neutral mesh of the ranked identity.
        expression_vertices: (M, V, 3) the ranked identity with each expression.
        kpt7: (7, 3) NoW landmarks of the neutral ranked mesh (same frame and units).
        box: (4,) the face's detection box in the image; timings: seconds per stage.
        faces_in_image: how many faces the detector found (the main one, nearest the centre, is
            the one reconstructed).
        appearance_found: whether the appearance encoder found a face in its crop (if not, its
            embedding is zeros and the expressions are unconditioned on appearance).
        placement: head pose and camera of the 1 + M meshes in the photo (index 0: the neutral
            ranked identity, i: hypothesis i - 1; :mod:`ofer.fitting.placement`), or ``None`` (no
            photo, or no landmarks found: ``landmarks_found`` False).
        reprojection_error: (1 + M,) mean landmark distance of each placed mesh, pixels.
        landmarks68_2d: (1 + M, 68, 2) the model's iBUG-68 points of each mesh, projected (pixels).
        image_size: (H, W) of the photo.
        visible_mask: (H, W) bool, the face pixels a method predicts visible (FOCUS's segmentation), or
            ``None`` (methods that do not segment).
    """

    name: str
    method: str
    shapes: np.ndarray
    rank_scores: np.ndarray
    chosen: int
    expressions: np.ndarray
    identity_vertices: np.ndarray
    expression_vertices: np.ndarray
    kpt7: np.ndarray
    box: np.ndarray = field(default_factory=lambda: np.zeros(4))
    identity_embedding: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    appearance_embedding: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    appearance_found: bool = True
    faces_in_image: int = 1
    timings: dict = field(default_factory=dict)
    placement: Optional[Placement] = None
    reprojection_error: Optional[np.ndarray] = None
    landmarks68_2d: Optional[np.ndarray] = None
    image_size: Optional[tuple[int, int]] = None
    landmarks_found: bool = True
    visible_mask: Optional[np.ndarray] = None

    @property
    def shape(self) -> np.ndarray:
        return self.shapes[self.chosen]


@dataclass
class Hypotheses:
    """What a method returns for a batch of B images (mm, model frame), for protocol evaluation."""

    shapes: np.ndarray  # (B, N, S) identity samples
    scores: np.ndarray  # (B, N) ranking scores (higher = better)
    chosen: np.ndarray  # (B,) index of the identity used
    meshes: np.ndarray  # (B, M, V, 3) expressive hypotheses, mm

    @classmethod
    def from_reconstructions(cls, recs: Sequence[Reconstruction]) -> "Hypotheses":
        return cls(
            shapes=np.stack([r.shapes for r in recs]),
            scores=np.stack([r.rank_scores for r in recs]),
            chosen=np.array([r.chosen for r in recs], dtype=np.int64),
            meshes=np.stack([r.expression_vertices for r in recs]) * 1000.0,
        )


def meshes_of(model: FaceModel, shape: torch.Tensor, codes: torch.Tensor, jaw_scale: float = 1.0):
    """Neutral output (1 mesh) and expressive vertices (M, V, 3) of one shape (1, S) with codes (M, C)."""
    neutral = model(shape)
    expression, pose = model.split_code(codes, jaw_scale=jaw_scale)
    expressive = model(shape.expand(len(codes), -1), expression, pose).vertices
    return neutral, expressive


def make_reconstruction(model: FaceModel, method: str, name: str, shapes: torch.Tensor, scores: torch.Tensor,
                        chosen: int, codes: torch.Tensor, jaw_scale: float = 1.0, **extra) -> Reconstruction:
    """Assemble a :class:`Reconstruction` from coefficients (shapes (N, S), codes (M, C)) of one image."""
    neutral, expressive = meshes_of(model, shapes[chosen : chosen + 1], codes, jaw_scale)
    kpt7 = neutral.landmarks7[0] if neutral.landmarks7 is not None else torch.full((7, 3), float("nan"))
    return Reconstruction(
        name=name, method=method, shapes=shapes.cpu().numpy(), rank_scores=scores.cpu().numpy(), chosen=int(chosen),
        expressions=codes.cpu().numpy(), identity_vertices=neutral.vertices[0].cpu().numpy(),
        expression_vertices=expressive.cpu().numpy(), kpt7=kpt7.cpu().numpy(), **extra,
    )


def image_names(images: Sequence, names: Optional[Sequence[str]]) -> list[str]:
    """``names`` (default ``image0``, ``image1``, ...), checked to be unique, one per image."""
    names = list(names or [f"image{i}" for i in range(len(images))])
    if len(names) != len(images) or len(set(names)) != len(names):
        raise ValueError("names must be unique, one per image")
    return names


class Method(ABC):
    """A reconstruction method: load it from a run, then reconstruct images or embeddings.

    Subclasses set ``name`` (the registry key), ``description`` and ``encoders`` (the roles and
    encoder records their condition needs, ``{}`` if none), and implement :meth:`from_run` and
    :meth:`reconstruct_embeddings`. Image handling (detection, crops, embeddings) is shared here.
    """

    name: ClassVar[str] = "method"
    label: ClassVar[str] = "method"  # row name in evaluation tables
    description: ClassVar[str] = ""
    produces_meshes: ClassVar[bool] = True
    needs_run: ClassVar[bool] = True  # False: works without checkpoints (e.g. the random prior)
    needs_images: ClassVar[bool] = False  # True: cannot reconstruct from embeddings (protocol evaluation)

    face_model: FaceModel
    encoders: dict
    run: Optional[Path] = None
    device: torch.device = torch.device("cpu")

    @classmethod
    @abstractmethod
    def from_run(cls, run: Optional[str | Path] = None, face_model: Optional[FaceModel] = None,
                 device: str | torch.device = "cpu") -> "Method":
        """Load the method (``run=None``: the weights shipped for the built-in head, where there are any)."""

    @abstractmethod
    def reconstruct_embeddings(self, identity: np.ndarray, appearance: np.ndarray, settings: ReconstructionSettings,
                               keys: Sequence) -> list[Reconstruction]:
        """Reconstruct B faces from their (B, Di) identity and (B, Da) appearance embeddings.

        ``keys`` (B,) name the images for their random generators (see :func:`image_generator`).
        """

    # -- shared ---------------------------------------------------------------------------------
    def validate(self, settings: ReconstructionSettings) -> None:
        """Refuse (ConfigError) or warn about settings this method cannot run well, before any work."""

    def to(self, device: str | torch.device) -> "Method":
        """Move the method's networks and face model to ``device`` (inputs and outputs stay on the CPU)."""
        self.device = torch.device(device)
        self.face_model.to(self.device)
        self._cpu_face_model = None
        for module in self.modules():
            module.to(self.device)
        return self

    def modules(self) -> list[torch.nn.Module]:
        """The networks to move with :meth:`to` (besides the face model)."""
        return []

    def cpu_face_model(self) -> FaceModel:
        """The face model on the CPU, where the landmark fitter runs: itself, or a copy made once."""
        if self.face_model.device.type == "cpu":
            return self.face_model
        if getattr(self, "_cpu_face_model", None) is None:
            self._cpu_face_model = copy.deepcopy(self.face_model).to("cpu")
        return self._cpu_face_model

    def checkpoint_record(self) -> dict:
        """What ``summary.json`` records about the weights used."""
        return {"run": str(self.run) if self.run else None}

    def frontend(self):
        """The shared front end with the encoders this method was trained with."""
        return get_frontend(self.encoders)

    def reconstruct(self, images: list[np.ndarray], settings: Optional[ReconstructionSettings] = None,
                    names: Optional[list[str]] = None, place: bool = True) -> list[Reconstruction | InputError]:
        """RGB images (H, W, 3) uint8 -> per image a :class:`Reconstruction`, or an InputError if no face.

        Each image is reconstructed on its own, then (``place``) its meshes are placed in it
        (:func:`place_in_image`); ``place=False`` skips that fit (callers that pose the meshes themselves).
        """
        settings = settings or ReconstructionSettings()
        names = image_names(images, names)
        frontend = self.frontend()
        out: list = []
        for image, name in zip(images, names):
            face = frontend.main_faces([image])[0]
            out.append(InputError(f"{name}: no face found") if face is None else
                       self._reconstruct_face(frontend, image, face, name, settings, place))
        return out

    def reconstruct_all_faces(self, image: np.ndarray, settings: Optional[ReconstructionSettings] = None,
                              name: str = "image0", place: bool = True) -> list[Reconstruction]:
        """Every detected face of one image, each reconstructed on its own, named ``{name}_face{k}``
        (k in the detector's order); an empty list when there is no face."""
        settings = settings or ReconstructionSettings()
        frontend = self.frontend()
        detections = frontend.detect([image])[0]
        return [self._reconstruct_face(frontend, image, frontend.face(image, det, k, detections), f"{name}_face{k}",
                                       settings, place) for k, det in enumerate(detections)]

    def _reconstruct_face(self, frontend, image: np.ndarray, face, name: str, settings: ReconstructionSettings,
                          place: bool) -> Reconstruction:
        """One located face: embeddings, the method's networks, then (``place``) the meshes posed in ``image``."""
        started = time.perf_counter()
        emb = frontend.embed([face])
        elapsed = time.perf_counter() - started
        rec = self.reconstruct_embeddings(emb.identity, emb.appearance, settings, [name])[0]
        rec.box = np.asarray(face.detection.box, dtype=np.float64)
        rec.faces_in_image = len(face.detections)
        rec.appearance_found = bool(emb.appearance_found[0])
        rec.timings = {"frontend": elapsed, **rec.timings}
        return place_in_image(self.cpu_face_model(), rec, image, settings.jaw_scale) if place else rec

    def hypotheses(self, identity: np.ndarray, appearance: np.ndarray, settings: ReconstructionSettings,
                   keys: Sequence) -> Hypotheses:
        """Protocol evaluation: the hypotheses (mm) of B faces given their embeddings."""
        return Hypotheses.from_reconstructions(self.reconstruct_embeddings(identity, appearance, settings, keys))

    def picture_hypotheses(self, pictures: np.ndarray, settings: ReconstructionSettings, keys: Sequence) -> Hypotheses:
        """Protocol evaluation of methods that need images: the hypotheses (mm) of B engine pictures
        (B, H, W, 3) uint8, each reconstructed on its own (InputError naming a picture without a face)."""
        results = self.reconstruct(list(pictures), settings, [str(k) for k in keys], place=False)
        for key, result in zip(keys, results):
            if isinstance(result, Exception):
                raise InputError(f"method {self.name!r} found no face in protocol picture {key}")
        return Hypotheses.from_reconstructions(results)
