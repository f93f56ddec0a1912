"""Pictures for FOCUS and other image-based trainers: the engines' occluded pictures at a small size,
their 68 landmarks and (for supervised variants and evaluation only) the visible-face mask.

The engines frame every picture alike (the detector box spans :data:`~ofer.frontend.align.BOX_FRACTION`
of the width), so a picture is only resized (area averaging) to ``size``; no further alignment.
Landmarks are either MediaPipe's on the occluded picture itself (``mediapipe``, the faithful
weakly supervised default: pictures where it finds no face are dropped and counted) or the data's
``landmarks2d`` (``oracle``: exact for renders, the clean picture's fit for photos). They are detected
once and cached next to the run (``landmarks_<source>.npz``, keyed by the data's checksum).
The visible-face mask is ``silhouette`` (the photo engine's fitted face region) and not
``occluder_mask``; render folders have no silhouette, hence no mask.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from ..data.shards import unpack_bits
from ..errors import InputError
from ..io.atomic import save_npz
from .common import TrainingData

LANDMARK_SOURCES = ("mediapipe", "oracle")


@dataclass
class PictureSet:
    """images: (N, 3, s, s) uint8; landmarks: (N, 68, 2) float32 pixels at size s; visible: (N, 1, s, s)
    bool or None; rows: (N,) the data rows kept; dropped: rows without landmarks."""

    images: torch.Tensor
    landmarks: torch.Tensor
    visible: Optional[torch.Tensor]
    rows: torch.Tensor
    dropped: int

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: torch.Tensor, device: torch.device):
        """(images (b, 3, s, s) float in [0, 1], landmarks (b, 68, 2), visible (b, 1, s, s) float or None)."""
        images = self.images[indices].to(device).float() / 255.0
        visible = None if self.visible is None else self.visible[indices].to(device).float()
        return images, self.landmarks[indices].to(device), visible


class PictureSampler:
    """Batches of a :class:`PictureSet` without replacement, reshuffled (``generator``) whenever a pass ends;
    its state (generator, order, position) goes into a checkpoint so a resumed run draws the same batches."""

    def __init__(self, pictures: PictureSet, seed: int):
        self.pictures, self.generator = pictures, torch.Generator().manual_seed(seed)
        self.order, self.position = torch.zeros(0, dtype=torch.long), 0

    def next(self, batch_size: int, device: torch.device):
        """The next batch: :meth:`PictureSet.batch` of at most ``batch_size`` pictures."""
        count = min(batch_size, len(self.pictures))
        if self.position + count > len(self.order):
            self.order, self.position = torch.randperm(len(self.pictures), generator=self.generator), 0
        indices = self.order[self.position : self.position + count]
        self.position += count
        return self.pictures.batch(indices, device)

    def state(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"], int(state["position"])


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def _visible(arrays: dict, k: int, height: int, width: int, size: int) -> np.ndarray:
    face = unpack_bits(arrays["silhouette"][k], width)
    hidden = unpack_bits(arrays["occluder_mask"][k], width)
    visible = (face & ~hidden).astype(np.float32)
    return _resize(visible, size) >= 0.5


def detect_landmarks(images: list[np.ndarray], progress: bool) -> np.ndarray:
    """(N, 68, 2) MediaPipe landmarks (NaN where no face)."""
    from ..frontend import ibug68_from_mediapipe
    from ..frontend.landmarker import default_landmarker

    landmarker = default_landmarker()
    out = np.full((len(images), 68, 2), np.nan, np.float32)
    for i, image in enumerate(tqdm(images, desc="landmarks", disable=not progress, leave=False, file=sys.stderr)):
        found = landmarker.detect(image)
        if found is not None:
            out[i] = ibug68_from_mediapipe(found.points)[:, :2]
    return out


def _cached_landmarks(path: Path, checksum: str, images: list[np.ndarray], progress: bool) -> np.ndarray:
    if path.is_file():
        try:
            with np.load(path) as cached:
                if str(cached["checksum"]) == checksum and len(cached["landmarks"]) == len(images):
                    return cached["landmarks"]
        except (OSError, KeyError, ValueError):
            pass  # damaged or stale: detect again
    landmarks = detect_landmarks(images, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, landmarks=landmarks, checksum=np.array(checksum))
    return landmarks


def load_pictures(data: TrainingData, size: int, landmarks: str = "mediapipe", cache: Optional[Path] = None,
                  with_visible: bool = False, progress: bool = True) -> PictureSet:
    """Every row of ``data`` as a :class:`PictureSet` at ``size`` px.

    Args:
        landmarks: :data:`LANDMARK_SOURCES`; cache: folder of the MediaPipe landmark cache (None: none).
        with_visible: also the ground-truth visible-face masks (photo-domain folders only).
    """
    if landmarks not in LANDMARK_SOURCES:
        raise InputError(f"--landmarks must be one of {', '.join(LANDMARK_SOURCES)}, got {landmarks!r}")
    if with_visible:
        lacking = [str(p.path) for p in data.parts if "silhouette" not in p.dataset.read_shard(0)]
        if lacking:
            raise InputError(f"{lacking[0]}: no face silhouette stored, so no ground-truth visible-face mask "
                             f"(use photo-domain data, ofer synth photo)")
    pictures, small, oracle, visible = [], [], [], []
    for part in data.parts:
        for index in range(part.manifest.num_shards):
            arrays = part.dataset.read_shard(index)
            height, width = arrays["image"].shape[1:3]
            for k in range(len(arrays["image"])):
                image = arrays["image"][k]
                if landmarks == "mediapipe":
                    pictures.append(image)
                small.append(_resize(image, size))
                oracle.append(arrays["landmarks2d"][k] * (size / width))
                if with_visible:
                    visible.append(_visible(arrays, k, height, width, size))
    if landmarks == "mediapipe":
        path = None if cache is None else cache / "landmarks_mediapipe.npz"
        found = _cached_landmarks(path, data.checksum(), pictures, progress) if path else detect_landmarks(pictures, progress)
        full = pictures[0].shape[1] if pictures else size
        points = found * (size / full)
    else:
        points = np.stack(oracle).astype(np.float32) if oracle else np.zeros((0, 68, 2), np.float32)
    keep = np.flatnonzero(np.isfinite(points).all((1, 2)))
    images = torch.from_numpy(np.stack(small)[keep]).permute(0, 3, 1, 2).contiguous()
    mask = torch.from_numpy(np.stack(visible)[keep])[:, None] if with_visible else None
    return PictureSet(images, torch.from_numpy(points[keep].astype(np.float32)), mask,
                      torch.from_numpy(keep), int(len(points) - len(keep)))


__all__ = ["LANDMARK_SOURCES", "PictureSampler", "PictureSet", "detect_landmarks", "load_pictures"]
