"""Where a mesh sits in a photo: head pose and camera, in the OpenCV convention.

A :class:`Placement` maps a mesh in the face model's frame (the frame of the written ``.ply`` files,
metres) to pixels::

    X_cam = R @ X + t                     # rotation (3, 3), translation (3,) metres; x right, y down, z forward
    perspective:       [u, v, 1] ~ K @ X_cam                  (u = fx X/Z + cx, v = fy Y/Z + cy)
    weak-perspective:  [u, v] = K[:2, :2] @ X_cam[:2] + K[:2, 2]   (t = 0; fx = fy = pixels per metre)

Pixel centres lie at integer + 0.5, row 0 at the top (as in :mod:`ofer.render.cameras`), so
``cv2.projectPoints(X, cv2.Rodrigues(R)[0], t, K, None)`` gives the same pixels in the
perspective case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..render.cameras import PerspectiveCameras, WeakPerspectiveCameras

PROJECTIONS = ("perspective", "weak-perspective")


@dataclass
class Placement:
    """Poses and cameras of B meshes in one image.

    Attributes:
        rotation: (B, 3, 3) model-to-camera rotation.
        translation: (B, 3) metres (zeros for weak perspective).
        intrinsics: (B, 3, 3) ``K``: fx, fy, cx, cy in pixels (weak perspective: pixels per metre).
        projection: ``perspective`` or ``weak-perspective``.
        image_size: (H, W) pixels.
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    intrinsics: torch.Tensor
    projection: str
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return self.rotation.shape[0]

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) model-frame points -> camera frame (B, N, 3)."""
        return points @ self.rotation.to(points).transpose(1, 2) + self.translation.to(points)[:, None]

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) model-frame points (metres) -> (B, N, 2) pixels."""
        return project(points, self.rotation, self.translation, self.intrinsics, self.projection)

    def cameras(self) -> PerspectiveCameras | WeakPerspectiveCameras:
        """The renderer's cameras for this placement (render the model-frame mesh with them)."""
        k = self.intrinsics.float()
        if self.projection == "perspective":
            return PerspectiveCameras(focal_length=torch.stack([k[:, 0, 0], k[:, 1, 1]], -1),
                                      principal_point=k[:, :2, 2], R=self.rotation.float(),
                                      T=self.translation.float(), image_size=self.image_size)
        return WeakPerspectiveCameras(scale=k[:, 0, 0], translation=k[:, :2, 2], R=self.rotation.float(),
                                      image_size=self.image_size)

    def select(self, index) -> "Placement":
        """The placements ``index`` (an int, slice or index tensor), batch kept."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Placement(self.rotation[index], self.translation[index], self.intrinsics[index], self.projection,
                         self.image_size)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """float64 arrays for ``params.npz``: ``{prefix}rotation`` (B,3,3), ``translation`` (B,3) and
        ``intrinsics`` (B,3,3)."""
        return {f"{prefix}rotation": self.rotation.detach().cpu().double().numpy(),
                f"{prefix}translation": self.translation.detach().cpu().double().numpy(),
                f"{prefix}intrinsics": self.intrinsics.detach().cpu().double().numpy()}

    @classmethod
    def from_arrays(cls, arrays, projection: str, image_size, prefix: str = "") -> "Placement":
        get = lambda key: torch.as_tensor(np.asarray(arrays[f"{prefix}{key}"]), dtype=torch.float64)  # noqa: E731
        return cls(get("rotation"), get("translation"), get("intrinsics"), projection, tuple(image_size))


def project(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, intrinsics: torch.Tensor,
            projection: str = "perspective") -> torch.Tensor:
    """(B, N, 3) points -> (B, N, 2) pixels with (B,3,3) R, (B,3) t, (B,3,3) K (see the module docstring)."""
    cam = points @ rotation.to(points).transpose(1, 2) + translation.to(points)[:, None]
    k = intrinsics.to(points)
    if projection == "perspective":
        xy = cam[..., :2] / cam[..., 2:].clamp(min=1e-6)
    elif projection == "weak-perspective":
        xy = cam[..., :2]
    else:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    return xy @ k[:, :2, :2].transpose(1, 2) + k[:, None, :2, 2]


def intrinsics_matrix(fx: torch.Tensor, fy: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
    """(B,) focal lengths and principal point -> (B, 3, 3) ``K``."""
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([torch.stack([fx, zero, cx], -1), torch.stack([zero, fy, cy], -1),
                        torch.stack([zero, zero, one], -1)], -2)


def rotation_angle_deg(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Geodesic angle (degrees) between rotations (..., 3, 3): ``arccos((tr(A^T B) - 1) / 2)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    trace = np.einsum("...ij,...ij->...", a, b)
    return np.degrees(np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0)))
