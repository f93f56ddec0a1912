"""Sharded sample storage: reproducible ``.npz`` shards, a JSON manifest, and a PyTorch dataset.

A data folder holds ``manifest.json`` and ``shard_XXXXX.npz`` files. Each shard stores one array
per field with the samples stacked along axis 0. Shards are written atomically
(:func:`ofer.io.atomic.atomic_path`) with fixed zip timestamps, so the same content always gives
the same bytes, and a re-run can skip every shard that already exists. The manifest records the
recipe, the seed, the face model (with its fingerprint) and the encoders;
:meth:`Manifest.check_face_model` is the one check that data match the face model in use.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import Config, ConfigError, require, require_int
from ..errors import CheckpointError, InputError
from ..io.atomic import atomic_path, write_text
from ..io.numpy_files import NPZ_ERRORS, numpy_error
from ..runs import FACE_MODEL_KEYS, check_fingerprint

MANIFEST = "manifest.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
EMBEDDING_FIELDS = {"identity": "arcface", "appearance": "appearance"}  # encoder role -> its shard field


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.npz"


def code_fields(jaw_dim: int) -> list[str]:
    """The stored fields whose concatenation is a face model's code: ``expression`` (E,), then ``jaw``
    (jaw_dim,) for models with a jaw (see ``FaceModel.split_code``)."""
    return ["expression", "jaw"] if jaw_dim else ["expression"]


def stored_code(columns: dict, jaw_dim: int):
    """The (B, code_dim) codes of stored rows: the :func:`code_fields` columns concatenated
    (numpy arrays or torch tensors, as given)."""
    parts = [columns[name] for name in code_fields(jaw_dim)]
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts, dim=-1) if torch.is_tensor(parts[0]) else np.concatenate(parts, axis=-1)


def pack_bits(mask: np.ndarray) -> np.ndarray:
    """Boolean mask (..., L) -> packed uint8 bits (..., ceil(L / 8)) (how masks are stored)."""
    return np.packbits(mask.astype(bool), axis=-1)


def unpack_bits(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` along the last axis (``count`` = original length)."""
    return np.unpackbits(packed, axis=-1, count=count).astype(bool)


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write ``arrays`` as an ``.npz`` (readable by ``np.load``) atomically and byte-reproducibly."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read a whole ``.npz``; a missing or damaged file raises :class:`InputError` naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except NPZ_ERRORS as exc:
        raise InputError(f"{path}: damaged shard ({numpy_error(exc)})") from None


def check_shard(arrays: dict[str, np.ndarray], path: str | Path, count: int) -> dict[str, np.ndarray]:
    """``arrays`` if it is a shard of ``count`` samples: every field numeric (or boolean) with ``count``
    rows; otherwise :class:`InputError` naming the file and the field (a shard edited or damaged
    after it was made would else misalign the samples of its fields)."""
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise InputError(f"{path}: damaged shard (field {key!r} is not numeric: dtype {array.dtype})")
        if array.ndim == 0 or len(array) != count:
            rows = "no rows" if array.ndim == 0 else f"{len(array)} rows"
            raise InputError(f"{path}: damaged shard (field {key!r} has {rows}, the manifest says {count})")
    return arrays


def read_shard(path: str | Path, count: int) -> dict[str, np.ndarray]:
    """:func:`read_npz` of a shard that must hold ``count`` samples (:func:`check_shard`)."""
    return check_shard(read_npz(path), path, count)


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the arrays' names, dtypes, shapes and bytes (independent of file encoding)."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def stack_samples(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack per-sample dicts (same keys) into per-field arrays with a leading sample axis."""
    return {key: np.stack([np.asarray(s[key]) for s in samples]) for key in samples[0]}


@dataclass
class ShardRecord:
    """One finished shard: file name, first sample, sample count, :func:`arrays_checksum`, and the
    engine's counters of how its samples were made (e.g. the photo engine's rejections)."""

    name: str
    start: int
    count: int
    checksum: str
    stats: dict = field(default_factory=dict)


@dataclass
class Manifest(Config):
    """What a data folder holds and how it was made (``manifest.json``).

    Attributes:
        kind: ``"train"`` or ``"protocol"``.
        generator_version: the data engine that made the samples.
        face_model: ``FaceModelInfo.to_dict()`` of the model, with ``fingerprint`` and ``options``.
        seed, num_samples, shard_size: sample ``i`` is drawn from ``(seed, i)`` and stored in
            shard ``i // shard_size``.
        config: the recipe (``SynthConfig.to_dict()``).
        encoders: ``{"identity": {"name", "dim"}, "appearance": {"name", "dim"}}`` of the embeddings.
        shards: one :class:`ShardRecord` per finished shard.
        stats: the engine's counters summed over the finished shards (see :func:`sum_stats`).
    """

    kind: str
    generator_version: str
    face_model: dict
    seed: int
    num_samples: int
    shard_size: int
    config: dict
    encoders: dict = field(default_factory=dict)
    shards: list[ShardRecord] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(isinstance(self.shards, list), "manifest: shards must be a list")
        self.shards = [s if isinstance(s, ShardRecord) else ShardRecord(**s) for s in self.shards]
        super().__post_init__()

    def validate(self) -> None:
        require(isinstance(self.kind, str) and bool(self.kind), f"manifest: kind must be a name, got {self.kind!r}")
        for name in ("face_model", "config", "encoders", "stats"):
            require(isinstance(getattr(self, name), dict), f"manifest: {name} must be a mapping")
        require_int(self.seed, "manifest: seed", 0)
        require_int(self.num_samples, "manifest: num_samples", 1)
        require_int(self.shard_size, "manifest: shard_size", 1)

    @property
    def num_shards(self) -> int:
        return (self.num_samples + self.shard_size - 1) // self.shard_size

    def shard_range(self, index: int) -> tuple[int, int]:
        start = index * self.shard_size
        return start, min(self.shard_size, self.num_samples - start)

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/manifest.json`` atomically."""
        return write_text(Path(folder) / MANIFEST, json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        """Read ``folder/manifest.json``; InputError when it is missing or damaged."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise InputError(f"{folder}: not a data folder (no {MANIFEST})")
        try:
            return cls.from_dict(json.loads(path.read_text()), where="manifest")
        except UnicodeDecodeError:
            raise InputError(f"{path}: damaged manifest (not JSON text)") from None
        except (json.JSONDecodeError, ConfigError, OSError) as exc:
            raise InputError(f"{path}: damaged manifest ({exc})") from None

    def same_recipe(self, other: "Manifest") -> bool:
        """True when ``other`` would generate the same data (so finished shards can be reused)."""
        keys = ("kind", "generator_version", "face_model", "seed", "num_samples", "shard_size", "config", "encoders")

        def as_json(manifest):  # tuples and lists compare equal once written as JSON
            return json.dumps({k: getattr(manifest, k) for k in keys}, sort_keys=True)

        return as_json(self) == as_json(other)

    def check_face_model(self, face_model_info: dict, where: str | Path) -> None:
        """Refuse data made for another face model than ``face_model_info`` (``FaceModelInfo.to_dict()``).

        Other dimensions, or the same dimensions with another fingerprint (or none stored), raise
        a one-line :class:`InputError` that starts with ``where`` (e.g. the data folder).
        """
        theirs = {k: self.face_model.get(k) for k in FACE_MODEL_KEYS}
        ours = {k: face_model_info.get(k) for k in FACE_MODEL_KEYS}
        if theirs != ours:
            diff = ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in FACE_MODEL_KEYS if theirs[k] != ours[k])
            raise InputError(f"{where}: data made for face model {self.face_model.get('spec')!r}, "
                             f"not {face_model_info.get('spec')!r} ({diff})")
        try:
            check_fingerprint(self.face_model, face_model_info, where, what="data made")
        except CheckpointError as exc:
            raise InputError(str(exc)) from None

    def dataset_checksum(self) -> str:
        digest = hashlib.sha256()
        for record in sorted(self.shards, key=lambda r: r.start):
            digest.update(record.checksum.encode())
        return digest.hexdigest()


def sum_stats(records: Iterable[ShardRecord]) -> dict:
    """The counters of ``records`` summed key by key (nested dicts of numbers are summed alike)."""
    total: dict = {}
    for record in records:
        _add_counts(total, record.stats)
    return total


def _add_counts(total: dict, counts: dict) -> None:
    for key, value in counts.items():
        if isinstance(value, dict):
            _add_counts(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value


class ShardDataset(Dataset):
    """Samples of a data folder as dicts of tensors.

    Args:
        folder: a folder with ``manifest.json`` and shards.
        fields: the fields to load (default: all); images are large, so training code should
            ask only for what it needs (e.g. ``("shape", "arcface")``).
        cache_shards: how many decoded shards to keep in memory.
    """

    def __init__(self, folder: str | Path, fields: Optional[Iterable[str]] = None, cache_shards: int = 4):
        self.folder = Path(folder)
        self.manifest = Manifest.load(self.folder)
        self.fields = tuple(fields) if fields is not None else None
        self.cache_shards = cache_shards
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        missing = [shard_name(i) for i in range(self.manifest.num_shards) if not (self.folder / shard_name(i)).is_file()]
        if missing:
            raise InputError(f"{self.folder}: incomplete data, missing {len(missing)} shard(s) such as {missing[0]}")

    def __len__(self) -> int:
        return self.manifest.num_samples

    def _shard(self, index: int) -> dict[str, np.ndarray]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        arrays = self.read_shard(index)
        if self.fields is not None:
            unknown = [f for f in self.fields if f not in arrays]
            if unknown:
                raise InputError(f"{self.folder}: field(s) {unknown} not in the data (have {sorted(arrays)})")
            arrays = {k: arrays[k] for k in self.fields}
        self._cache[index] = arrays
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return arrays

    def read_shard(self, index: int) -> dict[str, np.ndarray]:
        """Every field of shard ``index`` (checked, not cached): for readers that stream a folder shard by shard."""
        return read_shard(self.folder / shard_name(index), self.manifest.shard_range(index)[1])


    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        shard = self._shard(i // self.manifest.shard_size)
        offset = i % self.manifest.shard_size
        return {k: torch.from_numpy(np.asarray(v[offset])) for k, v in shard.items()}

    def arrays(self, fields: Iterable[str]) -> dict[str, np.ndarray]:
        """Whole columns (N, ...) of the given fields, concatenated over all shards."""
        parts: dict[str, list] = {f: [] for f in fields}
        for index in range(self.manifest.num_shards):
            data = self.read_shard(index)
            for f in parts:
                parts[f].append(data[f])
        return {f: np.concatenate(v) for f, v in parts.items()}
