"""The face-model interface shared by every backend (FLAME, generic npz, built-in head).

A face model maps coefficients to a mesh in metres::

    out = model(shape, expression, pose)   # shape (B,S), expression (B,E), pose (B,P) or None
    out.vertices                           # (B,V,3)
    out.landmarks68, out.landmarks7        # (B,68,3), (B,7,3)

Landmarks are stored as a barycentric embedding (triangle index + 3 weights) so they
follow every deformation of the surface.

A model owns its coefficient layout: ``split_code`` turns the expression generator's code
(B, code_dim) into ``(expression, pose)`` and ``join_code`` is its inverse; ``fingerprint`` names
its content (so a checkpoint made for one model is refused by another of the same dimensions).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import nn

FINGERPRINT_VERSION = b"ofer-face-model-fingerprint/1"

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


def fingerprint_arrays(arrays: dict[str, torch.Tensor]) -> str:
    """Hex sha256 of named arrays (names, shapes and values), independent of device and float dtype.

    Floats are hashed as float32 little-endian (a model moved to the GPU or cast to float64 keeps
    its fingerprint), integers as int64 and booleans as uint8.
    """
    digest = hashlib.sha256(FINGERPRINT_VERSION)
    for name in sorted(arrays):
        tensor = arrays[name].detach().cpu()
        if tensor.is_floating_point():
            array, tag = tensor.to(torch.float32).numpy().astype("<f4"), b"f4"
        elif tensor.dtype == torch.bool:
            array, tag = tensor.numpy().astype(np.uint8), b"b1"
        else:
            array, tag = tensor.to(torch.int64).numpy().astype("<i8"), b"i8"
        digest.update(f"{name}:{tuple(array.shape)}:".encode() + tag + b"\0")
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@dataclass
class FaceModelInfo:
    """Static description of a face model, for `ofer info`, checkpoints and configs.

    ``spec`` and ``options`` reload the model (:func:`ofer.facemodels.load_face_model_from_record`);
    ``fingerprint`` identifies its content (:meth:`FaceModel.fingerprint`).
    """

    spec: str
    name: str
    num_vertices: int
    num_faces: int
    shape_dim: int
    expression_dim: int
    pose_dim: int
    jaw_dim: int
    fingerprint: str = ""
    options: dict = field(default_factory=dict)
    shape_names: list[str] = field(default_factory=list)
    expression_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The record stored in checkpoints and manifests (without the coefficient names)."""
        keys = ("spec", "name", "num_vertices", "num_faces", "shape_dim", "expression_dim", "pose_dim", "jaw_dim",
                "fingerprint")
        return {**{k: getattr(self, k) for k in keys}, "options": dict(self.options)}


class FaceModel(nn.Module):
    """Base class: holds the topology, landmark embedding and face-region mask as buffers.

    Subclasses implement :meth:`deform` (coefficients -> vertices, joints) and
    :meth:`sample_prior`. Dimensions:

    - ``shape_dim`` (S): identity coefficients.
    - ``expression_dim`` (E): expression coefficients.
    - ``pose_dim`` (P): pose parameters accepted by ``forward`` (axis-angle, 3 per joint).
    - ``jaw_dim``: how many entries of ``pose`` are the jaw rotation (FLAME: 3, linear models: 0),
      namely ``pose[..., jaw_pose]``.
    - ``code_dim`` = ``expression_dim + jaw_dim``: the length of the expression generator's code
      ``[expression | jaw]`` (see :meth:`split_code`).

    ``options`` are the load options that rebuild this model from ``spec`` (JSON values).
    """

    name: str = "face-model"
    jaw_pose: slice = slice(0, 0)  # where the jaw rotation lives in ``pose`` (length ``jaw_dim``)

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
        options: Optional[dict] = None,
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
        if len(range(self.pose_dim)[self.jaw_pose]) != self.jaw_dim:
            raise ValueError(f"jaw_pose {self.jaw_pose} of a {self.pose_dim}-entry pose is not {jaw_dim} long")
        self.options = dict(options or {})
        self._fingerprint: Optional[str] = None
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

    def content_arrays(self) -> dict[str, torch.Tensor]:
        """The backend's arrays that shape its meshes (template, bases, ...), for :meth:`fingerprint`."""
        raise NotImplementedError

    def clamp_shape(self, shape: torch.Tensor) -> torch.Tensor:
        """Clip generated identity coefficients (..., S) to the model's valid range (default: unchanged)."""
        self._check_last(shape, "shape", self.shape_dim)
        return shape

    def clamp_expression(self, code: torch.Tensor) -> torch.Tensor:
        """Clip generated codes (..., code_dim) to the valid range (default: unchanged).

        Jaw entries are left as they are (a backend may clip them only for a reason of its own).
        """
        self._check_last(code, "code", self.code_dim)
        return code

    # -- shared ---------------------------------------------------------------------------
    @property
    def code_dim(self) -> int:
        return self.expression_dim + self.jaw_dim

    def split_code(self, code: torch.Tensor, jaw_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Expression-generator code -> model inputs.

        Args:
            code: (..., code_dim) ``[expression | jaw]``.
            jaw_scale: factor on the jaw rotation (1: as generated).
        Returns:
            expression (..., E) and pose (..., P): zeros except ``pose[..., jaw_pose] = jaw * jaw_scale``.
        """
        self._check_last(code, "code", self.code_dim)
        pose = code.new_zeros(code.shape[:-1] + (self.pose_dim,))
        pose[..., self.jaw_pose] = code[..., self.expression_dim :] * jaw_scale
        return code[..., : self.expression_dim], pose

    def join_code(self, expression: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`split_code` (``jaw_scale=1``): (..., E), (..., P) -> (..., code_dim)."""
        self._check_last(expression, "expression", self.expression_dim)
        self._check_last(pose, "pose", self.pose_dim)
        return torch.cat([expression, pose[..., self.jaw_pose].to(expression)], dim=-1)

    def fingerprint(self) -> str:
        """Hex sha256 of the content: :meth:`content_arrays`, faces, landmark embedding, face mask.

        Computed once per instance (buffers are not expected to change after loading).
        """
        if self._fingerprint is None:
            arrays = dict(self.content_arrays())
            arrays.update(faces=self.faces, lmk_faces_idx=self.lmk_faces_idx, lmk_bary=self.lmk_bary,
                          front_mask=self.front_mask)
            self._fingerprint = fingerprint_arrays(arrays)
        return self._fingerprint

    def _check_last(self, value: torch.Tensor, name: str, dim: int) -> None:
        if value.ndim == 0 or value.shape[-1] != dim:
            raise ValueError(f"{name} must have shape (..., {dim}) for {self.spec}, got {tuple(value.shape)}")

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
            fingerprint=self.fingerprint(),
            options=dict(self.options),
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

    def surface_points(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor,
                       faces_idx: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
        """(B, L, 3) surface points (triangle ``faces_idx`` (L,), barycentric ``bary`` (L, 3)) of a deformation.

        Equal to interpolating :meth:`forward`'s vertices; backends may evaluate only the vertices
        the points need (the fitter calls this in its inner loop).
        """
        vertices = self(shape, expression, pose).vertices
        return vertices_to_landmarks(vertices, self.faces, faces_idx, bary)

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, V={self.num_vertices}, S={self.shape_dim}, E={self.expression_dim}, P={self.pose_dim}"
