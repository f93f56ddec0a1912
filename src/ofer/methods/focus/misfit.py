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


# The prior of the synthetic pictures R_syn learns from (A.11.4; the pose and light spreads are ours):
# theta units (see the decoder): identity and albedo in std units (the decoder scales albedo by 3),
# SH offsets on an ambient light, rotation x 0.3 rad, translation x 0.1 / 0.05 of the distance.
PRIOR_SPREAD = {"albedo": 1.0 / 3.0, "sh_dc": 0.15, "sh": 0.05, "rotation": 0.5, "translation": 0.1}


def prior_theta(decoder, model, count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, code_dim) theta drawn from the face model's prior (identity, expression), a PCA-albedo
    prior, mild SH light and near-frontal poses: "a linear face model without any enhancement"."""
    S, E, K, H = decoder.sizes[:4]
    sample = model.sample_prior(count, generator, expression=True)
    theta = torch.zeros(count, decoder.code_dim)
    theta[:, :S] = sample.shape / model.shape_std.cpu()
    theta[:, S : S + E] = sample.expression
    theta[:, S + E : S + E + K] = torch.randn(count, K, generator=generator) * PRIOR_SPREAD["albedo"]
    sh = torch.randn(count, 9, 3, generator=generator) * PRIOR_SPREAD["sh"]
    sh[:, 0] = torch.randn(count, 1, generator=generator) * PRIOR_SPREAD["sh_dc"]  # grey brightness
    theta[:, S + E + K : S + E + K + H] = sh.reshape(count, H)
    pose = torch.randn(count, 6, generator=generator) * PRIOR_SPREAD["rotation"]
    pose[:, 3:] = torch.randn(count, 3, generator=generator) * PRIOR_SPREAD["translation"]
    theta[:, S + E + K + H :] = pose
    return theta
