"""Runs and checkpoints that know what they were trained for (layer 2: used by everything that
loads or writes a checkpoint).

A run folder holds one sub-folder per network (``idgen``, ``idrank``, ``expgen``, ``regressor``,
...), each with ``last.pt`` (weights, optimiser and RNG state, epoch, and the :class:`RunConfig`)
and ``config.json`` (the same config, readable by people). :func:`load_checkpoint` reads a file
once and returns a :class:`Checkpoint`; :func:`check_face_model` and :func:`check_encoders` are
the only places where a checkpoint is compared with the face model and encoders in use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from .config import Config, ConfigError, require
from .errors import CheckpointError
from .io.atomic import torch_save, write_text

CHECKPOINT_FORMAT = "ofer-checkpoint/1"
CHECKPOINT_FILE = "last.pt"
CONFIG_FILE = "config.json"
FACE_MODEL_KEYS = ("name", "num_vertices", "shape_dim", "expression_dim", "jaw_dim")


@dataclass
class RunConfig(Config):
    """Everything needed to rebuild and validate a trained network.

    Attributes:
        network: the network's name (``idgen``, ``idrank``, ``expgen``, ``regressor``, ...).
        face_model: :meth:`FaceModelInfo.to_dict` of the model the targets belong to, with its
            ``fingerprint`` (see :meth:`FaceModel.fingerprint`).
        encoders: ``{"identity": {"name", "dim"}, "appearance": {"name", "dim"}}`` (roles used).
        net: the network's config dict (``DenoiserConfig``, ``IdRankConfig``, ...).
        scheduler: the diffusion scheduler's config dict (diffusion networks only).
        normalization: per-dimension statistics of targets and conditions, as lists.
        data: where the training data came from (path, checksum, sample count).
        training: hyper-parameters (epochs, batch, lr, seed, ...).
        extra: network-specific settings (e.g. IdRank's vertex subset and candidate sampler).
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

    def validate(self) -> None:
        require(isinstance(self.network, str) and bool(self.network), "run config: network must be a name")
        require(self.format == CHECKPOINT_FORMAT, f"run config: unknown format {self.format!r}")


@dataclass
class Checkpoint:
    """One checkpoint file, read once: its config, the raw payload (weights, optimiser, ...) and path."""

    path: Path
    config: RunConfig
    payload: dict = field(repr=False)

    @property
    def folder(self) -> Path:
        return self.path.parent


def network_dir(run: str | Path, network: str) -> Path:
    return Path(run) / network


def save_checkpoint(folder: str | Path, config: RunConfig, state: dict[str, Any]) -> Path:
    """Write ``last.pt`` (``state`` + config) and ``config.json`` atomically."""
    folder = Path(folder)
    payload = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), **state}
    path = torch_save(payload, folder / CHECKPOINT_FILE)
    write_text(folder / CONFIG_FILE, json.dumps(config.to_dict(), indent=2))
    return path


def read_payload(path: str | Path) -> Any:
    """A torch file's contents (tensors and plain types only); CheckpointError if missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(exc).__name__})") from None


def load_checkpoint(folder: str | Path, network: Optional[str] = None) -> Checkpoint:
    """Read ``folder/last.pt``; raise :class:`CheckpointError` if missing, corrupt or of another network."""
    path = Path(folder) / CHECKPOINT_FILE
    payload = read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ofer checkpoint")
    try:
        config = RunConfig.from_dict(payload.get("config"), where=str(path))
    except ConfigError as exc:
        raise CheckpointError(f"damaged config: {exc}") from None
    if network is not None and config.network != network:
        raise CheckpointError(f"{path}: holds the {config.network} network, expected {network}")
    return Checkpoint(path, config, payload)


def check_face_model(config: RunConfig, face_model_info: dict, where: str | Path) -> None:
    """Refuse a checkpoint trained for another face model: other dimensions or other content.

    ``face_model_info`` is ``FaceModelInfo.to_dict()`` with ``fingerprint``; a checkpoint or data
    record that lacks a fingerprint is refused too (it cannot prove which model it was made for).
    """
    theirs = {k: config.face_model.get(k) for k in FACE_MODEL_KEYS}
    ours = {k: face_model_info.get(k) for k in FACE_MODEL_KEYS}
    if theirs != ours:
        diff = ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in FACE_MODEL_KEYS if theirs[k] != ours[k])
        theirs_spec, ours_spec = config.face_model.get("spec"), face_model_info.get("spec")
        model = f"another version of face model {ours_spec!r}" if theirs_spec == ours_spec else \
            f"face model {theirs_spec!r}, not {ours_spec!r}"
        raise CheckpointError(f"{where}: trained for {model} ({diff})")
    check_fingerprint(config.face_model, face_model_info, where)


def check_fingerprint(record: dict, face_model_info: dict, where: str | Path, what: str = "trained") -> None:
    """Refuse ``record`` (a stored face-model record) whose fingerprint differs from the model in use."""
    theirs, ours = record.get("fingerprint"), face_model_info.get("fingerprint")
    if theirs is None:
        raise CheckpointError(f"{where}: {what} without a face-model fingerprint; cannot check that it matches "
                              f"{face_model_info.get('spec')!r} (re-create it with this version)")
    if ours is not None and theirs != ours:
        raise CheckpointError(f"{where}: {what} for a different {face_model_info.get('spec')!r} face model "
                              f"(fingerprint {str(theirs)[:12]} vs {str(ours)[:12]}: same dimensions, other content)")


def encoder_mismatch(wanted: dict, have: dict, require_all: bool = True) -> Optional[tuple[str, dict, Optional[dict]]]:
    """The first role whose encoder record (name, dim) in ``have`` differs from ``wanted``, as
    ``(role, wanted_record, have_record)``; ``None`` when they agree. The one encoder comparison.

    With ``require_all=False`` a role missing from ``have`` is not a mismatch.
    """
    for role, want in wanted.items():
        got = have.get(role)
        if got is None and not require_all:
            continue
        if got is None or got.get("name") != want.get("name") or got.get("dim") != want.get("dim"):
            return role, want, got
    return None


def check_encoders(config: RunConfig, encoders: dict, where: str | Path, require_all: bool = True) -> None:
    """Refuse a checkpoint whose condition comes from other encoders (names or sizes).

    With ``require_all=False`` only the roles present in ``encoders`` are compared (to check two
    checkpoints against each other).
    """
    mismatch = encoder_mismatch(config.encoders, encoders, require_all)
    if mismatch:
        role, wanted, have = mismatch
        raise CheckpointError(f"{where}: trained with {role} encoder {wanted}, but this front end gives {have}")


def load_weights(module: torch.nn.Module, checkpoint: Checkpoint) -> torch.nn.Module:
    """Load the checkpoint's weights into ``module``; a mismatch with the saved architecture is a CheckpointError."""
    try:
        module.load_state_dict(checkpoint.payload["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{checkpoint.path}: weights do not match the saved architecture "
                              f"({str(exc).splitlines()[0]})") from None
    return module


def build_config(cls, data: dict, checkpoint: Checkpoint, what: str = "net"):
    """``cls.from_dict(data)`` with a config error reported as a CheckpointError naming the file."""
    try:
        return cls.from_dict(data, where=f"{checkpoint.path} ({what})")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def changed_options(old: dict, new: dict, keys) -> dict:
    """``{key: (old, new)}`` for the ``keys`` whose values differ (for ``--resume`` checks)."""
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


__all__ = ["CHECKPOINT_FILE", "CONFIG_FILE", "Checkpoint", "RunConfig", "build_config", "changed_options",
           "check_encoders", "check_face_model", "encoder_mismatch", "check_fingerprint", "load_checkpoint", "load_weights",
           "network_dir", "read_payload", "save_checkpoint"]
