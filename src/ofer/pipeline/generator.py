"""Trained networks wrapped for inference: a conditional coefficient generator and the ranker.

``CoefficientGenerator`` = denoiser + scheduler + normalisation: it standardises the condition,
runs the reverse diffusion for N samples per condition in one batch, and maps the result back to
coefficient units. ``ShapeRanker`` = IdRank + the face model's front-vertex subset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..diffusion import DDPMSchedulerConfig, make_scheduler, sample
from ..facemodels import FaceModel
from ..networks import Denoiser, DenoiserConfig, IdRank, IdRankConfig
from ..training.checkpoint import RunConfig, check_encoders, check_face_model, load_checkpoint, load_weights
from .normalization import ConditionNormalizer, Normalizer

SAMPLERS = ("ddpm", "ddim")


class CoefficientGenerator(torch.nn.Module):
    """A trained IdGen or ExpGen: ``sample(cond (B,C), n) -> (B, n, D)`` coefficients."""

    def __init__(self, config: RunConfig, denoiser: Denoiser, where: str | Path = "checkpoint"):
        super().__init__()
        self.config = config
        self.denoiser = denoiser.eval()
        self.scheduler_config = DDPMSchedulerConfig.from_dict(config.scheduler)
        self.target_norm = Normalizer.from_dict(config.normalization, "target", where)
        self.cond_norm = ConditionNormalizer.from_dict(config.normalization, where)

    @classmethod
    def from_checkpoint(cls, folder: str | Path, network: str, face_model_info: Optional[dict] = None,
                        encoders: Optional[dict] = None) -> "CoefficientGenerator":
        config, payload = load_checkpoint(folder, network)
        if face_model_info is not None:
            check_face_model(config, face_model_info, folder)
        if encoders is not None:
            check_encoders(config, encoders, folder, require_all=False)
        denoiser = load_weights(Denoiser(DenoiserConfig.from_dict(config.net)), payload, folder)
        return cls(config, denoiser, folder)

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor,
        num_samples: int,
        sampler: str = "ddim",
        steps: Optional[int] = 50,
        generator: Optional[torch.Generator] = None,
        eta: float = 0.0,
    ) -> torch.Tensor:
        """Draw ``num_samples`` coefficient vectors per condition.

        Args:
            cond: (B, C) raw condition (encoder outputs, concatenated as at training).
            sampler: ``ddpm`` (ancestral; ``steps=None`` = the 1000-step reference) or ``ddim``.
        Returns:
            (B, num_samples, D) coefficients in the face model's units.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}")
        scheduler = make_scheduler(sampler, self.scheduler_config, eta=eta)
        batch = cond.shape[0]
        z = sample(
            lambda x, t, c: self.denoiser(x, t, c),
            scheduler,
            (batch * num_samples, self.denoiser.config.input_dim),
            cond=self.cond_norm(cond.float()),
            generator=generator,
            num_inference_steps=steps,
        )
        return self.target_norm.inverse(z).view(batch, num_samples, -1)


def rank_vertex_subset(front_mask: torch.Tensor, vertices: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of ``count`` front vertices spread evenly over the face (farthest-point sampling).

    Args:
        front_mask: (V,) bool; vertices: (V, 3) neutral template.
    Returns:
        (K,) long indices into V (all front vertices if ``count`` >= their number or <= 0).
    """
    front = torch.nonzero(front_mask).flatten()
    if count <= 0 or count >= len(front):
        return front
    points = vertices[front].double().numpy()
    chosen = [int(np.argmin(points[:, 1]))]  # start from the lowest point: deterministic
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(count - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return front[torch.as_tensor(sorted(chosen))]


class ShapeRanker(torch.nn.Module):
    """A trained IdRank with the vertex subset it was trained on."""

    def __init__(self, config: RunConfig, net: IdRank, vertex_ids: torch.Tensor, where="checkpoint"):
        super().__init__()
        self.config = config
        self.net = net.eval()
        self.register_buffer("vertex_ids", vertex_ids.long())
        self.cond_norm = ConditionNormalizer.from_dict(config.normalization, where)

    @classmethod
    def from_checkpoint(cls, folder: str | Path, face_model_info: Optional[dict] = None,
                        encoders: Optional[dict] = None) -> "ShapeRanker":
        config, payload = load_checkpoint(folder, "idrank")
        if face_model_info is not None:
            check_face_model(config, face_model_info, folder)
        if encoders is not None:
            check_encoders(config, encoders, folder, require_all=False)
        net = load_weights(IdRank(IdRankConfig.from_dict(config.net)), payload, folder)
        return cls(config, net, torch.as_tensor(config.extra["vertex_ids"]), folder)

    def front_vertices_mm(self, model: FaceModel, shapes: torch.Tensor) -> torch.Tensor:
        """(B, N, S) shape coefficients -> (B, N, K, 3) neutral front vertices in mm."""
        B, N, S = shapes.shape
        vertices = model(shapes.reshape(B * N, S)).vertices[:, self.vertex_ids] * 1000.0
        return vertices.view(B, N, -1, 3)

    @torch.no_grad()
    def rank(self, model: FaceModel, shapes: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B, N) and best index (B,) for candidate shapes (B, N, S) given raw conditions (B, C)."""
        return self.net.rank(self.front_vertices_mm(model, shapes), self.cond_norm(cond.float()))
