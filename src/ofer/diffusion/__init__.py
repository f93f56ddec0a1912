"""Diffusion over coefficient vectors: noise schedulers (DDPM reference, strided DDIM) and the sampling loop."""

from .sampling import expand_condition, sample
from .schedulers import (
    DDIMScheduler,
    DDPMScheduler,
    DDPMSchedulerConfig,
    Scheduler,
    StepOutput,
    make_scheduler,
    make_timesteps,
)

__all__ = [
    "DDIMScheduler",
    "DDPMScheduler",
    "DDPMSchedulerConfig",
    "Scheduler",
    "StepOutput",
    "expand_condition",
    "make_scheduler",
    "make_timesteps",
    "sample",
]
