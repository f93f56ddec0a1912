"""FLAME backend: the official FLAME pickles (2020, 2023, 2023 Open) as a :class:`FaceModel`.

Reading the files (chumpy-free, no pickled code run) is in :mod:`ofer.facemodels.flame_io`.

Pose layout (``pose_dim = 15``, axis-angle, smplx/DECA order)::

    pose[:, 0:3]   global rotation (about the root joint)
    pose[:, 3:6]   neck
    pose[:, 6:9]   jaw           (JAW_SLICE; a positive x rotation opens the mouth)
    pose[:, 9:12]  left eye
    pose[:, 12:15] right eye

Expression-generator code (``code_dim = expression_dim + 3``): ``[expression | jaw rotation]``;
:meth:`FaceModel.split_code` puts the jaw part into ``pose[:, JAW_SLICE]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .base import FaceModel, PriorSample
from .flame_io import NUM_JOINTS, read_face_mask, read_flame_pickle, read_front_indices, read_landmarks
from .lbs import blend_shapes, lbs

NUM_SHAPE_IN_FILE = 300  # columns of ``shapedirs`` before the expression blend shapes start
JAW_SLICE = slice(6, 9)  # where the jaw rotation lives in ``pose``
DEFAULT_SHAPE_DIM = 300
DEFAULT_EXPRESSION_DIM = 50

# Prior used by :meth:`FLAMEModel.sample_prior` (coefficients are in standard deviations).
SHAPE_CLIP = 3.0
EXPRESSION_STD = 0.7  # milder than the training distribution: plausible, not caricatured
EXPRESSION_CLIP = 2.0
JAW_OPEN_MAX = 0.25  # radians; jaw pitch ~ U(0, JAW_OPEN_MAX)

MASKS_FILE = "FLAME_masks.pkl"
LANDMARKS_FILE = "landmark_embedding.npy"
FRONT_INDICES_FILE = "ofer_frontindices.npy"


class FLAMEModel(FaceModel):
    """FLAME: identity and expression blend shapes, pose correctives and 5-joint skinning.

    Buffers: ``v_template`` (V,3), ``shapedirs`` (V,3,S), ``exprdirs`` (V,3,E),
    ``posedirs`` (36, V*3), ``J_regressor`` (5,V), ``lbs_weights`` (V,5), ``parents`` (5,).
    ``pose`` is (B, 15), see the module docstring; ``jaw_dim = 3`` (``pose[:, JAW_SLICE]``).
    Generated coefficients are used as they come (:meth:`clamp_shape` / :meth:`clamp_expression`
    leave them unchanged).
    """

    name = "flame"
    jaw_pose = JAW_SLICE

    def __init__(
        self,
        data: dict[str, np.ndarray],
        spec: str,
        front_mask: Optional[np.ndarray] = None,
        lmk_faces_idx: Optional[np.ndarray] = None,
        lmk_bary: Optional[np.ndarray] = None,
        shape_dim: int = DEFAULT_SHAPE_DIM,
        expression_dim: int = DEFAULT_EXPRESSION_DIM,
        options: Optional[dict] = None,
    ):
        """Build the model from :func:`~ofer.facemodels.flame_io.read_flame_pickle` arrays.

        ``shape_dim`` / ``expression_dim`` are clipped to what the file holds (identity: the
        first 300 columns of ``shapedirs``, expression: the columns after them). Without a
        ``front_mask`` every vertex counts as front face.
        """
        n_vertices = data["v_template"].shape[0]
        n_cols = data["shapedirs"].shape[2]
        shape_dim = max(0, min(int(shape_dim), n_cols, NUM_SHAPE_IN_FILE))
        expression_dim = max(0, min(int(expression_dim), n_cols - NUM_SHAPE_IN_FILE))
        mask = np.ones(n_vertices, dtype=bool) if front_mask is None else front_mask
        super().__init__(
            spec=spec,
            faces=torch.from_numpy(data["f"]),
            lmk_faces_idx=None if lmk_faces_idx is None else torch.from_numpy(lmk_faces_idx),
            lmk_bary=None if lmk_bary is None else torch.from_numpy(lmk_bary),
            front_mask=torch.from_numpy(mask),
            shape_dim=shape_dim,
            expression_dim=expression_dim,
            pose_dim=3 * NUM_JOINTS,
            jaw_dim=3,
            options=options,
        )
        expr_cols = slice(NUM_SHAPE_IN_FILE, NUM_SHAPE_IN_FILE + expression_dim)
        posedirs = data["posedirs"].reshape(-1, data["posedirs"].shape[2]).T  # (36, V*3)
        self._buffer("v_template", data["v_template"])
        self._buffer("shapedirs", data["shapedirs"][:, :, :shape_dim])
        self._buffer("exprdirs", data["shapedirs"][:, :, expr_cols])
        self._buffer("posedirs", posedirs)
        self._buffer("J_regressor", data["J_regressor"])
        self._buffer("lbs_weights", data["weights"])
        self.register_buffer("parents", torch.from_numpy(data["parents"].astype(np.int64)), persistent=False)

    def _buffer(self, name: str, array: np.ndarray) -> None:
        """Register a float32 buffer (non-persistent: the model file is the source of truth)."""
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        self.register_buffer(name, tensor, persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    def content_arrays(self) -> dict[str, torch.Tensor]:
        return {"v_template": self.v_template, "shapedirs": self.shapedirs, "exprdirs": self.exprdirs,
                "posedirs": self.posedirs, "J_regressor": self.J_regressor, "lbs_weights": self.lbs_weights,
                "parents": self.parents}

    def deform(
        self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Blend shapes + pose correctives + LBS.

        Args:
            shape: (B, S), expression: (B, E), pose: (B, 15).
        Returns:
            vertices (B, V, 3) and joints (B, 5, 3), metres.
        """
        v_expressed = self.v_template + blend_shapes(expression, self.exprdirs)  # (B, V, 3)
        return lbs(
            shape,
            pose,
            v_expressed,
            self.shapedirs,
            self.posedirs,
            self.J_regressor,
            self.parents,
            self.lbs_weights,
        )

    def sample_prior(
        self, n: int, generator: Optional[torch.Generator] = None, expression: bool = False
    ) -> PriorSample:
        """Random FLAME coefficients (deterministic given ``generator``).

        - shape ~ N(0, 1) per coefficient, clipped to +-``SHAPE_CLIP`` (FLAME coefficients are
          in units of the identity standard deviation);
        - if ``expression``: expression ~ N(0, ``EXPRESSION_STD``) clipped to
          +-``EXPRESSION_CLIP`` and jaw opening (x rotation) ~ U(0, ``JAW_OPEN_MAX``) rad;
          otherwise neutral (zeros);
        - every other pose parameter is zero (frontal head, eyes straight).

        Returns:
            :class:`PriorSample` with (n, S), (n, E), (n, 15) tensors on the model's device/dtype.
        """
        shape = torch.randn(n, self.shape_dim, generator=generator).clamp_(-SHAPE_CLIP, SHAPE_CLIP)
        expr = torch.zeros(n, self.expression_dim)
        pose = torch.zeros(n, self.pose_dim)
        if expression:
            expr = torch.randn(n, self.expression_dim, generator=generator) * EXPRESSION_STD
            expr = expr.clamp_(-EXPRESSION_CLIP, EXPRESSION_CLIP)
            pose[:, JAW_SLICE.start] = JAW_OPEN_MAX * torch.rand(n, generator=generator)
        return PriorSample(*(t.to(device=self.device, dtype=self.dtype) for t in (shape, expr, pose)))


def _beside(path: Path, explicit: Optional[str | Path], name: str) -> Optional[Path]:
    """``explicit`` if given, else ``name`` next to ``path`` when it exists, else None."""
    if explicit is not None:
        return Path(explicit).expanduser()
    candidate = path.parent / name
    return candidate if candidate.is_file() else None


def load_flame(
    path: str | Path,
    masks: Optional[str | Path] = None,
    landmarks: Optional[str | Path] = None,
    front_indices: Optional[str | Path] = None,
    shape_dim: int = DEFAULT_SHAPE_DIM,
    expression_dim: int = DEFAULT_EXPRESSION_DIM,
) -> FLAMEModel:
    """Load an official FLAME pickle as a :class:`FLAMEModel` (spec ``"flame:PATH"``).

    Args:
        path: ``generic_model.pkl`` / ``flame2023.pkl`` / ``flame2023_Open.pkl``.
        masks: ``FLAME_masks.pkl``; its ``'face'`` region becomes ``front_mask``.
        landmarks: 68-point embedding (``landmark_embedding.npy`` or ``.npz``, see
            :func:`~ofer.facemodels.flame_io.read_landmarks`); without one the model has no landmarks.
        front_indices: ``.npy`` of front-face vertex indices; overrides ``masks`` for
            ``front_mask``.
        shape_dim, expression_dim: number of coefficients (clipped to what the file holds).

    When ``masks``, ``landmarks`` or ``front_indices`` is None, ``FLAME_masks.pkl``,
    ``landmark_embedding.npy`` or ``ofer_frontindices.npy`` next to the pickle are used if
    present. With no mask at all, every vertex is front face. The model's ``options`` record the
    arguments given (paths as strings, dimensions when not the default), so that
    ``load_face_model(spec, **options)`` loads it again.

    Raises:
        FaceModelError: a one-line description of the first problem found.
    """
    path = Path(path).expanduser()
    data = read_flame_pickle(path)
    n_vertices, n_faces = data["v_template"].shape[0], data["f"].shape[0]
    front_mask = None
    masks_path = _beside(path, masks, MASKS_FILE)
    if masks_path is not None:
        front_mask = read_face_mask(masks_path, n_vertices)
    front_path = _beside(path, front_indices, FRONT_INDICES_FILE)
    if front_path is not None:
        front_mask = read_front_indices(front_path, n_vertices)
    lmk_idx = lmk_bary = None
    landmarks_path = _beside(path, landmarks, LANDMARKS_FILE)
    if landmarks_path is not None:
        lmk_idx, lmk_bary = read_landmarks(landmarks_path, n_faces)
    paths = {"masks": masks, "landmarks": landmarks, "front_indices": front_indices}
    options = {k: str(Path(v).expanduser()) for k, v in paths.items() if v is not None}
    dims = {"shape_dim": (shape_dim, DEFAULT_SHAPE_DIM), "expression_dim": (expression_dim, DEFAULT_EXPRESSION_DIM)}
    options.update({k: int(v) for k, (v, default) in dims.items() if int(v) != default})
    return FLAMEModel(data, spec=f"flame:{path}", front_mask=front_mask, lmk_faces_idx=lmk_idx, lmk_bary=lmk_bary,
                      shape_dim=shape_dim, expression_dim=expression_dim, options=options)
