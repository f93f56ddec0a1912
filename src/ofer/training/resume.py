"""``--resume``: which options a resumed run may change, and which it must keep.

A run is resumed from its checkpoint with the weights, optimiser and RNG state it stopped with.
The options in :data:`~.options.RESUME_APPLIED` (epochs, batch size, learning rate, weight decay,
ListNet temperature) may change: the new values are set on the optimiser after its state is
restored (which would otherwise bring back the old ones), printed and logged. Every other recorded
option, the data, the face model, the encoders and the architecture define the network: a change
is refused with one line naming the option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..errors import CheckpointError
from ..runs import (CHECKPOINT_FILE, Checkpoint, RunConfig, changed_options, check_encoders, check_face_model,
                    load_checkpoint)
from .options import RESUME_APPLIED, TrainOptions, flag_of


def _describe(cls: type, changes: dict) -> str:
    return ", ".join(f"{flag_of(cls, k)} {new} (was {old})" for k, (old, new) in changes.items())


def describe_data(record: dict) -> str:
    """A run's data record (``RunConfig.data``) in a few words: each folder's path, kind, size, weight, checksum."""
    folders = record.get("folders") or [record]  # runs saved before multi-folder data had one folder
    parts = []
    for f in folders:
        words = [w for w in (f.get("kind"), f"{f.get('num_samples')} samples",
                             f"weight {f['weight']:g}" if f.get("weight") is not None else None,
                             f"checksum {str(f.get('checksum'))[:12]}") if w]
        parts.append(f"{f.get('path')} ({', '.join(words)})")
    return " + ".join(parts)


def refuse_fixed_changes(cls: type, old: dict, new: dict, where: str | Path) -> None:
    """Refuse a change of any recorded option outside RESUME_APPLIED (``None`` = not resolved yet)."""
    keys = [k for k in new if k in old and k not in RESUME_APPLIED and new[k] is not None]
    changed = changed_options(old, new, keys)
    if changed:
        names = ", ".join(f"{flag_of(cls, k)} (the run has {a}, asked {b})" for k, (a, b) in changed.items())
        raise CheckpointError(f"{where}: --resume cannot change {names}: it defines the network or its data; "
                              f"start a new run with another -o")


def resume_checkpoint(options: TrainOptions) -> Optional[Checkpoint]:
    """The checkpoint to continue (None: a fresh run), checked before any data is read.

    Raises CheckpointError when a run exists without ``--resume``, or when an option that cannot
    change on resume differs from the run's.
    """
    folder = options.folder
    if not (folder / CHECKPOINT_FILE).is_file():
        return None
    if not options.resume:
        raise CheckpointError(f"{folder}: a run already exists; pass --resume to continue it or choose another -o")
    checkpoint = load_checkpoint(folder, options.network)
    missing = [k for k in ("optimizer", "generator", "torch_rng") if k not in checkpoint.payload]
    if missing:
        raise CheckpointError(f"{folder}: exported weights without the training state ({', '.join(missing)}); "
                              "they cannot be resumed: train into another -o")
    refuse_fixed_changes(type(options), checkpoint.config.training, options.record(), folder)
    return checkpoint


def check_resumable(cls: type, checkpoint: Checkpoint, config: RunConfig) -> None:
    """Refuse resuming ``checkpoint`` as ``config``: other options, data, face model, encoders or net."""
    old, where = checkpoint.config, checkpoint.folder
    refuse_fixed_changes(cls, old.training, config.training, where)
    if old.data.get("checksum") != config.data.get("checksum"):
        if len(old.data.get("folders", [None])) == 1 and len(config.data.get("folders", [None])) == 1:
            raise CheckpointError(f"{where}: --resume cannot change --data: {config.data.get('path')} holds other "
                                  f"data (checksum {str(config.data.get('checksum'))[:12]}, the run has "
                                  f"{str(old.data.get('checksum'))[:12]})")
        raise CheckpointError(f"{where}: --resume cannot change --data or --data-weights: the run was trained on "
                              f"{describe_data(old.data)}, asked {describe_data(config.data)}; start a new run "
                              f"with another -o")
    check_face_model(old, config.face_model, where)
    check_encoders(old, config.encoders, where)
    changed = changed_options(old.net, config.net, sorted(set(old.net) | set(config.net)))
    if changed:
        diff = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in changed.items())
        raise CheckpointError(f"{where}: --resume cannot change the network's architecture ({diff})")


def applied_changes(checkpoint: Checkpoint, config: RunConfig) -> dict:
    """``{option: (old, new)}`` of the changed options that a resume applies (epochs not counted)."""
    keys = [k for k in RESUME_APPLIED if k != "epochs" and k in config.training]
    return changed_options(checkpoint.config.training, config.training, keys)


def set_optimizer_options(optimizer: torch.optim.Optimizer, options: TrainOptions) -> None:
    """Put this run's lr and weight decay on every parameter group (after ``load_state_dict``)."""
    for group in optimizer.param_groups:
        group["lr"] = options.lr
        if "weight_decay" in group:
            group["weight_decay"] = options.weight_decay


def announce(options: TrainOptions, changes: dict, epoch: int) -> str:
    """The one line printed when a resume applies changed options."""
    return f"{options.network}: resuming after epoch {epoch} with {_describe(type(options), changes)}"


__all__ = ["announce", "applied_changes", "check_resumable", "describe_data", "refuse_fixed_changes",
           "resume_checkpoint", "set_optimizer_options"]
