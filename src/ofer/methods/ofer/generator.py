"""Trained networks wrapped for inference: a conditional coefficient generator and the ranker.

``CoefficientGenerator`` = denoiser + scheduler + normalisation: it standardises the condition,
runs the reverse diffusion for N samples per condition in one batch, and maps the result back to
coefficient units. ``ShapeRanker`` = IdRank + the face model's front-vertex subset.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ...config import require_choice
from ...diffusion import DDPMSchedulerConfig, make_scheduler, sample
from ...facemodels import FaceModel
from ...networks import Denoiser, DenoiserConfig, IdRank, IdRankConfig
from ...networks.normalization import ConditionNormalizer, Normalizer
from ...runs import Checkpoint, RunConfig, build_config, check_encoders, check_face_model, load_weights
from ..base import SAMPLERS


def _checked(checkpoint: Checkpoint, face_model_info: Optional[dict], encoders: Optional[dict]) -> RunConfig:
    if face_model_info is not None:
        check_face_model(checkpoint.config, face_model_info, checkpoint.path)
    if encoders is not None:
        check_encoders(checkpoint.config, encoders, checkpoint.path, require_all=False)
    return checkpoint.config


class CoefficientGenerator(torch.nn.Module):
    """A trained IdGen or ExpGen: ``sample(cond (B,C), n) -> (B, n, D)`` coefficients."""

    def __init__(self, config: RunConfig, denoiser: Denoiser, scheduler_config: DDPMSchedulerConfig,
                 target_norm: Normalizer, cond_norm: ConditionNormalizer):
        super().__init__()
        self.config = config
        self.denoiser = denoiser.eval()
        self.scheduler_config = scheduler_config
        self.target_norm = target_norm
        self.cond_norm = cond_norm

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, face_model_info: Optional[dict] = None,
                        encoders: Optional[dict] = None) -> "CoefficientGenerator":
        config = _checked(checkpoint, face_model_info, encoders)
        denoiser = load_weights(Denoiser(build_config(DenoiserConfig, config.net, checkpoint)), checkpoint)
        scheduler_config = build_config(DDPMSchedulerConfig, config.scheduler or {}, checkpoint, "scheduler")
        return cls(config, denoiser, scheduler_config,
                   Normalizer.from_dict(config.normalization, "target", checkpoint.path),
                   ConditionNormalizer.from_dict(config.normalization, checkpoint.path))

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler_config.num_train_timesteps)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, num_samples: int, sampler: str = "ddim", steps: Optional[int] = 50,
               generator: Optional[torch.Generator] = None, eta: float = 0.0) -> torch.Tensor:
        """Draw ``num_samples`` coefficient vectors per condition.

        Args:
            cond: (B, C) raw condition (encoder outputs, concatenated as at training).
            sampler: ``ddpm`` (ancestral; ``steps=None`` = the 1000-step reference) or ``ddim``.
            generator: CPU generator of all random numbers (so a seed gives the same result on any device).
        Returns:
            (B, num_samples, D) coefficients in the face model's units, on the CPU.
        """
        require_choice(sampler, "sampler", SAMPLERS)
        device = next(self.denoiser.parameters()).device
        scheduler = make_scheduler(sampler, self.scheduler_config, eta=eta)
        batch = cond.shape[0]
        z = sample(
            lambda x, t, c: self.denoiser(x, t, c),
            scheduler,
            (batch * num_samples, self.denoiser.config.input_dim),
            cond=self.cond_norm(cond.float()).to(device),
            generator=generator,
            num_inference_steps=steps,
            device=device,
        )
        return self.target_norm.inverse(z.cpu()).view(batch, num_samples, -1)


RANK_CHUNK = 1024  # candidate meshes built at once when ranking


def rank_vertex_subset(front_mask: torch.Tensor, vertices: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of ``count`` front vertices spread evenly over the face (farthest-point sampling).

    Args:
        front_mask: (V,) bool; vertices: (V, 3) neutral template.
    Returns:
        (K,) long indices into V (all front vertices if ``count`` >= their number or <= 0).
    """
    front = torch.nonzero(front_mask.cpu()).flatten()
    if count <= 0 or count >= len(front):
        return front
    points = vertices.cpu()[front].double().numpy()
    chosen = [int(np.argmin(points[:, 1]))]  # start from the lowest point: deterministic
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(count - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return front[torch.as_tensor(sorted(chosen))]


class ShapeRanker(torch.nn.Module):
    """A trained IdRank with the vertex subset and the candidate sampler it was trained with."""

    def __init__(self, config: RunConfig, net: IdRank, vertex_ids: torch.Tensor, cond_norm: ConditionNormalizer):
        super().__init__()
        self.config = config
        self.net = net.eval()
        self.register_buffer("vertex_ids", vertex_ids.long())
        self.cond_norm = cond_norm

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, face_model_info: Optional[dict] = None,
                        encoders: Optional[dict] = None) -> "ShapeRanker":
        config = _checked(checkpoint, face_model_info, encoders)
        net = load_weights(IdRank(build_config(IdRankConfig, config.net, checkpoint)), checkpoint)
        return cls(config, net, torch.as_tensor(config.extra["vertex_ids"]),
                   ConditionNormalizer.from_dict(config.normalization, checkpoint.path))

    @property
    def candidate_sampler(self) -> tuple[Optional[str], Optional[int]]:
        """(sampler, steps) of the IdGen samples IdRank was trained on (``None`` when not recorded)."""
        return self.config.extra.get("sampler"), self.config.extra.get("steps")

    def front_vertices_mm(self, model: FaceModel, shapes: torch.Tensor) -> torch.Tensor:
        """(B, N, S) shape coefficients -> (B, N, K, 3) neutral front vertices in mm."""
        B, N, S = shapes.shape
        # In chunks: the full meshes of 100,000 candidates would take gigabytes, their K vertices do not.
        chunks = shapes.reshape(B * N, S).split(RANK_CHUNK)
        vertices = torch.cat([model(chunk).vertices[:, self.vertex_ids] for chunk in chunks]) * 1000.0
        return vertices.view(B, N, -1, 3)

    @torch.no_grad()
    def rank(self, model: FaceModel, shapes: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B, N) and best index (B,) for candidate shapes (B, N, S) given raw conditions (B, C)."""
        device = self.vertex_ids.device
        scores, best = self.net.rank(self.front_vertices_mm(model, shapes.to(device)), self.cond_norm(cond.float()).to(device))
        return scores.cpu(), best.cpu()
