"""Normalisation of network inputs and outputs, saved with every checkpoint.

``Normalizer`` standardises each dimension. ``ConditionNormalizer`` prepares a condition vector
(identity embedding first, then any appearance features): it first removes the *render-domain
directions* from the identity embedding, then standardises.

Why the projection: ArcFace embeddings of synthetic renders share a strong common component (two
different renders have cosine 0.36 on average, real photos of different people 0.03), so after
standardising with render statistics a real photo lies far outside the training distribution.
The top right-singular directions of the (uncentred) training embeddings carry that component;
projecting them out of every embedding, render or photo, and re-normalising to unit length needs
no photo at training time and no domain label at test time (benchmarks/bench_domain_gap.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import CheckpointError


def _tensor(values, name: str, where, ndim: int = 1) -> torch.Tensor:
    """A saved list as a float32 tensor with ``ndim`` dimensions; CheckpointError naming it otherwise."""
    if values is None:
        raise CheckpointError(f"{where}: checkpoint lacks normalisation '{name}'")
    try:
        tensor = torch.as_tensor(values, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise CheckpointError(f"{where}: normalisation '{name}' is not a list of numbers") from None
    if tensor.ndim != ndim or not torch.isfinite(tensor).all():
        raise CheckpointError(f"{where}: normalisation '{name}' must be a finite {ndim}-D list, "
                              f"got shape {tuple(tensor.shape)}")
    return tensor


@dataclass
class Normalizer:
    """Per-dimension standardisation: ``z = (x - mean) / std``."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, min_std: float = 1e-6) -> "Normalizer":
        std = x.std(dim=0)
        std = torch.where(std < min_std, torch.ones_like(std), std)  # constant dims (e.g. tongueOut)
        return cls(x.mean(dim=0), std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    def to(self, device) -> "Normalizer":
        return Normalizer(self.mean.to(device), self.std.to(device))

    def to_dict(self, prefix: str) -> dict:
        return {f"{prefix}_mean": self.mean.tolist(), f"{prefix}_std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict, prefix: str, where) -> "Normalizer":
        """Read ``{prefix}_mean`` and ``{prefix}_std`` (D,) from a checkpoint's normalisation record."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{where}: normalisation must be a mapping, got {type(data).__name__}")
        mean = _tensor(data.get(f"{prefix}_mean"), f"{prefix}_mean", where)
        std = _tensor(data.get(f"{prefix}_std"), f"{prefix}_std", where)
        if mean.shape != std.shape or not (std > 0).all():
            raise CheckpointError(f"{where}: normalisation '{prefix}' needs a mean and a positive std of one "
                                  f"length, got {len(mean)} and {len(std)}")
        return cls(mean, std)


def domain_directions(embeddings: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` leading right-singular vectors of uncentred embeddings (N, D) -> (count, D)."""
    if count <= 0:
        return torch.zeros(0, embeddings.shape[1])
    _, _, vh = torch.linalg.svd(embeddings.double(), full_matrices=False)
    directions = vh[:count]
    # fix the sign so that the result does not depend on the LAPACK build
    signs = torch.sign(directions @ embeddings.double().mean(0))
    return (directions * torch.where(signs == 0, torch.ones_like(signs), signs)[:, None]).float()


def remove_directions(x: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Project orthonormal ``directions`` (K, D) out of ``x`` (..., D) and re-normalise to unit length.

    All-zero rows (no face found) stay zero.
    """
    if directions.numel() == 0:
        return x
    x = x - (x @ directions.T) @ directions
    norm = x.norm(dim=-1, keepdim=True)
    return torch.where(norm > 1e-8, x / norm.clamp_min(1e-8), torch.zeros_like(x))


def _project_identity(cond: torch.Tensor, directions: torch.Tensor, identity_dim: int) -> torch.Tensor:
    """Remove ``directions`` from the leading ``identity_dim`` entries of ``cond`` (..., C); the rest is kept."""
    identity = remove_directions(cond[..., :identity_dim], directions)
    return torch.cat([identity, cond[..., identity_dim:]], dim=-1)


@dataclass
class ConditionNormalizer:
    """Condition preprocessing: render-domain projection of the identity part, then standardisation.

    Attributes:
        norm: per-dimension standardisation of the projected condition (C,).
        directions: (K, identity_dim) orthonormal render-domain directions; K = 0 disables.
        identity_dim: how many leading condition dimensions are the identity embedding.
    """

    norm: Normalizer
    directions: torch.Tensor
    identity_dim: int

    @classmethod
    def fit(cls, cond: torch.Tensor, identity_dim: int, num_directions: int) -> "ConditionNormalizer":
        directions = domain_directions(cond[:, :identity_dim], num_directions)
        return cls(Normalizer.fit(_project_identity(cond, directions, identity_dim)), directions, identity_dim)

    def project(self, cond: torch.Tensor) -> torch.Tensor:
        return _project_identity(cond, self.directions, self.identity_dim)

    def __call__(self, cond: torch.Tensor) -> torch.Tensor:
        return self.norm(self.project(cond.float()))

    def to(self, device) -> "ConditionNormalizer":
        return ConditionNormalizer(self.norm.to(device), self.directions.to(device), self.identity_dim)

    def to_dict(self) -> dict:
        return {**self.norm.to_dict("cond"), "cond_domain_directions": self.directions.tolist(),
                "cond_identity_dim": self.identity_dim}

    @classmethod
    def from_dict(cls, data: dict, where) -> "ConditionNormalizer":
        norm = Normalizer.from_dict(data, "cond", where)
        directions: Optional[list] = data.get("cond_domain_directions")
        if not directions:  # no projection (--domain-directions 0), or runs saved before it existed
            identity_dim = data.get("cond_identity_dim", 0)
            if not isinstance(identity_dim, int) or isinstance(identity_dim, bool) or not 0 <= identity_dim <= len(norm.mean):
                raise CheckpointError(f"{where}: cond_identity_dim must be an integer in [0, {len(norm.mean)}], "
                                      f"got {identity_dim!r}")
            return cls(norm, torch.zeros(0, identity_dim or len(norm.mean)), identity_dim)
        directions_t = _tensor(directions, "cond_domain_directions", where, ndim=2)
        identity_dim = data.get("cond_identity_dim", directions_t.shape[1])
        if not isinstance(identity_dim, int) or isinstance(identity_dim, bool):
            raise CheckpointError(f"{where}: cond_identity_dim must be an integer, got {identity_dim!r}")
        if directions_t.shape[1] != identity_dim or identity_dim > len(norm.mean):
            raise CheckpointError(f"{where}: inconsistent condition normalisation "
                                  f"(directions {tuple(directions_t.shape)})")
        return cls(norm, directions_t, identity_dim)
