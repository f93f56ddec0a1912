"""OFER inference: image -> ranked identity + expression hypotheses.

::

    pipe = OFER.from_checkpoints("runs/default")       # RUN/{idgen,idrank,expgen}/last.pt
    rec = pipe.reconstruct(load_image("photo.jpg"))    # Reconstruction
    rec.identity_vertices, rec.expression_vertices, rec.kpt7
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import CheckpointError, FaceModelError, InputError
from ..facemodels import FaceModel, load_face_model
from ..training.checkpoint import load_checkpoint, network_dir
from .generator import CoefficientGenerator, ShapeRanker


@dataclass
class ReconstructionSettings:
    shapes: int = 100
    expressions: int = 16
    sampler: str = "ddim"
    steps: Optional[int] = 50
    seed: int = 0
    jaw_scale: float = 1.0  # the authors halve the predicted jaw at test time; off by default

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Reconstruction:
    """The result for one image (coefficients in the face model's units, vertices in metres).

    Attributes:
        shapes: (N, S) all identity samples; rank_scores: (N,); chosen: index of the ranked one.
        expressions: (M, E + jaw) expression hypotheses.
        identity_vertices: (V, 3) neutral mesh of the ranked identity.
        expression_vertices: (M, V, 3) the ranked identity with each expression.
        kpt7: (7, 3) NoW landmarks of the neutral ranked mesh (same frame and units).
        box: (4,) the face's detection box in the image; timings: seconds per stage.
    """

    name: str
    shapes: np.ndarray
    rank_scores: np.ndarray
    chosen: int
    expressions: np.ndarray
    identity_vertices: np.ndarray
    expression_vertices: np.ndarray
    kpt7: np.ndarray
    box: np.ndarray
    identity_embedding: np.ndarray
    appearance_embedding: np.ndarray
    timings: dict = field(default_factory=dict)

    @property
    def shape(self) -> np.ndarray:
        return self.shapes[self.chosen]


def split_expression(model: FaceModel, code: torch.Tensor, jaw_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """ExpGen output (B, E + jaw) -> (expression (B, E), pose (B, P)) for ``model``."""
    expression = code[:, : model.expression_dim]
    pose = torch.zeros(code.shape[0], model.pose_dim)
    if model.jaw_dim:
        from ..facemodels.flame import JAW_SLICE

        pose[:, JAW_SLICE] = code[:, model.expression_dim : model.expression_dim + model.jaw_dim] * jaw_scale
    return expression, pose


def encoder_record(frontend) -> dict:
    """``{"identity": {name, dim}, "appearance": {name, dim}}`` of a front end (as stored in checkpoints)."""
    return {"identity": {"name": frontend.arcface.name, "dim": frontend.arcface.dim},
            "appearance": {"name": frontend.appearance.name, "dim": frontend.appearance.dim}}


class OFER:
    """IdGen + IdRank + ExpGen on one face model, with the image front end."""

    def __init__(self, face_model: FaceModel, idgen: CoefficientGenerator, idrank: ShapeRanker,
                 expgen: CoefficientGenerator, run: Path, appearance: str):
        self.face_model = face_model.eval()
        self.idgen, self.idrank, self.expgen = idgen, idrank, expgen
        self.run = Path(run)
        self.appearance_name = appearance

    @classmethod
    def from_checkpoints(cls, run: str | Path, face_model: Optional[FaceModel] = None) -> "OFER":
        """Load the three networks of a run folder and the face model they were trained for.

        Raises:
            CheckpointError: missing/corrupt checkpoints, or networks trained for different face models.
        """
        run = Path(run)
        if not run.is_dir():
            raise CheckpointError(f"{run}: checkpoint folder not found")
        config, _ = load_checkpoint(network_dir(run, "idgen"), "idgen")
        if face_model is None:
            spec = config.face_model["spec"]
            try:
                face_model = load_face_model(spec)
            except FaceModelError as exc:
                raise CheckpointError(f"{run}: trained for face model {spec!r}, which cannot be loaded here ({exc})") from None
        info = face_model.info().to_dict()
        idgen = CoefficientGenerator.from_checkpoint(network_dir(run, "idgen"), "idgen", info)
        expgen = CoefficientGenerator.from_checkpoint(network_dir(run, "expgen"), "expgen", info, idgen.config.encoders)
        idrank = ShapeRanker.from_checkpoint(network_dir(run, "idrank"), info, expgen.config.encoders)
        appearance = expgen.config.encoders["appearance"]["name"]
        return cls(face_model, idgen, idrank, expgen, run, appearance)

    def frontend(self):
        """The shared front end with the encoders the checkpoints were trained with."""
        from ..frontend import get_frontend
        from ..training.checkpoint import check_encoders

        frontend = get_frontend(self.appearance_name)
        check_encoders(self.expgen.config, encoder_record(frontend), self.run)
        return frontend

    @torch.no_grad()
    def reconstruct_embeddings(self, identity: np.ndarray, appearance: np.ndarray, settings: ReconstructionSettings,
                               names: list[str], boxes: Optional[list[np.ndarray]] = None) -> list[Reconstruction]:
        """Run the three networks on (B, 512) identity and (B, D) appearance embeddings."""
        model = self.face_model
        generator = torch.Generator().manual_seed(settings.seed)
        ident = torch.from_numpy(np.asarray(identity, np.float32))
        cond = torch.cat([ident, torch.from_numpy(np.asarray(appearance, np.float32))], dim=1)
        timings = {}
        t0 = time.perf_counter()
        shapes = self.idgen.sample(ident, settings.shapes, settings.sampler, settings.steps, generator)  # (B,N,S)
        shapes = model.clamp_coefficients(shapes, torch.zeros(0))[0]
        timings["idgen"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores, best = self.idrank.rank(model, shapes, cond)
        timings["idrank"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        codes = self.expgen.sample(cond, settings.expressions, settings.sampler, settings.steps, generator)  # (B,M,E)
        codes[..., : model.expression_dim] = model.clamp_coefficients(shapes[:, 0], codes[..., : model.expression_dim])[1]
        timings["expgen"] = time.perf_counter() - t0
        results = []
        for b, name in enumerate(names):
            chosen = int(best[b])
            shape = shapes[b, chosen : chosen + 1]
            neutral = model(shape)
            expression, pose = split_expression(model, codes[b], settings.jaw_scale)
            expressive = model(shape.expand(len(expression), -1), expression, pose).vertices
            results.append(
                Reconstruction(
                    name=name,
                    shapes=shapes[b].numpy(),
                    rank_scores=scores[b].numpy(),
                    chosen=chosen,
                    expressions=codes[b].numpy(),
                    identity_vertices=neutral.vertices[0].numpy(),
                    expression_vertices=expressive.numpy(),
                    kpt7=neutral.landmarks7[0].numpy() if neutral.landmarks7 is not None else np.full((7, 3), np.nan),
                    box=np.asarray(boxes[b]) if boxes is not None else np.zeros(4),
                    identity_embedding=identity[b],
                    appearance_embedding=appearance[b],
                    timings={k: v / len(names) for k, v in timings.items()},
                )
            )
        return results

    def reconstruct(self, image: np.ndarray, settings: Optional[ReconstructionSettings] = None, name: str = "image") -> Reconstruction:
        """One RGB image (H, W, 3) uint8 -> :class:`Reconstruction` (raises InputError if no face)."""
        results = self.reconstruct_batch([image], settings, [name])
        if isinstance(results[0], Exception):
            raise results[0]
        return results[0]

    def reconstruct_batch(self, images: list[np.ndarray], settings: Optional[ReconstructionSettings] = None,
                          names: Optional[list[str]] = None) -> list[Reconstruction | InputError]:
        """Several images in one batch; an image without a face gives an :class:`InputError` in its slot."""
        settings = settings or ReconstructionSettings()
        names = names or [f"image{i}" for i in range(len(images))]
        frontend = self.frontend()
        t0 = time.perf_counter()
        faces = frontend.main_faces(images)
        found = [i for i, f in enumerate(faces) if f is not None]
        identity, appearance = frontend.embed([faces[i] for i in found])
        frontend_time = (time.perf_counter() - t0) / max(1, len(images))
        out: list = [InputError(f"{names[i]}: no face found") for i in range(len(images))]
        if found:
            recs = self.reconstruct_embeddings(identity, appearance, settings, [names[i] for i in found],
                                               [faces[i].detection.box for i in found])
            for i, rec in zip(found, recs):
                rec.timings["frontend"] = frontend_time
                out[i] = rec
        return out
