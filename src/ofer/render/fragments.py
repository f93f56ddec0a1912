"""The output of every rasteriser: which triangle covers each pixel, where, and how deep.

One type for all backends (pytorch3d's ``Fragments``, owned by the rasteriser). Its arrays are of
one library, by backend:

- :mod:`~ofer.render.raster_torch` and :mod:`~ofer.render.raster_gl` rasterise a batch and give
  torch tensors with a leading batch dimension, ``(B, H, W)``, on the screen points' device;
- :mod:`~ofer.render.raster_numpy` (the reference) rasterises one mesh and gives NumPy arrays
  without it, ``(H, W)``.

:meth:`Fragments.as_torch` and :meth:`Fragments.as_numpy` convert between the two (shapes kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

Array = Union[torch.Tensor, np.ndarray]


@dataclass
class Fragments:
    """Per-pixel rasterisation result; ``...`` is ``(B,)`` for torch tensors, ``()`` for NumPy arrays.

    Attributes:
        triangle_id: (..., H, W) int64 index into ``faces``, -1 for background.
        barycentric: (..., H, W, 3) float screen-space weights of the triangle's corners (0 for background).
        depth: (..., H, W) float depth of the closest surface (smaller = closer), +inf for background.
    """

    triangle_id: Array
    barycentric: Array
    depth: Array

    def __post_init__(self) -> None:
        arrays = (self.triangle_id, self.barycentric, self.depth)
        kinds = {isinstance(a, torch.Tensor) for a in arrays}
        if len(kinds) != 1 or not all(isinstance(a, (torch.Tensor, np.ndarray)) for a in arrays):
            raise TypeError(f"Fragments arrays must all be torch tensors or all NumPy arrays, got "
                            f"{', '.join(type(a).__name__ for a in arrays)}")
        shape = tuple(self.triangle_id.shape)
        if len(shape) < 2 or tuple(self.barycentric.shape) != shape + (3,) or tuple(self.depth.shape) != shape:
            raise ValueError(f"Fragments shapes disagree: triangle_id {shape}, barycentric "
                             f"{tuple(self.barycentric.shape)}, depth {tuple(self.depth.shape)}")
        if self.is_torch and len({a.device for a in arrays}) != 1:
            raise ValueError(f"Fragments tensors on several devices: {', '.join(str(a.device) for a in arrays)}")

    @property
    def is_torch(self) -> bool:
        return isinstance(self.triangle_id, torch.Tensor)

    @property
    def mask(self) -> Array:
        """(..., H, W) bool foreground."""
        return self.triangle_id >= 0

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return tuple(int(s) for s in self.triangle_id.shape[-2:])

    @property
    def device(self) -> torch.device:
        """Where the tensors are (``cpu`` for NumPy arrays)."""
        return self.triangle_id.device if self.is_torch else torch.device("cpu")

    def to(self, device: Union[str, torch.device]) -> Fragments:
        """Torch fragments on ``device`` (NumPy fragments become tensors there)."""
        return self.as_torch(device)

    def as_torch(self, device: Union[str, torch.device, None] = None) -> Fragments:
        """Torch tensors (shapes kept), on ``device`` (``None``: where they are, CPU for NumPy)."""
        arrays = (self.triangle_id, self.barycentric, self.depth)
        if not self.is_torch:
            arrays = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        return Fragments(*(a.to(device) if device is not None else a for a in arrays))

    def as_numpy(self) -> Fragments:
        """NumPy arrays (shapes kept; gradients dropped)."""
        if not self.is_torch:
            return self
        return Fragments(*(a.detach().cpu().numpy() for a in (self.triangle_id, self.barycentric, self.depth)))
