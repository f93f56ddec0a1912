"""FOCUS's misfit prior (BASELINES.md A.6): the signed mean per-vertex offset of a reconstruction
network on clean renders of the face model, subtracted from its predictions at test time."""

from __future__ import annotations

import torch


def misfit_prior(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """E_MP = mean_i (P_i - T_i): (V, 3) in the meshes' units from (N, V, 3) predicted and true meshes
    in the canonical model frame (no pose). Signed: zero-mean errors average out."""
    if predicted.shape != truth.shape or predicted.dim() != 3 or predicted.shape[-1] != 3:
        raise ValueError(f"misfit_prior: predicted and truth must both be (N, V, 3), got "
                         f"{tuple(predicted.shape)} and {tuple(truth.shape)}")
    return (predicted - truth).mean(0)


def corrected(predicted: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """P_mf = P - E_MP for (..., V, 3) predictions."""
    return predicted - prior
