"""IdRank: scores N candidate identities of one image so the best can be picked (ListNet training).

Input per candidate j of a set (all in millimetres, front-face vertices V' only)::

    mu  = mean_j front_j                         (V',3)  the same for every candidate of the set
    r_j = front_j - mu                           (V',3)
    x_j = [ (mu - mean_shape) / mean_scale , r_j / residual_scale ]  flattened: 2 * 3 * V'

``mean_shape``, ``mean_scale`` and ``residual_scale`` are buffers (identity transform by default,
as in the paper); :meth:`IdRank.fit_input_normalization` sets them from training data. Without
them the absolute coordinates of the mean (tens of mm) swamp the residuals (about 1 mm) in
the first layer.

MLP ``2*3*V' -> 4096 -> 1024 -> 256 -> 64 -> 1``; every hidden layer is
``Linear -> GroupNorm -> h * sigmoid(W_g c) + W_b c -> SELU`` with c the condition (ArcFace ||
appearance, ``cond_dim``). Scores are logits: the probability of candidate j is softmax over
the set. Inference picks the argmax (ties -> first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, require_int
from .denoiser import check_device, integral, num_groups_for, require_dropout, require_widths


@dataclass
class IdRankConfig(Config):
    """Architecture of :class:`IdRank`; validated when built.

    Attributes:
        num_vertices: V' >= 1, the number of front-face vertices (FLAME: 1785).
        cond_dim: length of the condition, >= 0 (the paper's 1024 = ArcFace 512 || FaRL 512).
        widths: positive hidden layer widths (the paper's [4096, 1024, 256, 64]).
        num_groups: upper bound on GroupNorm groups per layer (>= 4 features per group).
        dropout: alpha-dropout after each hidden layer (SELU-compatible), in [0, 1).
    """

    num_vertices: int
    cond_dim: int = 1024
    widths: list[int] = field(default_factory=lambda: [4096, 1024, 256, 64])
    num_groups: int = 8
    dropout: float = 0.0

    def validate(self) -> None:
        self.num_vertices, self.cond_dim, self.num_groups = (
            integral(v) for v in (self.num_vertices, self.cond_dim, self.num_groups))
        require_int(self.num_vertices, "num_vertices", minimum=1)
        require_int(self.cond_dim, "cond_dim", minimum=0)
        self.widths = require_widths(self.widths)
        require_int(self.num_groups, "num_groups", minimum=1)
        require_dropout(self.dropout)

    @property
    def input_dim(self) -> int:
        return 2 * 3 * self.num_vertices


class GatedLayer(nn.Module):
    """``SELU(GroupNorm(Linear(h)) * sigmoid(W_g c) + W_b c)``; h (M, in), gate/shift (M, out) -> (M, out)."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int, num_groups: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.norm = nn.GroupNorm(num_groups_for(out_dim, num_groups), out_dim)
        self.cond = nn.Linear(cond_dim, 2 * out_dim) if cond_dim > 0 else None
        self.dropout = nn.AlphaDropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h: torch.Tensor, gate_shift: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(self.linear(h))
        if gate_shift is not None:
            gate, shift = gate_shift.chunk(2, dim=-1)
            h = h * torch.sigmoid(gate) + shift
        return self.dropout(F.selu(h))


class IdRank(nn.Module):
    """Conditional ranking MLP: ``forward(front_vertices_mm (B,N,V',3), cond (B,C)) -> scores (B,N)``."""

    def __init__(self, config: IdRankConfig):
        super().__init__()
        self.config = config
        dims = [config.input_dim, *config.widths]
        self.layers = nn.ModuleList(
            GatedLayer(dims[i], dims[i + 1], config.cond_dim, config.num_groups, config.dropout)
            for i in range(len(dims) - 1)
        )
        self.head = nn.Linear(dims[-1], 1, bias=False)  # no bias: softmax over a set ignores a shared offset
        self.register_buffer("mean_shape", torch.zeros(config.num_vertices, 3))
        self.register_buffer("mean_scale", torch.ones(()))
        self.register_buffer("residual_scale", torch.ones(()))

    @torch.no_grad()
    def fit_input_normalization(self, front_vertices_mm: torch.Tensor, min_scale_mm: float = 1e-3) -> None:
        """Set the input normalisation from training candidate sets.

        Args:
            front_vertices_mm: (B, N, V', 3) candidate sets (several sets, B > 1, for ``mean_scale``).
        Sets ``mean_shape`` = mean vertex positions, ``mean_scale`` = RMS of set means around it,
        ``residual_scale`` = RMS of the candidates around their set mean (both floored at ``min_scale_mm``).
        """
        self._check(front_vertices_mm)
        x = front_vertices_mm.to(self.mean_shape.dtype)
        mu = x.mean(dim=1)  # (B, V', 3)
        shape = mu.mean(dim=0)
        mean_scale = (mu - shape).pow(2).mean().sqrt() if x.shape[0] > 1 else x.new_ones(())
        residual_scale = (x - mu[:, None]).pow(2).mean().sqrt()
        self.mean_shape.copy_(shape)
        self.mean_scale.copy_(mean_scale.clamp_min(min_scale_mm))
        self.residual_scale.copy_(residual_scale.clamp_min(min_scale_mm))

    def _check(self, x: torch.Tensor) -> None:
        v = self.config.num_vertices
        if x.ndim != 4 or x.shape[2:] != (v, 3):
            raise ValueError(f"front vertices must be (B, N, {v}, 3), got {tuple(x.shape)}")
        check_device(self.mean_shape.device, front_vertices=x)

    def features(self, front_vertices_mm: torch.Tensor) -> torch.Tensor:
        """(B, N, V', 3) candidates -> (B, N, 2*3*V') normalised (set mean, residual) pairs."""
        self._check(front_vertices_mm)
        x = front_vertices_mm.to(self.mean_shape.dtype)
        mu = x.mean(dim=1, keepdim=True)  # (B, 1, V', 3)
        mean_part = ((mu - self.mean_shape) / self.mean_scale).expand_as(x)
        resid_part = (x - mu) / self.residual_scale
        B, N = x.shape[:2]
        return torch.cat([mean_part.reshape(B, N, -1), resid_part.reshape(B, N, -1)], dim=-1)

    def forward(self, front_vertices_mm: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Score every candidate.

        Args:
            front_vertices_mm: (B, N, V', 3) front-face vertices of the N candidate neutral meshes, in mm.
            cond: (B, C) image condition (``None`` only when ``cond_dim == 0``).
        Returns:
            (B, N) scores (logits; higher = better).
        """
        feats = self.features(front_vertices_mm)
        B, N, F_ = feats.shape
        h = feats.reshape(B * N, F_)
        if self.config.cond_dim > 0:
            if cond is None or cond.shape != (B, self.config.cond_dim):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"cond must be ({B}, {self.config.cond_dim}), got {got}")
            check_device(h.device, cond=cond)
            cond = cond.to(h.dtype)
        for layer in self.layers:
            gs = None
            if layer.cond is not None:
                gs = layer.cond(cond).repeat_interleave(N, dim=0)  # (B*N, 2*out)
            h = layer(h, gs)
        return self.head(h).view(B, N)

    @torch.no_grad()
    def rank(self, front_vertices_mm: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: (scores (B,N), best index (B,) long); ties go to the first candidate."""
        scores = self.forward(front_vertices_mm, cond)
        return scores, select_best(scores)


def select_best(scores: torch.Tensor) -> torch.Tensor:
    """(B, N) scores -> (B,) index of the highest score, the first one on ties."""
    best = scores.max(dim=-1, keepdim=True).values
    is_best = scores == best
    return is_best.to(torch.int8).argmax(dim=-1)


def candidate_errors(candidates: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean absolute coordinate error of each candidate (the paper's Eq. 3, averaged).

    Args:
        candidates: (B, N, V', 3) in mm.
        gt: (B, V', 3) in mm.
    Returns:
        (B, N) mean over vertices and x/y/z of |candidate - gt|, in mm.
    """
    ok = candidates.ndim == 4 and gt.ndim == 3 and candidates.shape[2:] == gt.shape[1:]
    if not ok or candidates.shape[0] != gt.shape[0]:
        raise ValueError(f"need candidates (B,N,V,3) and gt (B,V,3), got {tuple(candidates.shape)}, {tuple(gt.shape)}")
    return (candidates - gt[:, None]).abs().mean(dim=(-1, -2))


def listnet_target(errors_mm: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """(B, N) errors -> (B, N) target distribution softmax(-errors / tau): lower error, higher probability."""
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    return torch.softmax(-errors_mm / tau, dim=-1)


def listnet_loss(scores: torch.Tensor, errors_mm: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """ListNet cross-entropy between softmax(-errors / tau) and softmax(scores), averaged over the batch.

    Args:
        scores: (B, N) network scores (logits).
        errors_mm: (B, N) candidate errors (e.g. :func:`candidate_errors`), not differentiated.
        tau: temperature of the target in mm (the paper's 1).
    Returns:
        () scalar loss ``mean_b( -sum_j target_bj * log_softmax(scores)_bj )``.
    """
    if scores.shape != errors_mm.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and errors {tuple(errors_mm.shape)} differ in shape")
    target = listnet_target(errors_mm.detach().to(scores.dtype), tau)
    return -(target * F.log_softmax(scores, dim=-1)).sum(dim=-1).mean()
