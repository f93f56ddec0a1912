"""OFER's networks: the conditional MLP U-Net denoiser (IdGen, ExpGen) and the IdRank ranker."""

from .denoiser import Denoiser, DenoiserConfig, SinusoidalTimeEmbedding
from .idrank import (
    IdRank,
    IdRankConfig,
    candidate_errors,
    listnet_loss,
    listnet_target,
    select_best,
)

__all__ = [
    "Denoiser",
    "DenoiserConfig",
    "IdRank",
    "IdRankConfig",
    "SinusoidalTimeEmbedding",
    "candidate_errors",
    "listnet_loss",
    "listnet_target",
    "select_best",
]
