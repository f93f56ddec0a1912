"""Diffusion over coefficient vectors: noise schedule, schedulers (DDPM reference, strided DDIM), sampling loop."""

from .sampling import expand_condition, sample
from .schedule import DDPMSchedulerConfig, make_betas, make_timesteps
from .schedulers import DDIMScheduler, DDPMScheduler, Scheduler, StepOutput, make_scheduler

__all__ = [
    "DDIMScheduler",
    "DDPMScheduler",
    "DDPMSchedulerConfig",
    "Scheduler",
    "StepOutput",
    "expand_condition",
    "make_betas",
    "make_scheduler",
    "make_timesteps",
    "sample",
]
