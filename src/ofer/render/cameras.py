"""Batched cameras that map world points (metres) to screen points (pixels, depth).

Convention (shared by every rasteriser and shader of :mod:`ofer.render`):

- *World*: y up, +z out of the face (towards a frontal viewer), x towards the subject's left.
- *Camera* (OpenCV): ``X_cam = R @ X_world + T`` with x to the image right, y to the image bottom,
  z forwards (into the scene). A frontal camera has ``R = FRONTAL_R = diag(1, -1, -1)``, so the
  subject's right eye (world -x) appears on the image's left and the nose points at the camera.
- *Screen*: pixel x to the right, pixel y downwards, row 0 at the top, pixel centres at integer + 0.5;
  the third coordinate is a depth in metres along the optical axis (camera z), smaller = closer.
- *View frame* (lighting): x to the image right, y to the image top, z towards the camera; it is
  the world frame for a frontal camera (``view = FRONTAL_R @ R @ world``).

:class:`PerspectiveCameras` is a pinhole (focal length and principal point in pixels);
:class:`WeakPerspectiveCameras` an orthographic projection with a scale in pixels per metre and a
2D translation in pixels. :func:`look_at_face` builds either, looking at the world origin from the
+z side with the head turned by a yaw, pitch and roll.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TensorLike = float | torch.Tensor
FRONTAL_R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
# Height (metres) that fills the image in look_at_face's default framing: the default head from
# chin to crown is about 0.22 m tall (0.26 m with the neck stump).
FACE_FIELD_M = 0.22


def _image_size(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    height, width = (int(s) for s in size)
    return (height, width)


def _batched(value: TensorLike, shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
    """A float tensor with a leading batch dimension: (B, *shape) (gradients are kept)."""
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=dtype)
    if not tensor.is_floating_point():
        tensor = tensor.to(dtype)
    if tensor.ndim == len(shape):
        tensor = tensor.unsqueeze(0)
    return tensor.expand(tensor.shape[0], *shape) if tensor.shape[1:] != shape else tensor


def _broadcast_batch(*tensors: torch.Tensor) -> list[torch.Tensor]:
    batch = max(t.shape[0] for t in tensors)
    for t in tensors:
        if t.shape[0] not in (1, batch):
            raise ValueError(f"camera parameters have incompatible batch sizes {[t.shape[0] for t in tensors]}")
    return [t.expand(batch, *t.shape[1:]) for t in tensors]


class Cameras:
    """Shared part of the camera classes: rotation ``R`` (B,3,3) and ``image_size`` (H, W)."""

    R: torch.Tensor
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return self.R.shape[0]

    def transform_points_view(self, points: torch.Tensor) -> torch.Tensor:
        """World points (B,N,3) -> camera frame (B,N,3) (OpenCV axes, metres)."""
        raise NotImplementedError

    def transform_points_screen(self, points: torch.Tensor) -> torch.Tensor:
        """World points (B,N,3) -> (B,N,3): pixel x, pixel y, depth (metres, smaller = closer)."""
        raise NotImplementedError

    def view_directions(self, points: torch.Tensor) -> torch.Tensor:
        """Unit vectors (B,N,3), world frame, from each point (B,N,3) towards the camera."""
        raise NotImplementedError

    def rotate_to_view(self, vectors: torch.Tensor) -> torch.Tensor:
        """World directions (B,N,3) -> view frame (x image right, y image up, z towards the camera)."""
        rotation = FRONTAL_R.to(vectors) @ self.R.to(vectors)
        return vectors @ rotation.transpose(1, 2)


@dataclass(eq=False)
class PerspectiveCameras(Cameras):
    """Pinhole cameras: ``u = fx * X / Z + cx``, ``v = fy * Y / Z + cy``, depth ``Z`` (camera frame).

    Attributes:
        focal_length: (B, 2) fx, fy in pixels (a float or a (B,) tensor: fx = fy).
        principal_point: (B, 2) cx, cy in pixels (``None``: the image centre).
        R: (B, 3, 3) world-to-camera rotation (``None``: :data:`FRONTAL_R`).
        T: (B, 3) world-to-camera translation in metres (``None``: zeros).
        image_size: (H, W) in pixels (an int: square).

    Points must lie in front of the camera (Z > 0).
    """

    focal_length: TensorLike
    principal_point: TensorLike = None
    R: torch.Tensor = None
    T: torch.Tensor = None
    image_size: tuple[int, int] = (224, 224)

    def __post_init__(self):
        self.image_size = _image_size(self.image_size)
        height, width = self.image_size
        focal = self.focal_length
        focal = focal if isinstance(focal, torch.Tensor) else torch.as_tensor(focal, dtype=torch.float32)
        if focal.ndim <= 1:
            focal = focal.reshape(-1, 1).expand(-1, 2)
        centre = (width / 2, height / 2) if self.principal_point is None else self.principal_point
        rotation = FRONTAL_R if self.R is None else self.R
        translation = torch.zeros(3) if self.T is None else self.T
        self.focal_length, self.principal_point, self.R, self.T = _broadcast_batch(
            _batched(focal, (2,)), _batched(centre, (2,)), _batched(rotation, (3, 3)), _batched(translation, (3,))
        )

    def transform_points_view(self, points: torch.Tensor) -> torch.Tensor:
        return points @ self.R.to(points).transpose(1, 2) + self.T.to(points)[:, None]

    def transform_points_screen(self, points: torch.Tensor) -> torch.Tensor:
        view = self.transform_points_view(points)
        depth = view[..., 2:]
        focal, centre = self.focal_length.to(points)[:, None], self.principal_point.to(points)[:, None]
        pixels = view[..., :2] / depth * focal + centre
        return torch.cat([pixels, depth], -1)

    def camera_center(self) -> torch.Tensor:
        """(B, 3) camera position in the world frame (``-R^T T``)."""
        return -(self.R.transpose(1, 2) @ self.T[..., None])[..., 0]

    def view_directions(self, points: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.camera_center().to(points)[:, None] - points, dim=-1)

    def to(self, *args, **kwargs) -> PerspectiveCameras:
        return PerspectiveCameras(
            *(t.to(*args, **kwargs) for t in (self.focal_length, self.principal_point, self.R, self.T)),
            image_size=self.image_size,
        )


@dataclass(eq=False)
class WeakPerspectiveCameras(Cameras):
    """Orthographic cameras: ``u = s * X + tx``, ``v = s * Y + ty``, depth ``Z`` (camera frame, no T).

    Attributes:
        scale: (B,) pixels per metre.
        translation: (B, 2) pixel position of the world origin (``None``: the image centre).
        R: (B, 3, 3) world-to-camera rotation (``None``: :data:`FRONTAL_R`).
        image_size: (H, W) in pixels (an int: square).
    """

    scale: TensorLike
    translation: TensorLike = None
    R: torch.Tensor = None
    image_size: tuple[int, int] = (224, 224)

    def __post_init__(self):
        self.image_size = _image_size(self.image_size)
        height, width = self.image_size
        centre = (width / 2, height / 2) if self.translation is None else self.translation
        rotation = FRONTAL_R if self.R is None else self.R
        scale = self.scale if isinstance(self.scale, torch.Tensor) else torch.as_tensor(self.scale, dtype=torch.float32)
        scale = scale.reshape(-1, 1)
        scale, self.translation, self.R = _broadcast_batch(
            scale if scale.is_floating_point() else scale.float(), _batched(centre, (2,)), _batched(rotation, (3, 3))
        )
        self.scale = scale[:, 0]

    def transform_points_view(self, points: torch.Tensor) -> torch.Tensor:
        return points @ self.R.to(points).transpose(1, 2)

    def transform_points_screen(self, points: torch.Tensor) -> torch.Tensor:
        view = self.transform_points_view(points)
        pixels = view[..., :2] * self.scale.to(points)[:, None, None] + self.translation.to(points)[:, None]
        return torch.cat([pixels, view[..., 2:]], -1)

    def view_directions(self, points: torch.Tensor) -> torch.Tensor:
        backwards = -self.R.to(points)[:, 2]  # world direction of the camera's -z axis
        return backwards[:, None].expand_as(points)

    def to(self, *args, **kwargs) -> WeakPerspectiveCameras:
        return WeakPerspectiveCameras(
            *(t.to(*args, **kwargs) for t in (self.scale, self.translation, self.R)), image_size=self.image_size
        )


def head_rotation(yaw: TensorLike = 0.0, pitch: TensorLike = 0.0, roll: TensorLike = 0.0) -> torch.Tensor:
    """Rotation (B,3,3) ``Rz(roll) @ Ry(yaw) @ Rx(-pitch)`` of the head about the world origin (degrees).

    Positive yaw turns the nose towards +x (the subject's left, the image's right); positive pitch
    raises the nose; positive roll turns the head counter-clockwise in the image.
    """
    angles = torch.broadcast_tensors(*(torch.as_tensor(a, dtype=torch.float32).reshape(-1) for a in (yaw, pitch, roll)))
    yaw, pitch, roll = (a * (math.pi / 180) for a in angles)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def matrix(rows):
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    ry = matrix([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    rx = matrix([[one, zero, zero], [zero, cp, sp], [zero, -sp, cp]])  # Rx(-pitch)
    rz = matrix([[cr, -sr, zero], [sr, cr, zero], [zero, zero, one]])
    return rz @ ry @ rx


def look_at_face(
    distance: TensorLike = 1.0,
    yaw: TensorLike = 0.0,
    pitch: TensorLike = 0.0,
    roll: TensorLike = 0.0,
    focal: TensorLike = None,
    image_size=224,
    orthographic: bool = False,
) -> Cameras:
    """Cameras on the +z axis looking at the world origin, the head turned by (yaw, pitch, roll) degrees.

    The head rotation :func:`head_rotation` is folded into the camera: ``R = FRONTAL_R @ R_head``,
    ``T = (0, 0, distance)``.

    Args:
        distance: metres from the camera to the origin, float or (B,).
        yaw, pitch, roll: degrees, floats or (B,) tensors.
        focal: focal length in pixels (``None``: :data:`FACE_FIELD_M` metres at the origin fill the
            image height, i.e. ``H * distance / FACE_FIELD_M``).
        image_size: (H, W) or an int.
        orthographic: return :class:`WeakPerspectiveCameras` with scale ``focal / distance`` instead.
    Returns:
        :class:`PerspectiveCameras` or :class:`WeakPerspectiveCameras`, batch B.
    """
    height, width = _image_size(image_size)
    rotation = FRONTAL_R @ head_rotation(yaw, pitch, roll)
    distance = torch.as_tensor(distance, dtype=torch.float32).reshape(-1)
    if focal is None:
        focal = height * distance / FACE_FIELD_M
    focal = torch.as_tensor(focal, dtype=torch.float32).reshape(-1)
    rotation, distance, focal = _broadcast_batch(rotation, distance, focal)
    if orthographic:
        return WeakPerspectiveCameras(scale=focal / distance, R=rotation, image_size=(height, width))
    translation = torch.stack([torch.zeros_like(distance), torch.zeros_like(distance), distance], -1)
    return PerspectiveCameras(focal_length=focal, R=rotation, T=translation, image_size=(height, width))
