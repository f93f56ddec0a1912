"""The noise schedule: its configuration, the beta table and the choice of sampling timesteps.

Conventions (the same as diffusers and Ho et al. 2020, with 0-based indices):
``alphas_cumprod[t] = prod_{i<=t} (1 - betas[i])`` for t = 0 .. T-1; index ``t`` is the noise
level of ``x_t``, and the clean data is the level "-1", whose ``alpha_bar`` is 1. Tables are
float64. The step rules that use them are in :mod:`ofer.diffusion.schedulers`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

import torch

from ..config import Config, ConfigError, require, require_choice, require_int

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES = ("fixed_small", "fixed_large")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass
class DDPMSchedulerConfig(Config):
    """Noise schedule and parametrisation shared by every scheduler (saved with a checkpoint); validated when built.

    Attributes:
        num_train_timesteps: T >= 1, the number of diffusion steps used in training (1000).
        beta_start, beta_end: first and last beta of the schedule, ``0 < beta_start < beta_end < 1``
            (1e-4, 1e-2: OFER's values).
        beta_schedule: ``"linear"`` (betas evenly spaced, the paper's), ``"scaled_linear"``
            (evenly spaced square roots) or ``"cosine"`` (Nichol & Dhariwal; ignores beta_start/end).
        prediction_type: what the network predicts: ``"epsilon"`` (the noise; the paper's),
            ``"sample"`` (x0) or ``"v_prediction"`` (v = sqrt(ab) eps - sqrt(1-ab) x0).
        clip_sample: if set (> 0), the predicted x0 is clamped to [-clip_sample, clip_sample] in
            every sampling step (``None``: no clamping; coefficients are not bounded).
        variance_type: variance of the ancestral DDPM step: ``"fixed_small"`` (the posterior
            variance beta_tilde, default) or ``"fixed_large"`` (beta_t). See ``DDPMScheduler``.
        timestep_spacing: how a schedule of n < T sampling steps picks its timesteps, see
            :func:`make_timesteps`. With n = T all three give T-1, ..., 0.
    """

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 1e-2
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"
    clip_sample: Optional[float] = None
    variance_type: str = "fixed_small"
    timestep_spacing: str = "linspace"

    def validate(self) -> None:
        if isinstance(self.num_train_timesteps, numbers.Integral) and not isinstance(self.num_train_timesteps, bool):
            self.num_train_timesteps = int(self.num_train_timesteps)
        require_int(self.num_train_timesteps, "num_train_timesteps", minimum=1)
        ordered = _is_number(self.beta_start) and _is_number(self.beta_end) and 0 < self.beta_start < self.beta_end < 1
        require(ordered, f"need 0 < beta_start < beta_end < 1, got {self.beta_start!r}, {self.beta_end!r}")
        require_choice(self.beta_schedule, "beta_schedule", BETA_SCHEDULES)
        require_choice(self.prediction_type, "prediction_type", PREDICTION_TYPES)
        require_choice(self.variance_type, "variance_type", VARIANCE_TYPES)
        require_choice(self.timestep_spacing, "timestep_spacing", TIMESTEP_SPACINGS)
        clip = self.clip_sample
        require(clip is None or (_is_number(clip) and clip > 0), f"clip_sample must be positive or null, got {clip!r}")

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "DDPMSchedulerConfig":
        """Strict :meth:`Config.from_dict`; also reads files of older versions, which added ``_class_name``."""
        if isinstance(data, dict) and "_class_name" in data:
            require(data["_class_name"] == cls.__name__,
                    f"{where}: a {data['_class_name']!r} config is not a {cls.__name__}")
            data = {k: v for k, v in data.items() if k != "_class_name"}
        return super().from_dict(data, where)


def make_betas(config: DDPMSchedulerConfig) -> torch.Tensor:
    """(T,) float64 betas of the configured schedule (on the CPU)."""
    T = config.num_train_timesteps
    if config.beta_schedule == "linear":
        return torch.linspace(config.beta_start, config.beta_end, T, dtype=torch.float64)
    if config.beta_schedule == "scaled_linear":
        return torch.linspace(config.beta_start**0.5, config.beta_end**0.5, T, dtype=torch.float64) ** 2
    # cosine (Nichol & Dhariwal 2021), betas capped at 0.999
    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1.0 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


def check_steps(num_train_timesteps: int, num_inference_steps: Optional[int]) -> int:
    """n, the number of sampling steps (``None``: T); a one-line ConfigError unless 1 <= n <= T."""
    T = int(num_train_timesteps)
    if num_inference_steps is None:
        return T
    n = num_inference_steps
    if isinstance(n, numbers.Integral) and not isinstance(n, bool) and 1 <= n <= T:
        return int(n)
    raise ConfigError(f"sampling steps must be an integer from 1 to {T} (the model's training timesteps), got {n!r}")


def make_timesteps(num_train_timesteps: int, num_inference_steps: Optional[int], spacing: str) -> torch.Tensor:
    """Descending (n,) long timesteps (on the CPU) for a sampler that takes n steps out of T.

    - ``"linspace"`` (default): ``round(linspace(T-1, 0, n))`` -- starts at the noisiest level
      T-1 and makes its last network call at t = 0, strides as even as integers allow.
    - ``"leading"``: ``k * (T // n)`` for k = n-1 .. 0 (diffusers' default; ends at 0 but starts
      below T-1, e.g. 980 for n = 50).
    - ``"trailing"``: ``round(T - k * T / n) - 1`` for k = 0 .. n-1 (starts at T-1, last call at
      T/n - 1, e.g. 19 for n = 50).

    With n = T all three are T-1, ..., 0. ``None`` means n = T; n outside [1, T] is a ConfigError.
    """
    T = int(num_train_timesteps)
    n = check_steps(T, num_inference_steps)
    require_choice(spacing, "timestep_spacing", TIMESTEP_SPACINGS)
    if spacing == "linspace":
        ts = torch.linspace(T - 1, 0, n, dtype=torch.float64).round().long() if n > 1 else torch.tensor([T - 1])
    elif spacing == "leading":
        ts = torch.arange(n - 1, -1, -1, dtype=torch.long) * (T // n)
    else:
        ts = (torch.round(T - torch.arange(n, dtype=torch.float64) * (T / n)) - 1).long()
    if ts.unique().numel() != n:  # cannot happen for n <= T, kept as a guard
        raise ValueError(f"{spacing!r} spacing produced repeated timesteps for n={n}, T={T}")
    return ts
