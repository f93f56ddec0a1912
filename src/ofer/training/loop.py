"""A small epoch loop shared by every trainer: exact resume, JSONL log, loss curve, Ctrl-C.

Exactness: the batch order of epoch ``e`` comes from a CPU generator seeded with ``(seed, e)``,
and the training generator (noise, timesteps; always on the CPU, so a run draws the same numbers
on any device) plus torch's RNGs (dropout) are saved in every checkpoint, so an interrupted run
resumed with ``--resume`` continues as if never stopped. A checkpoint is written atomically after
every epoch, so Ctrl-C always leaves a usable one. See :mod:`.resume` for what may change.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from tqdm import tqdm

from ..errors import CheckpointError
from ..io.atomic import save_figure, write_text
from ..runs import Checkpoint, RunConfig, load_weights, save_checkpoint
from .options import TrainOptions
from .resume import announce, applied_changes, check_resumable, set_optimizer_options

LOG_FILE = "log.jsonl"
CURVE_FILE = "loss.png"

TrainStep = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class EpochMix:
    """How an epoch samples data folders with weights (``--data-weights``), rows concatenated folder by folder.

    Attributes:
        sizes: rows per folder; quotas: rows drawn from each folder per epoch. A folder whose quota
            exceeds its size is repeated (each row ``quota // size`` or one more times), one whose
            quota is smaller is subsampled afresh every epoch; the drawn rows are then shuffled.
    """

    sizes: tuple[int, ...]
    quotas: tuple[int, ...]

    @classmethod
    def from_weights(cls, sizes, weights, total: Optional[int] = None) -> "EpochMix":
        """Quotas proportional to ``weights`` that sum to ``total`` (default: all rows, the length of a
        plain concatenation), by largest remainder; an empty folder gets none, a weighted one at least 1."""
        sizes = tuple(int(n) for n in sizes)
        total = sum(sizes) if total is None else int(total)
        live = [float(w) if n > 0 else 0.0 for n, w in zip(sizes, weights)]
        whole = sum(live)
        raw = [total * w / whole for w in live]
        quotas = [int(math.floor(r)) for r in raw]
        by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - quotas[i]), i))
        for i in by_remainder[: total - sum(quotas)]:
            quotas[i] += 1
        quotas = [max(q, 1) if w > 0 else 0 for q, w in zip(quotas, live)]
        return cls(sizes, tuple(quotas))

    @property
    def num_samples(self) -> int:
        return sum(self.quotas)

    def order(self, generator: torch.Generator) -> torch.Tensor:
        """The rows of one epoch (CPU, long), drawn and shuffled with ``generator``."""
        parts, offset = [], 0
        for size, quota in zip(self.sizes, self.quotas):
            if quota:
                repeats = -(-quota // size)
                rows = torch.cat([torch.randperm(size, generator=generator) for _ in range(repeats)])[:quota]
                parts.append(rows + offset)
            offset += size
        rows = torch.cat(parts)
        return rows[torch.randperm(len(rows), generator=generator)]


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int,
                  mix: Optional[EpochMix] = None) -> Iterator[torch.Tensor]:
    """Index batches (CPU, long) of one epoch, shuffled reproducibly from (seed, epoch); the last may be short.

    ``mix``: the folders' sampling shares (None: every one of ``num_samples`` rows once).
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if mix is None:
        order = torch.randperm(num_samples, generator=generator)
    else:
        order = mix.order(generator)
        num_samples = len(order)
    for start in range(0, num_samples, batch_size):
        yield order[start : start + batch_size]


def read_log(folder: Path) -> list[dict]:
    """The rows of ``folder``'s log; a torn last line (a kill or a full disk during the append) is
    dropped, any other unreadable line is a :class:`CheckpointError`."""
    path = folder / LOG_FILE
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "epoch" not in row:
            if number == len(lines):
                break
            raise CheckpointError(f"{path}: line {number} is not a log row; remove the file to start its log afresh")
        rows.append(row)
    return rows


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
    save_figure(folder / CURVE_FILE, fig)
    plt.close(fig)


def _rng_state(device: torch.device) -> dict:
    state = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def _restore(checkpoint: Checkpoint, model, optimizer, generator: torch.Generator, device: torch.device) -> int:
    """Load weights, optimiser and RNG states; returns the epoch the checkpoint ended."""
    payload = checkpoint.payload
    load_weights(model, checkpoint)
    optimizer.load_state_dict(payload["optimizer"])
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in payload:
        torch.cuda.set_rng_state(payload["cuda_rng"], device)
    return int(payload["epoch"])


def _start(folder: Path, config: RunConfig, model, optimizer, generator, options: TrainOptions,
           checkpoint: Optional[Checkpoint], device: torch.device) -> tuple[int, dict]:
    """(epoch to continue after, {option: (old, new)} applied) for a fresh or resumed run."""
    if checkpoint is None:
        (folder / LOG_FILE).unlink(missing_ok=True)
        return 0, {}
    check_resumable(type(options), checkpoint, config)
    start_epoch = _restore(checkpoint, model, optimizer, generator, device)
    changes = applied_changes(checkpoint, config)
    set_optimizer_options(optimizer, options)  # load_state_dict brought back the old lr
    log = [r for r in read_log(folder) if r["epoch"] <= start_epoch]
    write_text(folder / LOG_FILE, "".join(json.dumps(r) + "\n" for r in log))
    if changes and start_epoch < options.epochs:
        print(announce(options, changes, start_epoch), file=sys.stderr)
    return start_epoch, changes


def run_epochs(config: RunConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer, num_samples: int,
               train_step: TrainStep, options: TrainOptions, checkpoint: Optional[Checkpoint] = None,
               device: torch.device = torch.device("cpu"), mix: Optional[EpochMix] = None) -> list[dict]:
    """Train for ``options.epochs`` epochs into ``options.folder`` (continuing ``checkpoint`` if given).

    Args:
        model: already on ``device``; optimizer: over its parameters.
        train_step: ``train_step(indices (b,) CPU long, generator (CPU)) -> loss`` (scalar, with
            grad); the loop does backward and the optimiser step.
        checkpoint: the run to continue (from :func:`~.resume.resume_checkpoint`), or None.
        mix: how an epoch samples the data folders (``TrainingData.mix``; None: each row once).
    Returns:
        The whole log (one dict per epoch: epoch, loss, seconds, lr; ``resumed`` on the first
        epoch after a resume that changed options).
    """
    folder = options.folder
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(options.seed)
    torch.manual_seed(options.seed)
    start_epoch, changes = _start(folder, config, model, optimizer, generator, options, checkpoint, device)
    if start_epoch >= options.epochs:
        print(f"{folder.name}: already trained for {start_epoch} epochs (asked {options.epochs}); nothing to do")
        return read_log(folder)
    try:
        for epoch in range(start_epoch + 1, options.epochs + 1):
            row = _epoch(config, model, optimizer, num_samples, train_step, options, generator, epoch, mix)
            if changes:
                row["resumed"] = {k: [a, b] for k, (a, b) in changes.items()}
                changes = {}
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "generator": generator.get_state(), **_rng_state(device), "epoch": epoch}
            with open(folder / LOG_FILE, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            save_checkpoint(folder, config, state)
            if options.progress:
                print(f"{config.network} epoch {epoch}/{options.epochs}: loss {row['loss']:.4f} "
                      f"({row['seconds']:.1f} s)", file=sys.stderr)
    finally:
        plot_loss_curve(folder, f"{config.network} training loss")
    return read_log(folder)


def _epoch(config: RunConfig, model, optimizer, num_samples: int, train_step: TrainStep, options: TrainOptions,
           generator: torch.Generator, epoch: int, mix: Optional[EpochMix] = None) -> dict:
    """One pass over the data; returns its log row."""
    model.train()
    started, total, count = time.perf_counter(), 0.0, 0
    batches = list(epoch_batches(num_samples, options.batch_size, options.seed, epoch, mix))
    bar = tqdm(batches, desc=f"{config.network} epoch {epoch}/{options.epochs}", leave=False,
               disable=not options.progress, file=sys.stderr)
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
    return {"epoch": epoch, "loss": total / max(1, count), "seconds": round(time.perf_counter() - started, 3),
            "lr": optimizer.param_groups[0]["lr"]}


__all__ = ["CURVE_FILE", "EpochMix", "LOG_FILE", "epoch_batches", "plot_loss_curve", "read_log", "run_epochs"]
