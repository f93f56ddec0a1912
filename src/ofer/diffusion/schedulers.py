"""Noise schedulers for the coefficient diffusion models (diffusers style).

A scheduler is a small object, separate from the network, that knows the noise schedule
(:mod:`ofer.diffusion.schedule`) and turns a network prediction into the next, less noisy sample::

    sched = DDPMScheduler(DDPMSchedulerConfig())      # T = 1000, linear betas 1e-4 .. 1e-2
    x_t = sched.add_noise(x0, noise, t)               # training: x0 (B,D), noise (B,D), t (B,) long
    sched.set_timesteps(None)                         # sampling: None = all T steps
    for t in sched.timesteps:                         # descending, e.g. 999, 998, ..., 0
        eps = net(x, t.expand(B), cond)
        x = sched.step(eps, t, x, generator=g).prev_sample

Conventions (the same as diffusers and Ho et al. 2020, with 0-based indices):

- ``alphas_cumprod[t] = prod_{i<=t} (1 - betas[i])``; the clean data is the level "-1" (``alpha_bar`` 1).
- ``add_noise``: ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``.
- ``step`` goes from timestep ``t`` to the *previous timestep of the current schedule*
  (``t - stride`` for evenly spaced schedules, ``t - 1`` with all T steps); after the last
  timestep of the schedule it returns the clean sample (``alpha_bar_prev = 1``), and that
  final step adds no noise.

Devices: the schedule tables stay float64 on the CPU; what a call returns is on its sample's
device and in its dtype (tables are cast on the CPU, then moved; a step's coefficients are Python
floats). Noise comes from the generator's device and is then moved, so a CPU generator gives
the same numbers on every device.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional, Union

import torch

from ..config import require, require_choice
from .schedule import (
    BETA_SCHEDULES,
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    VARIANCE_TYPES,
    DDPMSchedulerConfig,
    make_betas,
    make_timesteps,
)

__all__ = [
    "BETA_SCHEDULES", "PREDICTION_TYPES", "SCHEDULERS", "TIMESTEP_SPACINGS", "VARIANCE_TYPES", "DDIMScheduler",
    "DDPMScheduler", "DDPMSchedulerConfig", "Scheduler", "StepOutput", "make_betas", "make_scheduler",
    "make_timesteps", "randn",
]

TimestepLike = Union[int, torch.Tensor]


@dataclass
class StepOutput:
    """Result of one sampling step.

    Attributes:
        prev_sample: (B, ...) the sample at the previous timestep (the clean sample after the last step).
        pred_original_sample: (B, ...) the network's estimate of x0 at this step (after clipping).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def randn(
    shape: tuple[int, ...], generator: Optional[torch.Generator], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Standard normal noise drawn from ``generator`` (on the generator's device, then moved)."""
    gen_device = generator.device if generator is not None else device
    noise = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
    return noise.to(device)


def _as_int(t: TimestepLike) -> int:
    if isinstance(t, torch.Tensor):
        if t.numel() != 1:
            raise ValueError(f"step() takes one timestep for the whole batch, got shape {tuple(t.shape)}")
        return int(t.item())
    return int(t)


class Scheduler:
    """Schedule tables, training helpers and the timestep bookkeeping shared by DDPM and DDIM."""

    def __init__(self, config: Optional[DDPMSchedulerConfig] = None):
        self.config = config if config is not None else DDPMSchedulerConfig()
        self.betas = make_betas(self.config)  # (T,) float64
        self.alphas = 1.0 - self.betas  # (T,)
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)  # (T,)
        self.num_inference_steps: int = self.config.num_train_timesteps
        self.timesteps: torch.Tensor = torch.empty(0, dtype=torch.long)
        self._prev: dict[int, int] = {}  # timestep -> the one its step lands on, in schedule order
        self.set_timesteps(None)

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    # -- sampling schedule -------------------------------------------------------------
    def set_timesteps(self, num_inference_steps: Optional[int] = None, device: Union[str, torch.device] = "cpu"):
        """Choose the sampling timesteps (``None``: all T): ``self.timesteps`` (n,) long, descending, on ``device``.

        Raises a one-line :class:`~ofer.config.ConfigError` unless 1 <= n <= T.
        """
        ts = make_timesteps(self.num_train_timesteps, num_inference_steps, self.config.timestep_spacing)
        self.num_inference_steps = int(ts.numel())
        self.timesteps = ts.to(device)
        order = ts.tolist()
        self._prev = {t: (order[i + 1] if i + 1 < len(order) else -1) for i, t in enumerate(order)}

    @property
    def timestep_list(self) -> list[int]:
        """``self.timesteps`` as Python ints (read without touching the device)."""
        return list(self._prev)

    def previous_timestep(self, t: TimestepLike) -> int:
        """The timestep the step from ``t`` lands on: the next one in ``self.timesteps``, -1 (clean) after the last."""
        t = _as_int(t)
        if t not in self._prev:
            raise ValueError(f"timestep {t} is not in the current schedule; call set_timesteps() first")
        return self._prev[t]

    def alpha_bar(self, t: int) -> float:
        """alpha_bar at integer timestep ``t``; 1.0 for t < 0 (the clean data)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    # -- training --------------------------------------------------------------------------
    def _gather(self, table: torch.Tensor, t: TimestepLike, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` as (B, 1, ...) in ``like``'s dtype, on ``like``'s device (as are the timesteps)."""
        t = torch.as_tensor(t, device=like.device).long().reshape(-1)
        if t.numel() == 1 and like.shape[0] != 1:
            t = t.expand(like.shape[0])
        if t.numel() != like.shape[0]:
            raise ValueError(f"t has {t.numel()} entries for a batch of {like.shape[0]}")
        if t.device.type != "meta":  # meta tensors (device tests) have no values to check
            low, high = t.aminmax()
            if int(low) < 0 or int(high) >= self.num_train_timesteps:
                raise ValueError(f"timesteps must be in [0, {self.num_train_timesteps}), got {int(low)}..{int(high)}")
        # cast on the CPU first: float64 tables never reach a device without float64 (MPS)
        out = table.to(like.dtype).to(like.device)[t]
        return out.reshape(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_t | x_0): ``sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``.

        Args:
            original_samples: (B, ...) clean samples x0.
            noise: (B, ...) standard normal noise.
            timesteps: (B,) long (or one timestep for the whole batch).
        Returns:
            (B, ...) noisy samples x_t.
        """
        ab = self._gather(self.alphas_cumprod, timesteps, original_samples)
        return ab.sqrt() * original_samples + (1.0 - ab).sqrt() * noise

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """v = sqrt(ab_t) noise - sqrt(1 - ab_t) x0, shapes as in :meth:`add_noise`."""
        ab = self._gather(self.alphas_cumprod, timesteps, sample)
        return ab.sqrt() * noise - (1.0 - ab).sqrt() * sample

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the network should output for ``add_noise(x0, noise, t)`` under ``prediction_type``."""
        kind = self.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "sample":
            return x0
        return self.get_velocity(x0, noise, timesteps)

    # -- sampling helpers --------------------------------------------------------------------
    def _split_prediction(
        self, model_output: torch.Tensor, sample: torch.Tensor, ab_t: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) from the network output at a level with alpha_bar ``ab_t`` (clipping applied)."""
        a, s = math.sqrt(ab_t), math.sqrt(1.0 - ab_t)
        kind = self.config.prediction_type
        if kind == "epsilon":
            eps = model_output
            x0 = (sample - s * eps) / a
        elif kind == "sample":
            x0 = model_output
            eps = (sample - a * x0) / s
        else:  # v_prediction
            x0 = a * sample - s * model_output
            eps = a * model_output + s * sample
        if self.config.clip_sample is not None:
            c = float(self.config.clip_sample)
            x0 = x0.clamp(-c, c)
            eps = (sample - a * x0) / s  # keep (x0, eps) consistent with x_t
        return x0, eps

    def _noise(
        self, sample: torch.Tensor, generator: Optional[torch.Generator], noise: Optional[torch.Tensor]
    ) -> torch.Tensor:
        if noise is not None:
            if noise.shape != sample.shape:
                raise ValueError(f"noise shape {tuple(noise.shape)} != sample shape {tuple(sample.shape)}")
            return noise.to(device=sample.device, dtype=sample.dtype)
        return randn(tuple(sample.shape), generator, sample.device, sample.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config}, num_inference_steps={self.num_inference_steps})"


class DDPMScheduler(Scheduler):
    """Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2) -- the reference sampler.

    One step from timestep t to the previous scheduled timestep s (s = t - 1 with all T steps;
    a strided schedule uses the same formulas with the effective ``beta = 1 - ab_t / ab_s``)::

        x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)                      (clamped if clip_sample)
        mean   = sqrt(ab_s) beta / (1 - ab_t) * x0_hat + sqrt(1 - beta) (1 - ab_s) / (1 - ab_t) * x_t
        x_s    = mean + sigma z,   z ~ N(0, I)

    Variance: ``variance_type="fixed_small"`` (default) uses the true posterior variance of
    q(x_s | x_t, x0), ``sigma^2 = beta_tilde = (1 - ab_s) / (1 - ab_t) * beta`` -- the diffusers
    default, and exactly what DDIM with eta = 1 reproduces. ``"fixed_large"`` uses
    ``sigma^2 = beta`` (Ho et al. report both give similar results). The step after the last
    scheduled timestep (s = -1, ab_s = 1) returns ``x0_hat`` and draws no noise, so the
    generator is not advanced there.
    """

    def step(
        self,
        model_output: torch.Tensor,
        timestep: TimestepLike,
        sample: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        noise: Optional[torch.Tensor] = None,
    ) -> StepOutput:
        """One reverse step.

        Args:
            model_output: (B, ...) network output at ``timestep`` (see ``prediction_type``).
            timestep: int or one-element tensor, a member of ``self.timesteps``.
            sample: (B, ...) x_t.
            generator: source of the step's noise (ignored when ``noise`` is given).
            noise: optional (B, ...) standard normal noise to use instead of drawing it.
        Returns:
            :class:`StepOutput` with ``prev_sample`` (B, ...) and ``pred_original_sample`` (B, ...).
        """
        t = _as_int(timestep)
        prev_t = self.previous_timestep(t)
        ab_t, ab_prev = self.alpha_bar(t), self.alpha_bar(prev_t)
        beta = 1.0 - ab_t / ab_prev
        x0, _ = self._split_prediction(model_output, sample, ab_t)
        c0 = math.sqrt(ab_prev) * beta / (1.0 - ab_t)
        ct = math.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab_t)
        prev = c0 * x0 + ct * sample
        if prev_t >= 0:
            if self.config.variance_type == "fixed_small":
                var = (1.0 - ab_prev) / (1.0 - ab_t) * beta
            else:
                var = beta
            prev = prev + math.sqrt(max(var, 0.0)) * self._noise(sample, generator, noise)
        return StepOutput(prev_sample=prev, pred_original_sample=x0)


class DDIMScheduler(Scheduler):
    """DDIM sampling (Song et al. 2021) on a strided schedule of any length.

    One step from timestep t to the previous scheduled timestep s (``t - stride``; the clean
    level with ``ab_s = 1`` after the last scheduled timestep)::

        x0_hat  = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)
        sigma   = eta * sqrt((1 - ab_s) / (1 - ab_t)) * sqrt(1 - ab_t / ab_s)
        x_s     = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps + sigma z

    ``alpha_bar_prev`` is taken at the previous *scheduled* timestep, not at t - 1 (the
    authors' public code used t - 1 with strided schedules, which is wrong for fewer than T
    steps). eta = 0 is deterministic (no noise drawn); eta = 1 with all T steps is the
    ancestral DDPM step with ``fixed_small`` variance. The default spacing (``"linspace"``)
    starts at T-1 and makes its last network call at t = 0; see :func:`make_timesteps`.
    """

    def __init__(self, config: Optional[DDPMSchedulerConfig] = None, eta: float = 0.0):
        super().__init__(config)
        require(isinstance(eta, numbers.Real) and not isinstance(eta, bool) and eta >= 0,
                f"eta must be a number >= 0, got {eta!r}")
        self.eta = float(eta)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: TimestepLike,
        sample: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        noise: Optional[torch.Tensor] = None,
        eta: Optional[float] = None,
    ) -> StepOutput:
        """One DDIM step; arguments as :meth:`DDPMScheduler.step`, ``eta`` overrides ``self.eta``.

        Noise is drawn only when sigma > 0 (eta > 0 and not the final step).
        """
        eta = self.eta if eta is None else float(eta)
        t = _as_int(timestep)
        prev_t = self.previous_timestep(t)
        ab_t, ab_prev = self.alpha_bar(t), self.alpha_bar(prev_t)
        x0, eps = self._split_prediction(model_output, sample, ab_t)
        sigma = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab_t)) * math.sqrt(1.0 - ab_t / ab_prev)
        dir_coef = math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0))
        prev = math.sqrt(ab_prev) * x0 + dir_coef * eps
        if sigma > 0:
            prev = prev + sigma * self._noise(sample, generator, noise)
        return StepOutput(prev_sample=prev, pred_original_sample=x0)

    def __repr__(self) -> str:
        return f"DDIMScheduler({self.config}, eta={self.eta}, num_inference_steps={self.num_inference_steps})"


SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


def make_scheduler(name: str, config: Optional[DDPMSchedulerConfig] = None, eta: float = 0.0) -> Scheduler:
    """Scheduler by name: ``"ddpm"`` (reference, ancestral) or ``"ddim"`` (``eta`` used only there)."""
    key = name.lower() if isinstance(name, str) else name
    require_choice(key, "sampler", sorted(SCHEDULERS))
    if key == "ddim":
        return DDIMScheduler(config, eta=eta)
    return DDPMScheduler(config)
