"""A deterministic identity regressor (MICA-like): ArcFace embedding -> shape coefficients.

An MLP trained with a mean-squared error on standardised coefficients, on the same data as IdGen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ...config import Config, require

NETWORK = "regressor"


@dataclass
class RegressorConfig(Config):
    input_dim: int = 512
    output_dim: int = 100
    widths: list[int] = field(default_factory=lambda: [512, 512])
    dropout: float = 0.1

    def validate(self) -> None:
        require(self.input_dim >= 1 and self.output_dim >= 1, "regressor: input_dim and output_dim must be >= 1")
        require(all(isinstance(w, int) and w >= 1 for w in self.widths), f"regressor: widths must be positive, got {self.widths}")
        require(0.0 <= self.dropout < 1.0, f"regressor: dropout must be in [0, 1), got {self.dropout}")


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
