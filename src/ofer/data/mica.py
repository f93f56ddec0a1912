"""Reader for the MICA/OFER real-data layout (FLAME-registered photo datasets).

Layout (as used by MICA and the OFER authors)::

    ROOT/image_paths/<DATASET>.npy   pickled dict: actor -> (image paths, FLAME parameter file),
                                     both relative to ROOT/<DATASET>/
    ROOT/<DATASET>/...               images: aligned crops as .jpg/.png, or as .npy arrays (H, W, 3)
    ROOT/<DATASET>/....npz           FLAME parameters: 'betas' (300 shape [+ 100 expression]), or
                                     'shape' / 'exp' / 'pose' (pose[3:6] is the jaw rotation)

Images saved as ``.npy`` by the authors' scripts are BGR by accident; pass ``npy_is_bgr=True``
(the default) to get RGB, as everything in ofer expects.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..frontend.image import load_image
from ..io.safe_pickle import load_numpy

NUM_FLAME_SHAPE = 300


@dataclass
class MicaRecord:
    dataset: str
    actor: str
    image: Path
    params: Path


def read_index(root: Path, dataset: str) -> list[MicaRecord]:
    """All (image, parameter file) pairs of one dataset of a MICA-layout folder."""
    index_path = root / "image_paths" / f"{dataset}.npy"
    if not index_path.is_file():
        raise InputError(f"{root}: no index {index_path.relative_to(root)} for dataset {dataset!r}")
    try:
        table = load_numpy(index_path)
        table = table.item() if isinstance(table, np.ndarray) else table
    except (ValueError, OSError, pickle.UnpicklingError) as exc:
        raise InputError(f"{index_path}: unreadable index ({exc})") from None
    if not isinstance(table, dict):
        raise InputError(f"{index_path}: expected a dict actor -> (images, parameters)")
    records = []
    for actor in sorted(table):
        images, params = table[actor]
        for image in images:
            records.append(MicaRecord(dataset, str(actor), root / dataset / image, root / dataset / params))
    return records


def read_flame_params(path: Path, shape_dim: int = NUM_FLAME_SHAPE, expression_dim: int = 50) -> dict[str, np.ndarray]:
    """Shape (S,), expression (E,) and jaw (3,) coefficients from a FLAME parameter npz."""
    if not path.is_file():
        raise InputError(f"{path}: parameter file not found")
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        if "betas" in keys:
            betas = data["betas"].reshape(-1).astype(np.float32)
            shape = betas[:NUM_FLAME_SHAPE]
            expression = betas[NUM_FLAME_SHAPE:]
        elif "shape" in keys:
            shape = data["shape"].reshape(-1).astype(np.float32)
            expression = data["exp"].reshape(-1).astype(np.float32) if "exp" in keys else np.zeros(0, np.float32)
        else:
            raise InputError(f"{path}: no 'betas' or 'shape' key (has {sorted(keys)})")
        jaw = data["pose"].reshape(-1)[3:6].astype(np.float32) if "pose" in keys else np.zeros(3, np.float32)
    return {
        "shape": _fit(shape, shape_dim),
        "expression": _fit(expression, expression_dim),
        "jaw": jaw,
    }


def _fit(vector: np.ndarray, dim: int) -> np.ndarray:
    out = np.zeros(dim, np.float32)
    out[: min(dim, len(vector))] = vector[:dim]
    return out


def read_image(path: Path, npy_is_bgr: bool = True) -> np.ndarray:
    """An RGB uint8 image from .jpg/.png or .npy (float images in [0,1] or [0,255] accepted)."""
    if path.suffix == ".npy":
        if not path.is_file():
            raise InputError(f"{path}: image not found")
        array = np.load(path)
        if array.ndim == 3 and array.shape[0] == 3 and array.shape[2] != 3:
            array = array.transpose(1, 2, 0)
        if array.dtype != np.uint8:
            array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(array[..., ::-1] if npy_is_bgr else array)
    return load_image(path)


class MicaDataset(Dataset):
    """Images and FLAME coefficients of one or more datasets in the MICA layout."""

    def __init__(
        self,
        root: str | Path,
        datasets: list[str],
        shape_dim: int = NUM_FLAME_SHAPE,
        expression_dim: int = 50,
        npy_is_bgr: bool = True,
        transform: Optional[callable] = None,
    ):
        self.root = Path(root)
        self.records = [r for name in datasets for r in read_index(self.root, name)]
        self.shape_dim, self.expression_dim = shape_dim, expression_dim
        self.npy_is_bgr = npy_is_bgr
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        image = read_image(record.image, self.npy_is_bgr)
        params = read_flame_params(record.params, self.shape_dim, self.expression_dim)
        sample = {"image": image, **{k: torch.from_numpy(v) for k, v in params.items()}, "actor": record.actor}
        return self.transform(sample) if self.transform else sample
