"""What every trainer shares: the data (one or more folders) with their face model, the condition
normalisation, and the one place where a :class:`~ofer.runs.RunConfig` is put together."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data.shards import Manifest, ShardDataset
from ..errors import InputError
from ..facemodels import FaceModel, load_face_model_from_record
from ..frontend.landmarker import BLENDSHAPE_NAMES
from ..networks.normalization import ConditionNormalizer, Normalizer, domain_directions
from ..runs import FACE_MODEL_KEYS, RunConfig
from .loop import EpochMix
from .options import TrainOptions


# Manifest kinds whose samples are renders with exact labels (``ofer synth train`` / ``protocol``):
# the render-domain directions of the ArcFace embedding are fitted on these samples only.
RENDER_KINDS = ("train", "protocol")
PHOTO_EXPRESSIONS = ("fit", "mediapipe")  # the expression targets ExpGen can take from photo-domain folders


@dataclass
class DataFolder:
    """One ``--data`` folder: its path, dataset (manifest + shards) and sampling weight (or None)."""

    path: Path
    dataset: ShardDataset = field(repr=False)
    weight: Optional[float] = None

    @property
    def manifest(self) -> Manifest:
        return self.dataset.manifest

    @property
    def num_samples(self) -> int:
        return self.manifest.num_samples

    def record(self) -> dict:
        record = {"path": str(self.path), "kind": self.manifest.kind, "checksum": self.manifest.dataset_checksum(),
                  "num_samples": self.num_samples}
        if self.weight is not None:
            record["weight"] = self.weight
        return record


def _face_model_key(manifest: Manifest) -> dict:
    return {**{k: manifest.face_model.get(k) for k in FACE_MODEL_KEYS},
            "fingerprint": manifest.face_model.get("fingerprint")}


def _short(value) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 else text  # fingerprints and checksums: their first 12 hex digits


def check_same_source(first: DataFolder, other: DataFolder) -> None:
    """Refuse two ``--data`` folders made for other face models or with other encoders (one line)."""
    a, b = _face_model_key(first.manifest), _face_model_key(other.manifest)
    if a != b:
        diff = ", ".join(f"{k} {_short(a[k])} vs {_short(b[k])}" for k in a if a[k] != b[k])
        raise InputError(f"--data {first.path} and {other.path} were made for different face models ({diff}); "
                         f"all folders must share one face model")
    def describe(record) -> str:
        return f"{record.get('name')}/{record.get('dim')}" if isinstance(record, dict) else "none"

    theirs, ours = first.manifest.encoders, other.manifest.encoders
    for role in sorted(set(theirs) | set(ours)):
        x, y = theirs.get(role), ours.get(role)
        if not (isinstance(x, dict) and isinstance(y, dict)) or describe(x) != describe(y):
            raise InputError(f"--data {first.path} and {other.path} have different {role} encoders "
                             f"({describe(x)} vs {describe(y)}); all folders must share their encoders")


@dataclass
class TrainingData:
    """The ``--data`` folders read as one data set, the face model they share, and whole columns.

    Rows are the folders' samples concatenated in the order given (folder 0 first). All folders
    share the face model (fingerprint) and the encoders (:func:`check_same_source`).

    Attributes:
        parts: one :class:`DataFolder` per ``--data`` folder; weights are None (plain
            concatenation) or one positive sampling weight per folder (a single folder has none).
        columns: ``{field: (N, ...) float32}`` for the fields asked for, N = all folders' samples.
    """

    parts: list[DataFolder] = field(repr=False)
    face_model: FaceModel = field(repr=False)
    face_model_info: dict  # the model's full info().to_dict(), with fingerprint and load options
    columns: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, folders, weights: Optional[list[float]] = None) -> "TrainingData":
        """Read the manifests, check that the folders agree, load their face model (no columns yet).

        Args:
            folders: one folder or a list of folders; weights: None or one weight per folder.
        """
        folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
        if not folders:
            raise InputError("--data must name one or more data folders")
        if weights is not None and len(weights) != len(folders):
            raise InputError(f"--data-weights needs one weight per --data folder ({len(folders)} folder(s), "
                             f"got {len(weights)})")
        if len(folders) == 1:
            weights = None  # one folder is the whole epoch whatever its weight
        parts = [DataFolder(f, ShardDataset(f), None if weights is None else float(w))
                 for f, w in zip(folders, weights if weights is not None else [None] * len(folders))]
        for other in parts[1:]:
            check_same_source(parts[0], other)
        model = load_face_model_from_record(parts[0].manifest.face_model)
        info = model.info().to_dict()
        for part in parts:
            part.manifest.check_face_model(info, part.path)
        return cls(parts, model, info)

    @classmethod
    def from_options(cls, options: TrainOptions) -> "TrainingData":
        """:meth:`open` the options' ``--data`` (with ``--data-weights``); refuses domain directions
        without render data before any column is read."""
        data = cls.open(options.data, options.data_weights)
        if options.domain_directions > 0 and not any(k in RENDER_KINDS for k in data.kinds):
            kinds = ", ".join(sorted(set(data.kinds)))
            raise InputError(f"--domain-directions {options.domain_directions} are fitted on render data (kind "
                             f"{' or '.join(RENDER_KINDS)}), but --data has only kind(s) {kinds}; "
                             f"add a render folder or pass --domain-directions 0")
        return data

    @classmethod
    def load(cls, folders, fields: list[str], weights: Optional[list[float]] = None) -> "TrainingData":
        return cls.open(folders, weights).read(fields)

    @property
    def folders(self) -> list[Path]:
        return [p.path for p in self.parts]

    @property
    def folder(self) -> Path:
        """The first folder (the reference of the face model and encoders)."""
        return self.parts[0].path

    @property
    def manifest(self) -> Manifest:
        """The first folder's manifest (all folders share its face model and encoders)."""
        return self.parts[0].manifest

    @property
    def kinds(self) -> list[str]:
        return [p.manifest.kind for p in self.parts]

    @property
    def sizes(self) -> list[int]:
        return [p.num_samples for p in self.parts]

    @property
    def num_samples(self) -> int:
        return sum(self.sizes)

    @property
    def weights(self) -> Optional[list[float]]:
        return None if self.parts[0].weight is None else [p.weight for p in self.parts]

    def read(self, fields: list[str]) -> "TrainingData":
        """Add whole columns of ``fields`` (float32 tensors, all folders concatenated) to :attr:`columns`."""
        columns: dict[str, list] = {f: [] for f in fields}
        for part in self.parts:
            try:
                arrays = part.dataset.arrays(fields)
            except KeyError as exc:
                raise InputError(f"{part.path}: the data (kind {part.manifest.kind!r}) have no field {exc}") from None
            for f in fields:
                column = np.asarray(arrays[f], dtype=np.float32)
                if not np.isfinite(column).all():  # a NaN in one row would make every weight NaN
                    raise InputError(f"{part.path}: damaged data: field {f!r} holds NaN or infinite values")
                columns[f].append(column)
        for f, chunks in columns.items():
            shapes = {c.shape[1:] for c in chunks}
            if len(shapes) > 1:
                raise InputError(f"--data: field {f!r} has shapes {sorted(shapes)} in different folders")
            self.columns[f] = torch.from_numpy(chunks[0] if len(chunks) == 1 else np.concatenate(chunks))
        return self

    def photo_blendshape_expressions(self, expression: torch.Tensor) -> torch.Tensor:
        """(N, E) expressions with the rows of photo-domain folders replaced by MediaPipe's blendshape
        scores of their clean picture (stored ``blendshapes``), name by name; the face model's names
        MediaPipe lacks (the built-in head's ``tongueOut``) and render rows keep ``expression``.

        MediaPipe scores ARKit blendshapes, so this needs a face model with ARKit-named expressions.
        """
        names = list(self.face_model.expression_names)
        pairs = [(i, BLENDSHAPE_NAMES.index(n)) for i, n in enumerate(names) if n in BLENDSHAPE_NAMES]
        if not pairs:
            raise InputError(f"--photo-expression mediapipe needs a face model with ARKit-named expressions "
                             f"(the built-in head); {self.face_model.name!r} names them {names[0]!r}, ...")
        ours, theirs = (torch.tensor(list(c)) for c in zip(*pairs))
        out, start = expression.clone(), 0
        for part in self.parts:
            stop = start + part.num_samples
            if part.manifest.kind not in RENDER_KINDS:
                try:
                    scores = torch.from_numpy(np.asarray(part.dataset.arrays(["blendshapes"])["blendshapes"],
                                                         dtype=np.float32))
                except KeyError:
                    raise InputError(f"{part.path}: the data (kind {part.manifest.kind!r}) have no MediaPipe "
                                     f"blendshapes for --photo-expression mediapipe") from None
                out[start:stop, ours] = scores[:, theirs]
            start = stop
        return out

    def encoders(self, roles: tuple[str, ...]) -> dict:
        """The manifest's record of the encoders of ``roles`` (``{role: {"name", "dim"}}``)."""
        missing = [r for r in roles if r not in self.manifest.encoders]
        if missing:
            raise InputError(f"{self.folder}: the data's manifest does not name its {', '.join(missing)} encoder(s)")
        return {r: self.manifest.encoders[r] for r in roles}

    def checksum(self) -> str:
        """The data's checksum: the folder's own for one folder, else a hash of every folder's and its weight."""
        if len(self.parts) == 1:
            return self.manifest.dataset_checksum()
        items = [[p.manifest.dataset_checksum(), p.weight] for p in self.parts]
        return hashlib.sha256(json.dumps(items).encode()).hexdigest()

    def record(self) -> dict:
        """``RunConfig.data``: the first folder's path (as before), the data's checksum and sample count,
        and every folder's path, kind, checksum, sample count (and weight)."""
        return {"path": str(self.folder), "checksum": self.checksum(), "num_samples": self.num_samples,
                "folders": [p.record() for p in self.parts]}

    def render_rows(self) -> torch.Tensor:
        """(N,) bool: the rows from render folders (:data:`RENDER_KINDS`)."""
        return torch.cat([torch.full((p.num_samples,), p.manifest.kind in RENDER_KINDS) for p in self.parts])

    def mix(self, rows: Optional[torch.Tensor] = None) -> Optional[EpochMix]:
        """The epochs' sampling over all rows (or over the sorted ``rows``): None for plain concatenation."""
        if self.weights is None:
            return None
        sizes = self.sizes if rows is None else self.rows_per_folder(rows)
        return EpochMix.from_weights(sizes, self.weights)

    def rows_per_folder(self, rows: torch.Tensor) -> list[int]:
        """How many of ``rows`` (global row indices) fall in each folder."""
        edges = torch.tensor(np.cumsum([0, *self.sizes]))
        return [int(((rows >= a) & (rows < b)).sum()) for a, b in zip(edges[:-1], edges[1:])]

    def condition_normalizer(self, cond: torch.Tensor, directions: int,
                             rows: Optional[torch.Tensor] = None) -> ConditionNormalizer:
        """Fit the condition normalisation on (N, C) conditions, which start with the identity embedding.

        The render-domain directions are fitted on the rows from render folders only (they describe
        the render domain), the standardisation on all rows. Args: rows: the global row of each
        condition (default: all rows in order).
        """
        identity_dim = int(self.encoders(("identity",))["identity"]["dim"])
        render = self.render_rows() if rows is None else self.render_rows()[rows]
        if directions <= 0 or bool(render.all()):
            return ConditionNormalizer.fit(cond, identity_dim, directions)  # renders only: as before mixing
        if not bool(render.any()):
            raise InputError(f"--domain-directions {directions}: none of the {len(cond)} training conditions comes "
                             f"from a render folder; pass --domain-directions 0")
        found = domain_directions(cond[render, :identity_dim], directions)
        shell = ConditionNormalizer(Normalizer(torch.zeros(cond.shape[1]), torch.ones(cond.shape[1])), found,
                                    identity_dim)
        return ConditionNormalizer(Normalizer.fit(shell.project(cond)), found, identity_dim)


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


__all__ = ["DataFolder", "RENDER_KINDS", "TrainingData", "adamw", "check_same_source", "run_config"]
