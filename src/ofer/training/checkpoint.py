"""Checkpoints that know what they were trained for.

A run folder holds one sub-folder per network (``idgen``, ``idrank``, ``expgen``), each with
``last.pt`` (weights, optimiser and RNG state, epoch) and ``config.json`` (the same
:class:`RunConfig`, readable by people). Loading checks the face model (spec name, vertex count,
dimensions) and the encoders against the ones in use and refuses a mismatch with one line.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import CheckpointError

CHECKPOINT_FORMAT = "ofer-checkpoint/1"
NETWORKS = ("idgen", "idrank", "expgen")
CHECKPOINT_FILE = "last.pt"
CONFIG_FILE = "config.json"
FACE_MODEL_KEYS = ("name", "num_vertices", "shape_dim", "expression_dim", "jaw_dim")


@dataclass
class RunConfig:
    """Everything needed to rebuild and validate a trained network.

    Attributes:
        network: ``idgen``, ``idrank`` or ``expgen``.
        face_model: :meth:`FaceModelInfo.to_dict` of the model the targets belong to.
        encoders: ``{"identity": {"name", "dim"}, "appearance": {"name", "dim"}}``.
        net: the network's config dict (``DenoiserConfig`` or ``IdRankConfig``).
        scheduler: the diffusion scheduler's config dict (diffusion networks only).
        normalization: per-dimension statistics: ``target_mean``/``target_std`` (coefficients),
            ``cond_mean``/``cond_std`` (condition), as lists.
        data: where the training data came from (path, checksum, sample count).
        training: hyper-parameters (epochs, batch, lr, seed, ...).
        extra: network-specific settings (e.g. IdRank's vertex subset).
    """

    network: str
    face_model: dict
    encoders: dict
    net: dict
    scheduler: Optional[dict] = None
    normalization: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    format: str = CHECKPOINT_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        return cls(**data)


def network_dir(run: str | Path, network: str) -> Path:
    return Path(run) / network


def _atomic_torch_save(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(folder: str | Path, config: RunConfig, state: dict[str, Any]) -> Path:
    """Write ``last.pt`` (``state`` + config) and ``config.json`` atomically."""
    folder = Path(folder)
    payload = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), **state}
    path = folder / CHECKPOINT_FILE
    _atomic_torch_save(payload, path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".config.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(config.to_dict(), handle, indent=2)
    os.replace(tmp, folder / CONFIG_FILE)
    return path


def load_checkpoint(folder: str | Path, network: Optional[str] = None) -> tuple[RunConfig, dict]:
    """Read ``folder/last.pt``; raise :class:`CheckpointError` if missing, corrupt or of another network."""
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ofer checkpoint")
    try:
        config = RunConfig.from_dict(payload["config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint has a damaged config ({exc})") from None
    if network is not None and config.network != network:
        raise CheckpointError(f"{path}: holds a {config.network} network, expected {network}")
    return config, payload


def check_face_model(config: RunConfig, face_model_info: dict, where: str | Path) -> None:
    """Refuse a checkpoint trained for another face model or other dimensions."""
    theirs = {k: config.face_model.get(k) for k in FACE_MODEL_KEYS}
    ours = {k: face_model_info.get(k) for k in FACE_MODEL_KEYS}
    if theirs != ours:
        diff = ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in FACE_MODEL_KEYS if theirs[k] != ours[k])
        raise CheckpointError(
            f"{where}: trained for face model {config.face_model.get('spec')!r}, not {face_model_info.get('spec')!r} ({diff})"
        )


def check_encoders(config: RunConfig, encoders: dict, where: str | Path, require_all: bool = True) -> None:
    """Refuse a checkpoint whose condition comes from other encoders (names or sizes).

    With ``require_all=False`` only the roles present in ``encoders`` are compared (to check two
    checkpoints against each other).
    """
    for role, wanted in config.encoders.items():
        have = encoders.get(role)
        if have is None and not require_all:
            continue
        if have is None or have.get("name") != wanted.get("name") or have.get("dim") != wanted.get("dim"):
            raise CheckpointError(f"{where}: trained with {role} encoder {wanted}, but this front end gives {have}")


def load_weights(module: torch.nn.Module, payload: dict, where: str | Path) -> torch.nn.Module:
    """Load ``payload["model"]`` into ``module``; a mismatch with the saved architecture is a CheckpointError."""
    try:
        module.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{where}: weights do not match the saved architecture ({str(exc).splitlines()[0]})") from None
    return module

