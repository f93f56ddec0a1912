"""A deterministic identity regressor (MICA-like): ArcFace embedding -> shape coefficients.

An MLP trained with a mean-squared error on standardised coefficients, on the same data as IdGen.
It gives one shape per image; the protocol evaluation pairs it with a neutral expression.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..training.checkpoint import check_face_model, load_checkpoint, load_weights, network_dir

NETWORK = "regressor"


@dataclass
class RegressorConfig:
    input_dim: int = 512
    output_dim: int = 100
    widths: list[int] = field(default_factory=lambda: [512, 512])
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RegressorConfig":
        return cls(**data)


class ShapeRegressor(nn.Module):
    """``forward(cond (B, C)) -> (B, S)`` standardised shape coefficients."""

    def __init__(self, config: RegressorConfig):
        super().__init__()
        self.config = config
        dims = [config.input_dim, *config.widths]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.SiLU(), nn.Dropout(config.dropout)]
        layers.append(nn.Linear(dims[-1], config.output_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.net(cond)


def load_regressor(run: str | Path, face_model_info: dict | None = None):
    """(model, target normaliser, condition normaliser) of ``RUN/regressor``."""
    from ..pipeline.normalization import ConditionNormalizer, Normalizer

    folder = network_dir(run, NETWORK)
    config, payload = load_checkpoint(folder, NETWORK)
    if face_model_info is not None:
        check_face_model(config, face_model_info, folder)
    net = load_weights(ShapeRegressor(RegressorConfig.from_dict(config.net)), payload, folder)
    return net.eval(), Normalizer.from_dict(config.normalization, "target", folder), ConditionNormalizer.from_dict(config.normalization, folder)


def regressor_method(run: str | Path, model, shapes: int = 1):
    """A protocol-evaluation method (see :mod:`ofer.evaluation.protocol`): one regressed neutral face."""
    from ..evaluation.protocol import Hypotheses

    net, target_norm, cond_norm = load_regressor(run, model.info().to_dict())

    def run_batch(data: dict, index: np.ndarray) -> Hypotheses:
        with torch.no_grad():
            shape = target_norm.inverse(net(cond_norm(torch.from_numpy(data["arcface"][index]))))
            shape = model.clamp_coefficients(shape, torch.zeros(0))[0]
            meshes = model(shape).vertices.numpy()[:, None] * 1000
        B = len(index)
        return Hypotheses(shape.numpy()[:, None], np.zeros((B, 1)), np.zeros(B, int), meshes)

    return run_batch
