"""What every trainer shares: the data with its face model, the condition normalisation, and the
one place where a :class:`~ofer.runs.RunConfig` is put together."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data.shards import Manifest, ShardDataset
from ..errors import InputError
from ..facemodels import FaceModel, load_face_model_from_record
from ..networks.normalization import ConditionNormalizer
from ..runs import RunConfig
from .options import TrainOptions


@dataclass
class TrainingData:
    """A data folder's manifest, the face model it was made with, and whole columns as float32 tensors.

    Attributes:
        columns: ``{field: (N, ...) float32}`` for the fields asked for.
    """

    folder: Path
    dataset: ShardDataset = field(repr=False)
    face_model: FaceModel = field(repr=False)
    face_model_info: dict  # the model's full info().to_dict(), with fingerprint and load options
    columns: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, folder: str | Path) -> "TrainingData":
        """Read the manifest, load its face model and check that they match (no columns yet)."""
        folder = Path(folder)
        dataset = ShardDataset(folder)
        model = load_face_model_from_record(dataset.manifest.face_model)
        info = model.info().to_dict()
        dataset.manifest.check_face_model(info, folder)
        return cls(folder, dataset, model, info)

    @classmethod
    def load(cls, folder: str | Path, fields: list[str]) -> "TrainingData":
        return cls.open(folder).read(fields)

    @property
    def manifest(self) -> Manifest:
        return self.dataset.manifest

    def read(self, fields: list[str]) -> "TrainingData":
        """Add whole columns of ``fields`` (float32 tensors) to :attr:`columns`; returns self."""
        arrays = self.dataset.arrays(fields)
        self.columns.update({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()})
        return self

    def encoders(self, roles: tuple[str, ...]) -> dict:
        """The manifest's record of the encoders of ``roles`` (``{role: {"name", "dim"}}``)."""
        missing = [r for r in roles if r not in self.manifest.encoders]
        if missing:
            raise InputError(f"{self.folder}: the data's manifest does not name its {', '.join(missing)} encoder(s)")
        return {r: self.manifest.encoders[r] for r in roles}

    def record(self) -> dict:
        return {"path": str(self.folder), "checksum": self.manifest.dataset_checksum(),
                "num_samples": self.manifest.num_samples}

    def condition_normalizer(self, cond: torch.Tensor, directions: int) -> ConditionNormalizer:
        """Fit the condition normalisation on (N, C) conditions, which start with the identity embedding."""
        identity_dim = int(self.encoders(("identity",))["identity"]["dim"])
        return ConditionNormalizer.fit(cond, identity_dim, directions)


def run_config(options: TrainOptions, data: TrainingData, roles: tuple[str, ...], net, normalization: dict,
               scheduler=None, extra: Optional[dict] = None, **record) -> RunConfig:
    """The :class:`RunConfig` of a trainer's run (the one helper all trainers use).

    Args:
        net: the network's config (a ``Config`` with ``to_dict``); scheduler: likewise or None.
        record: options resolved by the trainer (e.g. default widths), stored over ``options.record()``.
    """
    return RunConfig(
        network=options.network,
        face_model=data.face_model_info,
        encoders=data.encoders(roles),
        net=net.to_dict(),
        scheduler=scheduler.to_dict() if scheduler is not None else None,
        normalization=normalization,
        data=data.record(),
        training={**options.record(), **record},
        extra=dict(extra or {}),
    )


def adamw(model: torch.nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)


__all__ = ["TrainingData", "adamw", "run_config"]
