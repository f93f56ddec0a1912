"""The random prior (the paper's "FLAME" row): N shapes and M expressions drawn from the face
model's prior, ignoring the image; the first shape is taken (a random pick)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..devices import resolve_device
from ..facemodels import FaceModel
from .base import Method, Reconstruction, ReconstructionSettings, image_generator, make_reconstruction
from .loading import face_model_of_any
from .registry import register


@register
class RandomPrior(Method):
    name = "prior"
    label = "random prior"
    description = "random shapes and expressions from the face model's prior (no image information)"
    needs_run = False

    def __init__(self, face_model: FaceModel, run=None):
        self.face_model = face_model.eval()
        self.encoders = {}
        self.run = run
        self.device = torch.device("cpu")

    @classmethod
    def from_run(cls, run=None, face_model: Optional[FaceModel] = None, device="cpu") -> "RandomPrior":
        """The prior of ``face_model``; else of the face model of ``run``'s networks; else the built-in head."""
        device = resolve_device(device)
        return cls(face_model_of_any(run, face_model), run).to(device)

    @torch.no_grad()
    def reconstruct_embeddings(self, identity: np.ndarray, appearance: np.ndarray, settings: ReconstructionSettings,
                               keys: Sequence) -> list[Reconstruction]:
        model = self.face_model
        out = []
        for key in keys:
            g = image_generator(settings.seed, key, "prior")
            shapes = model.sample_prior(settings.shapes, g).shape.cpu()
            sample = model.sample_prior(settings.expressions, g, expression=True)
            codes = model.join_code(sample.expression, sample.pose).cpu()
            out.append(make_reconstruction(model, self.name, str(key), shapes, torch.zeros(len(shapes)), 0, codes))
        return out
