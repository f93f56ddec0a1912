"""Noise schedulers for the coefficient diffusion models (diffusers style).

A scheduler is a small object, separate from the network, that knows the noise schedule
and turns a network prediction into the next, less noisy sample::

    sched = DDPMScheduler(DDPMSchedulerConfig())      # T = 1000, linear betas 1e-4 .. 1e-2
    x_t = sched.add_noise(x0, noise, t)               # training: x0 (B,D), noise (B,D), t (B,) long
    sched.set_timesteps(None)                         # sampling: None = all T steps
    for t in sched.timesteps:                         # descending, e.g. 999, 998, ..., 0
        eps = net(x, t.expand(B), cond)
        x = sched.step(eps, t, x, generator=g).prev_sample

Conventions (the same as diffusers and Ho et al. 2020, with 0-based indices):

- ``alphas_cumprod[t] = prod_{i<=t} (1 - betas[i])`` for t = 0 .. T-1; index ``t`` is the noise
  level of ``x_t``. The clean data is the level "-1", whose ``alpha_bar`` is 1.
- ``add_noise``: ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``.
- ``step`` goes from timestep ``t`` to the *previous timestep of the current schedule*
  (``t - stride`` for evenly spaced schedules, ``t - 1`` with all T steps); after the last
  timestep of the schedule it returns the clean sample (``alpha_bar_prev = 1``), and that
  final step adds no noise.

Schedule tables are kept in float64; per-step coefficients are cast to the sample's dtype.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Union

import torch

from ..errors import CheckpointError

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES = ("fixed_small", "fixed_large")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")

TimestepLike = Union[int, torch.Tensor]


@dataclass
class DDPMSchedulerConfig:
    """Noise schedule and parametrisation shared by every scheduler (saved next to a checkpoint).

    Attributes:
        num_train_timesteps: T, the number of diffusion steps used in training (1000).
        beta_start, beta_end: first and last beta of the schedule (1e-4, 1e-2: OFER's values).
        beta_schedule: ``"linear"`` (betas evenly spaced, the paper's), ``"scaled_linear"``
            (evenly spaced square roots) or ``"cosine"`` (Nichol & Dhariwal; ignores beta_start/end).
        prediction_type: what the network predicts: ``"epsilon"`` (the noise; the paper's),
            ``"sample"`` (x0) or ``"v_prediction"`` (v = sqrt(ab) eps - sqrt(1-ab) x0).
        clip_sample: if set, the predicted x0 is clamped to [-clip_sample, clip_sample] in
            every sampling step (``None``: no clamping; coefficients are not bounded).
        variance_type: variance of the ancestral DDPM step: ``"fixed_small"`` (the posterior
            variance beta_tilde, default) or ``"fixed_large"`` (beta_t). See :class:`DDPMScheduler`.
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

    def __post_init__(self):
        if int(self.num_train_timesteps) < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {self.num_train_timesteps}")
        self.num_train_timesteps = int(self.num_train_timesteps)
        for name, value, allowed in (
            ("beta_schedule", self.beta_schedule, BETA_SCHEDULES),
            ("prediction_type", self.prediction_type, PREDICTION_TYPES),
            ("variance_type", self.variance_type, VARIANCE_TYPES),
            ("timestep_spacing", self.timestep_spacing, TIMESTEP_SPACINGS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not (0.0 < self.beta_start <= self.beta_end < 1.0):
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")
        if self.clip_sample is not None and not self.clip_sample > 0:
            raise ValueError(f"clip_sample must be positive or None, got {self.clip_sample}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DDPMSchedulerConfig":
        """Build from a dict; keys starting with ``_`` (metadata) are ignored, others must be known."""
        known = {f.name for f in fields(cls)}
        unknown = [k for k in data if k not in known and not k.startswith("_")]
        if unknown:
            raise ValueError(f"unknown scheduler config keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Union[str, Path]) -> None:
        """Write the config as JSON."""
        Path(path).write_text(json.dumps({"_class_name": type(self).__name__, **self.to_dict()}, indent=2) + "\n")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "DDPMSchedulerConfig":
        """Read a config written by :meth:`save` (raises ``CheckpointError`` on a bad file)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return cls.from_dict(data)
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"cannot read scheduler config {path}: {exc}") from exc


@dataclass
class StepOutput:
    """Result of one sampling step.

    Attributes:
        prev_sample: (B, ...) the sample at the previous timestep (the clean sample after the last step).
        pred_original_sample: (B, ...) the network's estimate of x0 at this step (after clipping).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def make_betas(config: DDPMSchedulerConfig) -> torch.Tensor:
    """(T,) float64 betas of the configured schedule."""
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


def make_timesteps(num_train_timesteps: int, num_inference_steps: Optional[int], spacing: str) -> torch.Tensor:
    """Descending (n,) long timesteps for a sampler that takes n steps out of T.

    - ``"linspace"`` (default): ``round(linspace(T-1, 0, n))`` -- starts at the noisiest level
      T-1 and makes its last network call at t = 0, strides as even as integers allow.
    - ``"leading"``: ``k * (T // n)`` for k = n-1 .. 0 (diffusers' default; ends at 0 but starts
      below T-1, e.g. 980 for n = 50).
    - ``"trailing"``: ``round(T - k * T / n) - 1`` for k = 0 .. n-1 (starts at T-1, last call at
      T/n - 1, e.g. 19 for n = 50).

    With n = T all three are T-1, ..., 0. ``None`` means n = T.
    """
    T = int(num_train_timesteps)
    n = T if num_inference_steps is None else int(num_inference_steps)
    if not 1 <= n <= T:
        raise ValueError(f"num_inference_steps must be in [1, {T}], got {num_inference_steps}")
    if spacing == "linspace":
        ts = torch.linspace(T - 1, 0, n, dtype=torch.float64).round().long() if n > 1 else torch.tensor([T - 1])
    elif spacing == "leading":
        ts = torch.arange(n - 1, -1, -1, dtype=torch.long) * (T // n)
    elif spacing == "trailing":
        ts = (torch.round(T - torch.arange(n, dtype=torch.float64) * (T / n)) - 1).long()
    else:
        raise ValueError(f"timestep spacing must be one of {TIMESTEP_SPACINGS}, got {spacing!r}")
    if ts.unique().numel() != n:  # cannot happen for n <= T, kept as a guard
        raise ValueError(f"{spacing!r} spacing produced repeated timesteps for n={n}, T={T}")
    return ts


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
        self._prev: dict[int, int] = {}
        self.set_timesteps(None)

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    # -- sampling schedule -------------------------------------------------------------
    def set_timesteps(self, num_inference_steps: Optional[int] = None, device: Union[str, torch.device] = "cpu"):
        """Choose the sampling timesteps (``None``: all T). Sets ``self.timesteps`` (n,) long, descending."""
        ts = make_timesteps(self.num_train_timesteps, num_inference_steps, self.config.timestep_spacing)
        self.num_inference_steps = int(ts.numel())
        self.timesteps = ts.to(device)
        order = ts.tolist()
        self._prev = {t: (order[i + 1] if i + 1 < len(order) else -1) for i, t in enumerate(order)}

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
    def _gather(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=table.device).long().reshape(-1)
        if t.numel() == 1 and like.shape[0] != 1:
            t = t.expand(like.shape[0])
        if t.numel() != like.shape[0]:
            raise ValueError(f"t has {t.numel()} entries for a batch of {like.shape[0]}")
        if int(t.min()) < 0 or int(t.max()) >= self.num_train_timesteps:
            raise ValueError(f"timesteps must be in [0, {self.num_train_timesteps}), got {t.min()}..{t.max()}")
        out = table[t].to(device=like.device, dtype=like.dtype)
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
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
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
    key = name.lower()
    if key not in SCHEDULERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {sorted(SCHEDULERS)}")
    if key == "ddim":
        return DDIMScheduler(config, eta=eta)
    return DDPMScheduler(config)
