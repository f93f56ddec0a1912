"""Training of the deterministic ArcFace -> shape regressor (the MICA-like baseline), MSE on
standardised coefficients, into ``RUN/regressor/``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..devices import resolve_device
from ..methods.regressor.network import NETWORK, RegressorConfig, ShapeRegressor
from ..networks.normalization import Normalizer
from .common import TrainingData, adamw, run_config
from .loop import run_epochs
from .options import TrainOptions, option, require_widths
from .registry import register
from .resume import resume_checkpoint


@dataclass
class RegressorOptions(TrainOptions):
    network: ClassVar[str] = NETWORK
    help: ClassVar[str] = "train the ArcFace -> shape regressor baseline"

    widths: list[int] = option("--widths", factory=lambda: [512, 512], type=int, nargs="+", metavar="W",
                               help="hidden widths of the regressor MLP (default 512 512)")

    def validate(self) -> None:
        super().validate()
        require_widths(self.widths)
        self.widths = list(self.widths)


@register(RegressorOptions)
def train_regressor(options: RegressorOptions) -> list[dict]:
    """Train the regressor; returns the log."""
    device = resolve_device(options.device)
    checkpoint = resume_checkpoint(options)
    data = TrainingData.from_options(options).read(["shape", "arcface"])
    target, cond = data.columns["shape"], data.columns["arcface"]
    target_norm = Normalizer.fit(target)
    cond_norm = data.condition_normalizer(cond, options.domain_directions)
    net_config = RegressorConfig(input_dim=cond.shape[1], output_dim=target.shape[1], widths=list(options.widths))
    config = run_config(options, data, ("identity",), net_config,
                        {**target_norm.to_dict("target"), **cond_norm.to_dict()})
    torch.manual_seed(options.seed)
    net = ShapeRegressor(net_config).to(device)
    optimizer = adamw(net, options)
    z_target, z_cond = target_norm(target).to(device), cond_norm(cond).to(device)

    def step(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        on_device = indices.to(device)
        return torch.nn.functional.mse_loss(net(z_cond[on_device]), z_target[on_device])

    return run_epochs(config, net, optimizer, len(target), step, options, checkpoint, device, mix=data.mix())


__all__ = ["RegressorOptions", "train_regressor"]
