"""Sharded sample storage: reproducible ``.npz`` shards, a JSON manifest, and a PyTorch dataset.

A data folder holds ``manifest.json`` and ``shard_XXXXX.npz`` files. Each shard stores one array
per field with the samples stacked along axis 0. Shards are written atomically (temporary file +
rename) with fixed zip timestamps, so the same content always gives the same bytes, and a re-run
can skip every shard that already exists.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError

MANIFEST = "manifest.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.npz"


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write ``arrays`` as an ``.npz`` (readable by ``np.load``) atomically and byte-reproducibly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
            for key in sorted(arrays):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read a whole ``.npz``; a missing or damaged file raises :class:`InputError` naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: damaged shard ({exc})") from None


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
    name: str
    start: int
    count: int
    checksum: str


@dataclass
class Manifest:
    """What a data folder holds and how it was made."""

    kind: str  # "train" or "protocol"
    generator_version: str
    face_model: dict
    seed: int
    num_samples: int
    shard_size: int
    config: dict
    encoders: dict = field(default_factory=dict)
    shards: list[ShardRecord] = field(default_factory=list)

    @property
    def num_shards(self) -> int:
        return (self.num_samples + self.shard_size - 1) // self.shard_size

    def shard_range(self, index: int) -> tuple[int, int]:
        start = index * self.shard_size
        return start, min(self.shard_size, self.num_samples - start)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=2, sort_keys=True)
        os.replace(tmp, folder / MANIFEST)

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise InputError(f"{folder}: not a data folder (no {MANIFEST})")
        try:
            raw = json.loads(path.read_text())
            raw["shards"] = [ShardRecord(**s) for s in raw.get("shards", [])]
            return cls(**raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"{path}: damaged manifest ({exc})") from None

    def same_recipe(self, other: "Manifest") -> bool:
        """True when ``other`` would generate the same data (so finished shards can be reused)."""
        keys = ("kind", "generator_version", "face_model", "seed", "num_samples", "shard_size", "config")

        def as_json(manifest):  # tuples and lists compare equal once written as JSON
            return json.dumps({k: getattr(manifest, k) for k in keys}, sort_keys=True)

        return as_json(self) == as_json(other)

    def dataset_checksum(self) -> str:
        digest = hashlib.sha256()
        for record in sorted(self.shards, key=lambda r: r.start):
            digest.update(record.checksum.encode())
        return digest.hexdigest()


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
        arrays = read_npz(self.folder / shard_name(index))
        if self.fields is not None:
            unknown = [f for f in self.fields if f not in arrays]
            if unknown:
                raise InputError(f"{self.folder}: field(s) {unknown} not in the data (have {sorted(arrays)})")
            arrays = {k: arrays[k] for k in self.fields}
        self._cache[index] = arrays
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return arrays

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
            data = read_npz(self.folder / shard_name(index))
            for f in parts:
                parts[f].append(data[f])
        return {f: np.concatenate(v) for f, v in parts.items()}
