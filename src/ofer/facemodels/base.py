"""The face-model interface shared by every backend (FLAME, generic npz, built-in head).

A face model maps coefficients to a mesh in metres::

    out = model(shape, expression, pose)   # shape (B,S), expression (B,E), pose (B,P) or None
    out.vertices                           # (B,V,3)
    out.landmarks68, out.landmarks7        # (B,68,3), (B,7,3)

Landmarks are stored as a barycentric embedding (triangle index + 3 weights) so they
follow every deformation of the surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

# The NoW challenge's 7 landmarks, as indices into the iBUG 68-point convention:
# right-eye outer, right-eye inner, left-eye inner, left-eye outer, nose bottom,
# right mouth corner, left mouth corner ("right" = the subject's right).
NOW7_FROM_68 = (36, 39, 42, 45, 33, 48, 54)


@dataclass
class FaceModelOutput:
    """Result of a face-model forward pass (all in metres).

    Attributes:
        vertices: (B, V, 3) mesh vertices.
        landmarks68: (B, 68, 3) iBUG-68 landmarks on the surface (``None`` when the model
            has no landmark embedding).
        landmarks7: (B, 7, 3) NoW landmarks (see ``NOW7_FROM_68``), or ``None``.
        joints: (B, J, 3) posed joint locations, for skinned models; ``None`` otherwise.
    """

    vertices: torch.Tensor
    landmarks68: Optional[torch.Tensor]
    landmarks7: Optional[torch.Tensor]
    joints: Optional[torch.Tensor] = None


@dataclass
class PriorSample:
    """Random coefficients drawn from a face model's prior.

    Attributes:
        shape: (N, S) identity coefficients.
        expression: (N, E) expression coefficients (zeros when neutral).
        pose: (N, P) pose parameters (zeros: frontal, jaw closed).
    """

    shape: torch.Tensor
    expression: torch.Tensor
    pose: torch.Tensor


def vertices_to_landmarks(
    vertices: torch.Tensor, faces: torch.Tensor, lmk_faces_idx: torch.Tensor, lmk_bary: torch.Tensor
) -> torch.Tensor:
    """Interpolate surface points from their barycentric embedding.

    Args:
        vertices: (B, V, 3).
        faces: (F, 3) long.
        lmk_faces_idx: (L,) long, triangle of each landmark.
        lmk_bary: (L, 3) barycentric weights.
    Returns:
        (B, L, 3) landmark positions.
    """
    corners = vertices[:, faces[lmk_faces_idx]]  # (B, L, 3 corners, 3 xyz)
    return torch.einsum("blkc,lk->blc", corners, lmk_bary.to(vertices.dtype))


@dataclass
class FaceModelInfo:
    """Static description of a face model, for `ofer info`, checkpoints and configs."""

    spec: str
    name: str
    num_vertices: int
    num_faces: int
    shape_dim: int
    expression_dim: int
    pose_dim: int
    jaw_dim: int
    shape_names: list[str] = field(default_factory=list)
    expression_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "spec": self.spec,
            "name": self.name,
            "num_vertices": self.num_vertices,
            "num_faces": self.num_faces,
            "shape_dim": self.shape_dim,
            "expression_dim": self.expression_dim,
            "pose_dim": self.pose_dim,
            "jaw_dim": self.jaw_dim,
        }


class FaceModel(nn.Module):
    """Base class: holds the topology, landmark embedding and face-region mask as buffers.

    Subclasses implement :meth:`deform` (coefficients -> vertices, joints) and
    :meth:`sample_prior`. Dimensions:

    - ``shape_dim`` (S): identity coefficients.
    - ``expression_dim`` (E): expression coefficients.
    - ``pose_dim`` (P): pose parameters accepted by ``forward`` (axis-angle, 3 per joint).
    - ``jaw_dim``: how many entries of ``pose`` are the jaw rotation (FLAME: 3, linear models: 0).
      OFER's expression generator predicts ``expression_dim + jaw_dim`` numbers.
    """

    name: str = "face-model"

    def __init__(
        self,
        spec: str,
        faces: torch.Tensor,
        lmk_faces_idx: Optional[torch.Tensor],
        lmk_bary: Optional[torch.Tensor],
        front_mask: torch.Tensor,
        shape_dim: int,
        expression_dim: int,
        pose_dim: int,
        jaw_dim: int = 0,
        shape_names: Optional[list[str]] = None,
        expression_names: Optional[list[str]] = None,
    ):
        super().__init__()
        if lmk_faces_idx is None or lmk_bary is None:
            lmk_faces_idx, lmk_bary = torch.zeros(0, dtype=torch.long), torch.zeros(0, 3)
        elif lmk_faces_idx.shape != (68,) or lmk_bary.shape != (68, 3):
            raise ValueError(
                f"landmark embedding must hold 68 points, got {tuple(lmk_faces_idx.shape)} / {tuple(lmk_bary.shape)}"
            )
        self.spec = spec
        self.shape_dim = int(shape_dim)
        self.expression_dim = int(expression_dim)
        self.pose_dim = int(pose_dim)
        self.jaw_dim = int(jaw_dim)
        self.shape_names = list(shape_names or [f"shape{i:03d}" for i in range(shape_dim)])
        self.expression_names = list(expression_names or [f"expr{i:03d}" for i in range(expression_dim)])
        self.register_buffer("faces", faces.long(), persistent=False)
        self.register_buffer("lmk_faces_idx", lmk_faces_idx.long(), persistent=False)
        self.register_buffer("lmk_bary", lmk_bary.float(), persistent=False)
        self.register_buffer("front_mask", front_mask.bool(), persistent=False)

    # -- to implement -------------------------------------------------------------------
    def deform(
        self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Return (vertices (B,V,3), joints (B,J,3) or None)."""
        raise NotImplementedError

    def sample_prior(
        self, n: int, generator: Optional[torch.Generator] = None, expression: bool = False
    ) -> PriorSample:
        """Draw ``n`` random coefficient sets (neutral expression unless ``expression``)."""
        raise NotImplementedError

    def clamp_coefficients(self, shape: torch.Tensor, expression: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip generated coefficients to the model's valid range (default: unchanged)."""
        return shape, expression

    # -- shared ---------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        raise NotImplementedError

    @property
    def has_landmarks(self) -> bool:
        return self.lmk_faces_idx.numel() == 68

    @property
    def dtype(self) -> torch.dtype:
        return self.lmk_bary.dtype

    @property
    def device(self) -> torch.device:
        return self.lmk_bary.device

    def info(self) -> FaceModelInfo:
        return FaceModelInfo(
            spec=self.spec,
            name=self.name,
            num_vertices=self.num_vertices,
            num_faces=int(self.faces.shape[0]),
            shape_dim=self.shape_dim,
            expression_dim=self.expression_dim,
            pose_dim=self.pose_dim,
            jaw_dim=self.jaw_dim,
            shape_names=self.shape_names,
            expression_names=self.expression_names,
        )

    def _check_coefficients(self, name: str, value: Optional[torch.Tensor], dim: int, batch: int) -> torch.Tensor:
        if value is None:
            return torch.zeros(batch, dim, dtype=self.dtype, device=self.device)
        if value.ndim != 2 or value.shape[1] != dim:
            raise ValueError(f"{name} must have shape (B, {dim}) for {self.spec}, got {tuple(value.shape)}")
        return value.to(device=self.device, dtype=self.dtype)

    def forward(
        self,
        shape: Optional[torch.Tensor] = None,
        expression: Optional[torch.Tensor] = None,
        pose: Optional[torch.Tensor] = None,
    ) -> FaceModelOutput:
        """Evaluate the model.

        Args:
            shape: (B, S) identity coefficients (``None``: zeros).
            expression: (B, E) expression coefficients (``None``: zeros).
            pose: (B, P) pose parameters (``None``: zeros, i.e. frontal with the jaw closed).
        Returns:
            :class:`FaceModelOutput` with vertices (B, V, 3) in metres and landmarks.
        """
        batch = next((t.shape[0] for t in (shape, expression, pose) if t is not None), 1)
        shape = self._check_coefficients("shape", shape, self.shape_dim, batch)
        expression = self._check_coefficients("expression", expression, self.expression_dim, batch)
        pose = self._check_coefficients("pose", pose, self.pose_dim, batch)
        if not (shape.shape[0] == expression.shape[0] == pose.shape[0]):
            raise ValueError("shape, expression and pose must have the same batch size")
        vertices, joints = self.deform(shape, expression, pose)
        if not self.has_landmarks:
            return FaceModelOutput(vertices=vertices, landmarks68=None, landmarks7=None, joints=joints)
        lmk68 = vertices_to_landmarks(vertices, self.faces, self.lmk_faces_idx, self.lmk_bary)
        return FaceModelOutput(
            vertices=vertices, landmarks68=lmk68, landmarks7=lmk68[:, list(NOW7_FROM_68)], joints=joints
        )

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, V={self.num_vertices}, S={self.shape_dim}, E={self.expression_dim}, P={self.pose_dim}"
