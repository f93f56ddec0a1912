"""A small epoch loop shared by the three networks: exact resume, JSONL log, loss curve, Ctrl-C.

Exactness: the batch order of epoch ``e`` comes from a generator seeded with ``(seed, e)``, and
the training generator (noise, timesteps) plus torch's global RNG (dropout) are saved in every
checkpoint, so an interrupted run resumed with ``--resume`` continues as if never stopped.
A checkpoint is written atomically after every epoch, so Ctrl-C always leaves a usable one.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from ..errors import CheckpointError
from .checkpoint import CHECKPOINT_FILE, RunConfig, load_checkpoint, save_checkpoint

LOG_FILE = "log.jsonl"
CURVE_FILE = "loss.png"


@dataclass
class LoopSettings:
    epochs: int
    batch_size: int
    seed: int
    resume: bool = False
    progress: bool = True


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
    """Index batches of one epoch, shuffled reproducibly from (seed, epoch); the last one may be short."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_samples, generator=generator)
    for start in range(0, num_samples, batch_size):
        yield order[start : start + batch_size]


def read_log(folder: Path) -> list[dict]:
    path = folder / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curve(folder: Path, title: str) -> None:
    """Write ``loss.png``: mean training loss per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(folder)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], marker="o", markersize=2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / CURVE_FILE)
    plt.close(fig)


def run_epochs(
    folder: Path,
    config: RunConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    num_samples: int,
    train_step: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    settings: LoopSettings,
) -> list[dict]:
    """Train for ``settings.epochs`` epochs (continuing a previous run when ``resume``).

    Args:
        train_step: ``train_step(indices (b,), generator) -> loss`` (scalar, with grad); the loop
            does backward and the optimiser step.
    Returns:
        The whole log (one dict per epoch).
    """
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    start_epoch = 0
    if (folder / CHECKPOINT_FILE).is_file():
        if not settings.resume:
            raise CheckpointError(f"{folder}: a run already exists; pass --resume to continue it or choose another -o")
        _, payload = load_checkpoint(folder, config.network)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        generator.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])
        start_epoch = int(payload["epoch"])
        log = [r for r in read_log(folder) if r["epoch"] <= start_epoch]
        (folder / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in log))
    if start_epoch >= settings.epochs:
        print(f"{folder.name}: already trained for {start_epoch} epochs (asked {settings.epochs}); nothing to do")
        return read_log(folder)
    try:
        for epoch in range(start_epoch + 1, settings.epochs + 1):
            model.train()
            started, total, count = time.perf_counter(), 0.0, 0
            batches = list(epoch_batches(num_samples, settings.batch_size, settings.seed, epoch))
            bar = tqdm(batches, desc=f"{config.network} epoch {epoch}/{settings.epochs}", leave=False,
                       disable=not settings.progress, file=sys.stderr)
            for indices in bar:
                loss = train_step(indices, generator)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise CheckpointError(f"{config.network}: loss became {value} at epoch {epoch}; lower the learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += value * len(indices)
                count += len(indices)
                bar.set_postfix(loss=f"{total / count:.4f}")
            row = {"epoch": epoch, "loss": total / max(1, count), "seconds": round(time.perf_counter() - started, 3)}
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
            }
            with open(folder / LOG_FILE, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            save_checkpoint(folder, config, state)
            if settings.progress:
                print(f"{config.network} epoch {epoch}/{settings.epochs}: loss {row['loss']:.4f} ({row['seconds']:.1f} s)", file=sys.stderr)
    finally:
        plot_loss_curve(folder, f"{config.network} training loss")
    return read_log(folder)
