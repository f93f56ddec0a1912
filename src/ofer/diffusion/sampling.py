"""The generic reverse-diffusion loop: noise -> coefficients, for any scheduler and denoiser."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from .schedulers import Scheduler, randn

DenoiserFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def expand_condition(cond: Optional[torch.Tensor], batch: int) -> Optional[torch.Tensor]:
    """Repeat a (Bc, C) condition to (batch, C): rows ``i*N .. (i+1)*N - 1`` get condition ``i``.

    ``batch`` must be a multiple of Bc (N = batch // Bc samples per condition).
    """
    if cond is None:
        return None
    if cond.ndim != 2:
        raise ValueError(f"cond must be (B, C), got shape {tuple(cond.shape)}")
    if cond.shape[0] == batch:
        return cond
    if cond.shape[0] == 0 or batch % cond.shape[0] != 0:
        raise ValueError(f"batch {batch} is not a multiple of the {cond.shape[0]} conditions")
    return cond.repeat_interleave(batch // cond.shape[0], dim=0)


def sample(
    denoiser_fn: DenoiserFn,
    scheduler: Scheduler,
    shape: tuple[int, ...],
    cond: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    num_inference_steps: Optional[int] = None,
    *,
    x_T: Optional[torch.Tensor] = None,
    device: Optional[Union[str, torch.device]] = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> torch.Tensor:
    """Draw samples by running the reverse process from Gaussian noise to x0.

    Many samples per condition go in one batch: pass ``cond`` with one row per condition (Bc, C)
    and ``shape = (Bc * N, D)``; the result's rows ``i*N .. (i+1)*N - 1`` belong to condition i
    (``result.view(Bc, N, D)``). The loop runs under ``torch.no_grad()``; put a network in
    ``eval()`` mode first if it has dropout.

    Args:
        denoiser_fn: ``denoiser_fn(x_t (B,D), t (B,) long, cond (B,C) or None) -> (B,D)`` the
            prediction the scheduler expects (the noise, for ``prediction_type="epsilon"``).
        scheduler: a :class:`DDPMScheduler` / :class:`DDIMScheduler`; its ``set_timesteps``
            is called with ``num_inference_steps`` (so the object's schedule changes).
        shape: (B, D) of the result.
        cond: (B, C) or (Bc, C) condition, or ``None`` for an unconditional model.
        generator: the source of all randomness (initial noise and every step's noise);
            the same generator state gives the same samples. Noise is drawn on the generator's
            device and moved to ``device``, so a CPU generator gives the same noise on any device.
        num_inference_steps: ``None`` = all T steps (the reference for DDPM); outside [1, T] a
            one-line :class:`~ofer.config.ConfigError` before any work.
        x_T: optional (B, D) initial noise (then the generator only feeds the steps).
        device: where to sample (default: ``cond``'s device, else ``x_T``'s, else CPU); ``cond``
            and ``x_T`` are moved there, and ``denoiser_fn`` must accept tensors there.
        dtype: dtype of the samples.
        progress: show a tqdm progress bar.
    Returns:
        (B, D) samples x0.
    """
    shape = tuple(int(s) for s in shape)
    if device is None:
        device = cond.device if cond is not None else (x_T.device if x_T is not None else torch.device("cpu"))
    device = torch.device(device)
    batch = shape[0]
    cond = expand_condition(cond, batch)
    if cond is not None:
        cond = cond.to(device)
    scheduler.set_timesteps(num_inference_steps, device=device)
    if x_T is None:
        x = randn(shape, generator, device, dtype)
    else:
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T shape {tuple(x_T.shape)} != {shape}")
        x = x_T.to(device=device, dtype=dtype)
    steps = scheduler.timestep_list  # Python ints: no device read per step
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="sampling", leave=False)
    with torch.no_grad():
        for t in steps:
            t_batch = torch.full((batch,), t, dtype=torch.long, device=device)
            model_output = denoiser_fn(x, t_batch, cond)
            x = scheduler.step(model_output.to(dtype), t, x, generator=generator).prev_sample
    return x
