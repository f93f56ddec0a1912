"""FLAME backend: the official FLAME pickles (2020, 2023, 2023 Open), read without chumpy.

The official files were written by Python 2 with ``chumpy`` installed. They hold plain numpy
arrays, chumpy objects (whose array value is in their pickled state under ``'x'``) and a
``scipy.sparse`` joint regressor pickled under a module path that no longer exists
(``scipy.sparse.csc``). :class:`_FlameUnpickler` maps every chumpy class to a stand-in that only
records its state, maps old scipy/numpy module paths to the current ones, and
:func:`read_flame_pickle` turns the result into plain arrays.

File keys used (V = 5023 vertices, J = 5 joints, F = 9976 triangles)::

    v_template     (V, 3)        neutral template, metres
    shapedirs      (V, 3, K)     K = 400: 300 identity then 100 expression blend shapes
                                 (older files may hold fewer; columns past 300 are expression)
    posedirs       (V, 3, 36)    pose correctives, 9 * (J - 1)
    J_regressor    (J, V)        scipy sparse (or dense)
    weights        (V, J)        skinning weights
    kintree_table  (2, J)        row 0: parent of each joint (root: any invalid value)
    f              (F, 3)        triangles

Pose layout (``pose_dim = 15``, axis-angle, smplx/DECA order)::

    pose[:, 0:3]   global rotation (about the root joint)
    pose[:, 3:6]   neck
    pose[:, 6:9]   jaw           (JAW_SLICE; a positive x rotation opens the mouth)
    pose[:, 9:12]  left eye
    pose[:, 12:15] right eye
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np
import scipy.sparse
import torch

from ..errors import FaceModelError
from .base import FaceModel, PriorSample
from .lbs import blend_shapes, lbs

NUM_SHAPE_IN_FILE = 300  # columns of ``shapedirs`` before the expression blend shapes start
JAW_SLICE = slice(6, 9)  # where the jaw rotation lives in ``pose``
NUM_JOINTS = 5

# Prior used by :meth:`FLAMEModel.sample_prior` (coefficients are in standard deviations).
SHAPE_CLIP = 3.0
EXPRESSION_STD = 0.7  # milder than the training distribution: plausible, not caricatured
EXPRESSION_CLIP = 2.0
JAW_OPEN_MAX = 0.25  # radians; jaw pitch ~ U(0, JAW_OPEN_MAX)

REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
MASKS_FILE = "FLAME_masks.pkl"
LANDMARKS_FILE = "landmark_embedding.npy"
FRONT_INDICES_FILE = "ofer_frontindices.npy"
FACE_REGION = "face"
# (triangle index key, barycentric key) pairs accepted in a landmark file.
LANDMARK_KEYS = (
    ("full_lmk_faces_idx", "full_lmk_bary_coords"),  # DECA / MICA landmark_embedding.npy
    ("lmk_face_idx", "lmk_b_coords"),  # FLAME-style embedding (must hold 68 points)
    ("lmk_faces_idx", "lmk_bary"),  # ofer's npz convention
)


# -- chumpy-free unpickling ---------------------------------------------------------------------
class ChumpyStandIn:
    """Stand-in for any chumpy class: records the pickled state (a dict) and nothing else."""

    chumpy_class = "chumpy"

    def __new__(cls, *args: Any, **kwargs: Any) -> "ChumpyStandIn":
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]  # (dict state, slot state)
        self.state = state if isinstance(state, dict) else {"value": state}


_STAND_INS: dict[str, type] = {}


def _stand_in(module: str, name: str) -> type:
    """A (cached) :class:`ChumpyStandIn` subclass named after the chumpy class it replaces."""
    qualified = f"{module}.{name}"
    if qualified not in _STAND_INS:
        _STAND_INS[qualified] = type(name, (ChumpyStandIn,), {"chumpy_class": qualified})
    return _STAND_INS[qualified]


class _FlameUnpickler(pickle.Unpickler):
    """Unpickler for Python-2 era FLAME/SMPL files, without chumpy.

    - ``chumpy.*`` classes become :class:`ChumpyStandIn` subclasses;
    - ``scipy.sparse.<old module>.<cls>`` resolves to ``scipy.sparse.<cls>``;
    - ``numpy.core.*`` resolves to ``numpy._core.*`` on numpy 2 (no deprecation warnings).
    """

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _stand_in(module, name)
        if module.startswith("scipy.sparse") and hasattr(scipy.sparse, name):
            return getattr(scipy.sparse, name)
        if module == "numpy.core" or module.startswith("numpy.core."):
            renamed = "numpy._core" + module[len("numpy.core") :]
            try:
                return getattr(importlib.import_module(renamed), name)
            except (ImportError, AttributeError):
                pass
        return super().find_class(module, name)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def unpickle_file(path: Path, what: str = "pickle") -> Any:
    """Unpickle a (possibly Python 2, chumpy-laden) file with ``encoding='latin1'``.

    Raises:
        FaceModelError: "flame: PATH: file not found" or "flame: PATH: not a readable <what> (...)".
    """
    if not path.is_file():
        raise FaceModelError(f"flame: {path}: file not found")
    try:
        with open(path, "rb") as handle:
            return _FlameUnpickler(handle, encoding="latin1").load()
    except Exception as exc:  # pickle reports bad data through many exception types
        raise FaceModelError(f"flame: {path}: not a readable {what} ({_one_line(exc)})") from None


def chumpy_to_array(obj: ChumpyStandIn, where: str) -> np.ndarray:
    """The array value of an unpickled chumpy object.

    Plain ``Ch`` objects keep their value under ``'x'``; a computed value cached under
    ``_cache['r']`` is used next; ``transpose``, ``Reshape`` and ``Select`` nodes are evaluated.

    Args:
        obj: the stand-in.
        where: prefix for error messages ("flame: PATH: key 'shapedirs'").
    Raises:
        FaceModelError: when the object holds no recoverable array.
    """
    state = obj.state
    if "x" in state:
        return to_array(state["x"], where)
    cached = state.get("_cache")
    if isinstance(cached, dict) and cached.get("r") is not None:
        return to_array(cached["r"], where)
    kind = obj.chumpy_class.rsplit(".", 1)[-1].lower()
    try:
        if kind == "transpose":
            return np.transpose(to_array(state["a"], where), axes=state.get("axes"))
        if kind == "reshape":
            return to_array(state["a"], where).reshape(state["newshape"])
        if kind == "select":
            picked = to_array(state["a"], where).ravel()[np.asarray(state["idxs"])]
            shape = state.get("preferred_shape")
            return picked.reshape(shape) if shape is not None else picked
    except (KeyError, ValueError, IndexError, TypeError):
        pass
    raise FaceModelError(f"{where}: cannot convert chumpy object {obj.chumpy_class} to an array")


def _sparse_to_dense(matrix: Any, where: str) -> np.ndarray:
    """Dense copy of an unpickled scipy sparse matrix.

    Falls back to rebuilding a compressed (csc/csr) matrix from its stored ``data``,
    ``indices``, ``indptr`` and shape when the pickled attributes predate the current scipy.
    """
    try:
        return np.asarray(matrix.toarray())
    except Exception as exc:
        error = _one_line(exc)
    attrs = vars(matrix)
    try:
        shape = attrs.get("_shape", attrs.get("shape"))
        rebuilt = type(matrix)((attrs["data"], attrs["indices"], attrs["indptr"]), shape=shape)
        return np.asarray(rebuilt.toarray())
    except Exception:
        raise FaceModelError(f"{where}: unreadable sparse matrix ({error})") from None


def to_array(value: Any, where: str) -> np.ndarray:
    """Convert an unpickled value (array, chumpy stand-in, sparse matrix, tensor, list) to numpy."""
    if isinstance(value, ChumpyStandIn):
        return chumpy_to_array(value, where)
    if scipy.sparse.issparse(value):
        return _sparse_to_dense(value, where)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise FaceModelError(f"{where}: not an array ({_one_line(exc)})") from None
    if array.dtype == object:
        raise FaceModelError(f"{where}: not a numeric array ({type(value).__name__})")
    return array


# -- FLAME file -------------------------------------------------------------------------------
def _expect_shape(path: Path, key: str, array: np.ndarray, expected: tuple) -> None:
    """Check ``array.shape`` against ``expected`` (``None`` entries match any size)."""
    ok = array.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, array.shape))
    if not ok:
        wanted = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise FaceModelError(f"flame: {path}: '{key}' has shape {tuple(array.shape)}, expected {wanted}")


def _parents(kintree_table: np.ndarray, path: Path) -> np.ndarray:
    """Parent index per joint from row 0 of ``kintree_table`` (root: -1)."""
    parents = kintree_table[0].astype(np.int64)
    parents[0] = -1
    if any(not 0 <= parents[j] < j for j in range(1, len(parents))):
        raise FaceModelError(f"flame: {path}: 'kintree_table' is not a tree with parents before children")
    return parents


def read_flame_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate an official FLAME pickle.

    Returns:
        dict with float64/int64 numpy arrays: ``v_template`` (V,3), ``shapedirs`` (V,3,K),
        ``posedirs`` (V,3,9(J-1)), ``J_regressor`` (J,V) dense, ``weights`` (V,J),
        ``parents`` (J,), ``f`` (F,3).
    Raises:
        FaceModelError: missing/unreadable file, missing key or inconsistent shapes.
    """
    path = Path(path).expanduser()
    raw = unpickle_file(path, "FLAME pickle")
    if not isinstance(raw, dict):
        raise FaceModelError(f"flame: {path}: not a FLAME model (expected a dict, got {type(raw).__name__})")
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise FaceModelError(f"flame: {path}: missing key '{key}'")
    data = {key: to_array(raw[key], f"flame: {path}: key '{key}'") for key in REQUIRED_KEYS}
    _expect_shape(path, "v_template", data["v_template"], (None, 3))
    n_vertices = data["v_template"].shape[0]
    _expect_shape(path, "kintree_table", data["kintree_table"], (2, NUM_JOINTS))
    n_joints = NUM_JOINTS
    _expect_shape(path, "shapedirs", data["shapedirs"], (n_vertices, 3, None))
    _expect_shape(path, "posedirs", data["posedirs"], (n_vertices, 3, 9 * (n_joints - 1)))
    _expect_shape(path, "J_regressor", data["J_regressor"], (n_joints, n_vertices))
    _expect_shape(path, "weights", data["weights"], (n_vertices, n_joints))
    _expect_shape(path, "f", data["f"], (None, 3))
    faces = data.pop("f").astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= n_vertices):
        raise FaceModelError(f"flame: {path}: 'f' indexes vertices outside 0..{n_vertices - 1}")
    out = {k: v.astype(np.float64) for k, v in data.items() if k != "kintree_table"}
    out["parents"] = _parents(data["kintree_table"], path)
    out["f"] = faces
    return out


# -- optional extra files -------------------------------------------------------------------
def _index_vector(values: Any, n: int, path: Path, what: str) -> np.ndarray:
    """Validate a 1-D integer index array into ``range(n)``."""
    indices = to_array(values, f"flame: {path}: {what}").reshape(-1)
    if indices.dtype.kind not in "iu":
        raise FaceModelError(f"flame: {path}: {what} must be integer indices, got {indices.dtype}")
    indices = indices.astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise FaceModelError(f"flame: {path}: {what} has indices outside 0..{n - 1}")
    return indices


def read_face_mask(path: str | Path, n_vertices: int, region: str = FACE_REGION) -> np.ndarray:
    """Face-region mask from a ``FLAME_masks.pkl`` (dict: region name -> vertex indices).

    Returns:
        (V,) bool, True on the vertices of ``region``.
    """
    path = Path(path).expanduser()
    masks = unpickle_file(path, "FLAME masks pickle")
    if not isinstance(masks, dict):
        raise FaceModelError(f"flame: {path}: not a FLAME masks file (expected a dict, got {type(masks).__name__})")
    if region not in masks:
        raise FaceModelError(f"flame: {path}: missing region '{region}'")
    mask = np.zeros(n_vertices, dtype=bool)
    mask[_index_vector(masks[region], n_vertices, path, f"region '{region}'")] = True
    return mask


def read_front_indices(path: str | Path, n_vertices: int) -> np.ndarray:
    """Front-face mask from an ``.npy`` of vertex indices (e.g. OFER's 1785 front vertices).

    Returns:
        (V,) bool.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FaceModelError(f"flame: {path}: file not found")
    try:
        indices = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise FaceModelError(f"flame: {path}: not a readable .npy file ({_one_line(exc)})") from None
    mask = np.zeros(n_vertices, dtype=bool)
    mask[_index_vector(indices, n_vertices, path, "front indices")] = True
    return mask


def _landmark_dict(path: Path) -> dict:
    """Load a landmark file: a pickled dict in an ``.npy`` (DECA) or an ``.npz``."""
    if not path.is_file():
        raise FaceModelError(f"flame: {path}: file not found")
    try:
        loaded = np.load(path, allow_pickle=True, encoding="latin1")
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {k: loaded[k] for k in loaded.files}
        if isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.shape == ():
            loaded = loaded.item()
    except Exception as exc:
        raise FaceModelError(f"flame: {path}: not a readable landmark file ({_one_line(exc)})") from None
    if not isinstance(loaded, dict):
        raise FaceModelError(f"flame: {path}: not a landmark embedding (expected a dict of arrays)")
    return loaded


def read_landmarks(path: str | Path, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a 68-point barycentric landmark embedding.

    Accepts DECA's ``landmark_embedding.npy`` (``full_lmk_faces_idx`` (1,68),
    ``full_lmk_bary_coords`` (1,68,3); values may be torch tensors) or an ``.npz`` with
    ``lmk_face_idx`` (68,) / ``lmk_b_coords`` (68,3) (or ``lmk_faces_idx`` / ``lmk_bary``).

    Returns:
        faces_idx (68,) int64 and bary (68, 3) float32.
    """
    path = Path(path).expanduser()
    data = _landmark_dict(path)
    keys = next(((i, b) for i, b in LANDMARK_KEYS if i in data and b in data), None)
    if keys is None:
        wanted = " or ".join(f"'{i}'/'{b}'" for i, b in LANDMARK_KEYS)
        raise FaceModelError(f"flame: {path}: missing landmark keys ({wanted})")
    faces_idx = _index_vector(data[keys[0]], n_faces, path, f"'{keys[0]}'")
    bary = to_array(data[keys[1]], f"flame: {path}: '{keys[1]}'").astype(np.float32).reshape(-1, 3)
    if faces_idx.shape[0] != 68 or bary.shape[0] != 68:
        raise FaceModelError(
            f"flame: {path}: landmark embedding must hold 68 points, got {faces_idx.shape[0]} / {bary.shape[0]}"
        )
    return faces_idx, bary


# -- model ------------------------------------------------------------------------------------
class FLAMEModel(FaceModel):
    """FLAME: identity and expression blend shapes, pose correctives and 5-joint skinning.

    Buffers: ``v_template`` (V,3), ``shapedirs`` (V,3,S), ``exprdirs`` (V,3,E),
    ``posedirs`` (36, V*3), ``J_regressor`` (5,V), ``lbs_weights`` (V,5), ``parents`` (5,).
    ``pose`` is (B, 15), see the module docstring; ``jaw_dim = 3`` (``pose[:, JAW_SLICE]``).
    """

    name = "flame"

    def __init__(
        self,
        data: dict[str, np.ndarray],
        spec: str,
        front_mask: Optional[np.ndarray] = None,
        lmk_faces_idx: Optional[np.ndarray] = None,
        lmk_bary: Optional[np.ndarray] = None,
        shape_dim: int = 300,
        expression_dim: int = 50,
    ):
        """Build the model from :func:`read_flame_pickle` arrays.

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
    shape_dim: int = 300,
    expression_dim: int = 50,
) -> FLAMEModel:
    """Load an official FLAME pickle as a :class:`FLAMEModel` (spec ``"flame:PATH"``).

    Args:
        path: ``generic_model.pkl`` / ``flame2023.pkl`` / ``flame2023_Open.pkl``.
        masks: ``FLAME_masks.pkl``; its ``'face'`` region becomes ``front_mask``.
        landmarks: 68-point embedding (``landmark_embedding.npy`` or ``.npz``, see
            :func:`read_landmarks`); without one the model has no landmarks.
        front_indices: ``.npy`` of front-face vertex indices; overrides ``masks`` for
            ``front_mask``.
        shape_dim, expression_dim: number of coefficients (clipped to what the file holds).

    When ``masks``, ``landmarks`` or ``front_indices`` is None, ``FLAME_masks.pkl``,
    ``landmark_embedding.npy`` or ``ofer_frontindices.npy`` next to the pickle are used if
    present. With no mask at all, every vertex is front face.

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
    return FLAMEModel(
        data,
        spec=f"flame:{path}",
        front_mask=front_mask,
        lmk_faces_idx=lmk_idx,
        lmk_bary=lmk_bary,
        shape_dim=shape_dim,
        expression_dim=expression_dim,
    )
