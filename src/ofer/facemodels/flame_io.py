"""Reading the official FLAME files without chumpy and without running pickled code.

The official files were written by Python 2 with ``chumpy`` installed. They hold plain numpy
arrays, chumpy objects (whose array value is in their pickled state under ``'x'``) and a
``scipy.sparse`` joint regressor pickled under a module path that no longer exists
(``scipy.sparse.csc``). They are read with :mod:`ofer.io.safe_pickle`'s restricted unpickler,
which resolves only numpy/scipy data classes (old and new module paths) and maps every chumpy class
to :class:`ChumpyStandIn`, which only records its state; any other name in a pickle is refused
before it is imported. :func:`read_flame_pickle` turns the result into plain arrays.

File keys used (V = 5023 vertices, J = 5 joints, F = 9976 triangles)::

    v_template     (V, 3)        neutral template, metres
    shapedirs      (V, 3, K)     K = 400: 300 identity then 100 expression blend shapes
                                 (older files may hold fewer; columns past 300 are expression)
    posedirs       (V, 3, 36)    pose correctives, 9 * (J - 1)
    J_regressor    (J, V)        scipy sparse (or dense)
    weights        (V, J)        skinning weights
    kintree_table  (2, J)        row 0: parent of each joint (root: any invalid value)
    f              (F, 3)        triangles

Extra files: ``FLAME_masks.pkl`` (region name -> vertex indices), a 68-point landmark embedding
(DECA's pickled ``landmark_embedding.npy`` or an ``.npz``) and an ``.npy`` of front-face indices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import scipy.sparse
import torch

from ..errors import FaceModelError
from ..io.safe_pickle import UnsafePickleError, load_numpy, load_pickle
from ..io.numpy_files import numpy_error

NUM_JOINTS = 5
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
FACE_REGION = "face"
# (triangle index key, barycentric key) pairs accepted in a landmark file.
LANDMARK_KEYS = (
    ("full_lmk_faces_idx", "full_lmk_bary_coords"),  # DECA / MICA landmark_embedding.npy
    ("lmk_face_idx", "lmk_b_coords"),  # FLAME-style embedding (must hold 68 points)
    ("lmk_faces_idx", "lmk_bary"),  # ofer's npz convention
)


# -- chumpy-free, code-free unpickling -----------------------------------------------------------
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


def chumpy_stand_in(module: str, name: str) -> Optional[type]:
    """``extra`` resolver for :mod:`ofer.io.safe_pickle`: every ``chumpy.*`` class becomes a stand-in."""
    if module == "chumpy" or module.startswith("chumpy."):
        return _stand_in(module, name)
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _read_safely(path: Path, what: str, reader) -> Any:
    """Run ``reader(path, extra=chumpy_stand_in)``, turning every failure into a one-line FaceModelError."""
    if not path.is_file():
        raise FaceModelError(f"flame: {path}: file not found")
    try:
        return reader(path, extra=chumpy_stand_in)
    except UnsafePickleError as exc:
        raise FaceModelError(f"flame: {path}: {exc}") from None
    except Exception as exc:  # pickle reports bad data through many exception types
        raise FaceModelError(f"flame: {path}: not a readable {what} ({_one_line(exc)})") from None


def unpickle_file(path: Path, what: str = "pickle") -> Any:
    """Unpickle a (possibly Python 2, chumpy-laden) file, refusing anything but data classes.

    Raises:
        FaceModelError: "flame: PATH: file not found", "flame: PATH: refused to load MODULE.NAME ..."
            (nothing of it was imported or run) or "flame: PATH: not a readable <what> (...)".
    """
    return _read_safely(path, what, load_pickle)


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
        raise FaceModelError(f"flame: {path}: not a readable .npy file ({numpy_error(exc)})") from None
    mask = np.zeros(n_vertices, dtype=bool)
    mask[_index_vector(indices, n_vertices, path, "front indices")] = True
    return mask


def _landmark_dict(path: Path) -> dict:
    """Load a landmark file: a pickled dict in an ``.npy`` (DECA) or an ``.npz``."""
    loaded = _read_safely(path, "landmark file", load_numpy)
    if isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.shape == ():
        loaded = loaded.item()
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
