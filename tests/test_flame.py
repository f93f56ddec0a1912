"""FLAME backend: chumpy-free loading, blend shapes, LBS, code layout, records, extra files, errors.

The fixture pickles have the real FLAME structure and sizes (random but well-formed data) and,
like the official files, reference ``chumpy.ch.Ch`` and ``scipy.sparse.csc.csc_matrix`` and
``numpy.core``; they are written with protocol 2.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import shutil
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from ofer import load_face_model
from ofer.errors import FaceModelError
from ofer.facemodels import load_face_model_from_record
from ofer.facemodels.flame import JAW_SLICE, FLAMEModel, load_flame
from ofer.facemodels.flame_io import ChumpyStandIn, to_array
from ofer.geometry import rodrigues

V, F, J = 5023, 9976, 5
N_COLS = 400  # 300 shape + 100 expression
PARENTS = np.array([4294967295, 0, 1, 1, 1], dtype=np.int64)  # root's parent as in FLAME
JAW_FULL = np.arange(100, 400)  # weight 1 on the jaw joint
JAW_HALF = np.arange(400, 500)  # 0.5 jaw, 0.5 neck
ROOT_FULL = np.arange(0, 100)  # weight 1 on the root joint
# Vertices averaged by the joint regressor: root, neck, jaw (inside JAW_FULL), left eye, right eye.
JOINT_SOURCES = [np.arange(1000, 1010), np.arange(2000, 2010), np.arange(300, 310), np.arange(3000, 3004),
                 np.arange(3100, 3104)]


# -- fixture files ------------------------------------------------------------------------------
class _FakeCh:
    """Pickles like a chumpy ``Ch``: class ``chumpy.ch.Ch``, state dict with the value in 'x'."""

    def __init__(self, x: np.ndarray):
        self.x = x

    def __getstate__(self) -> dict:
        return {"x": self.x, "_cache": {"r": None, "drs": {}}, "_dirty_vars": set(), "label": None}


class _FakeChOp(_FakeCh):
    """A derived chumpy node (``chumpy.ch_ops.add``) whose state holds no array value."""

    def __getstate__(self) -> dict:
        return {"a": sys.modules["chumpy.ch"].Ch(self.x), "b": 1.0}  # called while pickling


def _pickle_with_fake_chumpy(obj: object) -> bytes:
    """Protocol-2 pickle of ``obj`` that references chumpy, old scipy and old numpy paths."""
    modules = {name: types.ModuleType(name) for name in ("chumpy", "chumpy.ch", "chumpy.ch_ops")}
    for cls, module, name in ((_FakeCh, "chumpy.ch", "Ch"), (_FakeChOp, "chumpy.ch_ops", "add")):
        fake = type(name, (cls,), {"__module__": module, "__qualname__": name})
        setattr(modules[module], name, fake)
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        data = pickle.dumps(_swap_fakes(obj, modules), protocol=2)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    data = data.replace(b"scipy.sparse._csc\ncsc_matrix\n", b"scipy.sparse.csc\ncsc_matrix\n")
    return data.replace(b"numpy._core.", b"numpy.core.")


def _swap_fakes(obj: object, modules: dict) -> object:
    """Replace _FakeCh values of a dict by instances of the registered chumpy-named classes."""
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if isinstance(value, _FakeCh):
            module, name = ("chumpy.ch_ops", "add") if isinstance(value, _FakeChOp) else ("chumpy.ch", "Ch")
            value = getattr(modules[module], name)(value.x)
        out[key] = value
    return out


def _weights() -> np.ndarray:
    """(V, 5) skinning weights, rows sum to 1, with designated root/jaw/half-jaw vertices."""
    rng = np.random.default_rng(1)
    weights = rng.random((V, J))
    weights[:, 2] = 0.0  # only the designated vertices follow the jaw
    weights /= weights.sum(1, keepdims=True)
    weights[ROOT_FULL] = np.eye(J)[0]
    weights[JAW_FULL] = np.eye(J)[2]
    weights[JAW_HALF] = 0.5 * (np.eye(J)[2] + np.eye(J)[1])
    return weights


def _j_regressor() -> scipy.sparse.csc_matrix:
    """(5, V) sparse regressor: each joint is the mean of a few vertices."""
    dense = np.zeros((J, V))
    for j, source in enumerate(JOINT_SOURCES):
        dense[j, source] = 1.0 / len(source)
    return scipy.sparse.csc_matrix(dense)


def flame_dict(n_cols: int = N_COLS) -> dict:
    """A FLAME-structured model dict with real sizes and dtypes (deterministic)."""
    rng = np.random.default_rng(0)
    k = np.arange(F)
    return {
        "v_template": _FakeCh(rng.normal(0.0, 0.05, (V, 3))),
        "shapedirs": _FakeCh(rng.normal(0.0, 1e-3, (V, 3, n_cols))),
        "posedirs": rng.normal(0.0, 1e-3, (V, 3, 36)),
        "J_regressor": _j_regressor(),
        "weights": _weights(),
        "kintree_table": np.stack([PARENTS, np.arange(J)]),
        "f": np.stack([k % V, (k + 1) % V, (k + 2) % V], axis=1).astype(np.uint32),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "J": _FakeCh(rng.normal(0.0, 0.05, (J, 3))),
    }


def write_flame(path: Path, model: dict) -> Path:
    path.write_bytes(_pickle_with_fake_chumpy(model))
    return path


@pytest.fixture(scope="module")
def full_dict() -> dict:
    return flame_dict()


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory, full_dict) -> Path:
    path = write_flame(tmp_path_factory.mktemp("flame") / "generic_model.pkl", full_dict)
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    return path


@pytest.fixture(scope="module")
def raw(full_dict) -> dict:
    """The fixture's arrays as written (float64, dense regressor)."""
    model = full_dict
    out = {k: (v.x if isinstance(v, _FakeCh) else v) for k, v in model.items()}
    out["J_regressor"] = model["J_regressor"].toarray()
    # The model stores float32: compare against the same values in float64.
    return {k: v.astype(np.float32).astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
            for k, v in out.items()}


@pytest.fixture(scope="module")
def loaded(flame_file) -> FLAMEModel:
    """The full-size fixture loaded once (warnings are errors: old paths must be remapped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_flame(flame_file)


@pytest.fixture()
def model(loaded) -> FLAMEModel:
    return copy.deepcopy(loaded).double()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    """Real vertex/face counts but only 10 blend shapes (fast to load)."""
    return write_flame(tmp_path_factory.mktemp("small") / "generic_model.pkl", flame_dict(n_cols=10))


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _pose(**joints: list[float]) -> torch.Tensor:
    """(1, 15) double pose with named joints set (global, neck, jaw, leye, reye)."""
    order = ["global_", "neck", "jaw", "leye", "reye"]
    pose = torch.zeros(1, 15, dtype=torch.float64)
    for name, value in joints.items():
        i = order.index(name)
        pose[0, 3 * i : 3 * i + 3] = torch.tensor(value, dtype=torch.float64)
    return pose


# -- loading ------------------------------------------------------------------------------------
def test_fixture_references_chumpy_and_old_scipy(flame_file):
    data = flame_file.read_bytes()
    assert data[:2] == b"\x80\x02"
    assert b"chumpy.ch\nCh\n" in data
    assert b"scipy.sparse.csc\ncsc_matrix\n" in data
    assert b"numpy.core.multiarray\n" in data


def test_load_shapes_and_dims(flame_file, loaded):
    model = loaded
    assert "chumpy" not in sys.modules
    assert model.name == "flame" and model.spec == f"flame:{flame_file}"
    assert model.num_vertices == V and model.faces.shape == (F, 3)
    assert (model.shape_dim, model.expression_dim, model.pose_dim, model.jaw_dim) == (300, 50, 15, 3)
    assert JAW_SLICE == slice(6, 9)
    assert model.v_template.shape == (V, 3) and model.v_template.dtype == torch.float32
    assert model.shapedirs.shape == (V, 3, 300) and model.exprdirs.shape == (V, 3, 50)
    assert model.posedirs.shape == (36, V * 3)
    assert model.J_regressor.shape == (J, V) and model.lbs_weights.shape == (V, J)
    assert model.parents.tolist() == [-1, 0, 1, 1, 1]
    assert bool(model.front_mask.all()) and not model.has_landmarks
    assert model.info().to_dict()["num_faces"] == F


def test_dims_are_clipped_to_the_file(raw, small_file):
    data = {k: raw[k] for k in ("v_template", "posedirs", "J_regressor", "weights", "f")}
    data.update(shapedirs=raw["shapedirs"][..., :320], parents=np.array([-1, 0, 1, 1, 1]))
    model = FLAMEModel(data, spec="flame:test", shape_dim=400, expression_dim=50)
    assert (model.shape_dim, model.expression_dim) == (300, 20)
    model = FLAMEModel(data, spec="flame:test", shape_dim=10, expression_dim=5)
    assert model.shapedirs.shape == (V, 3, 10) and model.exprdirs.shape == (V, 3, 5)
    np.testing.assert_array_equal(model.exprdirs[..., 4].numpy(), raw["shapedirs"][..., 304].astype(np.float32))
    model = load_flame(small_file)
    assert (model.shape_dim, model.expression_dim) == (10, 0)


def test_forward_zero_is_template(model, raw):
    out = model()
    assert out.vertices.shape == (1, V, 3) and out.landmarks68 is None
    np.testing.assert_allclose(out.vertices[0].numpy(), raw["v_template"], atol=1e-7)
    np.testing.assert_allclose(out.joints[0].numpy(), raw["J_regressor"] @ raw["v_template"], atol=1e-7)


def test_shape_and_expression_coefficients_are_linear(model, raw):
    shape = torch.zeros(2, 300, dtype=torch.float64)
    shape[0, 7], shape[1, 123] = 2.5, -1.25
    expression = torch.zeros(2, 50, dtype=torch.float64)
    expression[1, 3] = 0.5
    out = model(shape=shape, expression=expression)
    sd = raw["shapedirs"]
    expected0 = raw["v_template"] + 2.5 * sd[..., 7]
    expected1 = raw["v_template"] - 1.25 * sd[..., 123] + 0.5 * sd[..., 303]  # expression starts at column 300
    np.testing.assert_allclose(out.vertices[0].numpy(), expected0, atol=1e-7)
    np.testing.assert_allclose(out.vertices[1].numpy(), expected1, atol=1e-7)


def _chumpy_node(kind: str, **state) -> ChumpyStandIn:
    node = type(kind, (ChumpyStandIn,), {"chumpy_class": f"chumpy.reordering.{kind}"})()
    node.__setstate__(state)
    return node


def test_derived_chumpy_nodes_and_old_sparse_layout():
    x = np.arange(12.0).reshape(3, 4)
    leaf = _chumpy_node("Ch", x=x)
    np.testing.assert_array_equal(to_array(_chumpy_node("transpose", a=leaf, axes=(1, 0)), "t"), x.T)
    np.testing.assert_array_equal(to_array(_chumpy_node("Reshape", a=leaf, newshape=(4, 3)), "t"), x.reshape(4, 3))
    picked = _chumpy_node("Select", a=leaf, idxs=np.array([1, 5, 7]), preferred_shape=(3, 1))
    np.testing.assert_array_equal(to_array(picked, "t"), [[1.0], [5.0], [7.0]])
    cached = _chumpy_node("add", a=leaf, b=1.0, _cache={"r": x + 1})
    np.testing.assert_array_equal(to_array(cached, "t"), x + 1)
    old = scipy.sparse.csc_matrix(x)
    old.__dict__["shape"] = old.__dict__.pop("_shape")  # attribute layout of an older scipy
    np.testing.assert_array_equal(to_array(old, "t"), x)


# -- skinning -----------------------------------------------------------------------------------
def test_jaw_rotation_moves_only_jaw_vertices(model, raw):
    model.posedirs.zero_()
    angle = 0.3
    out = model(pose=_pose(jaw=[angle, 0.0, 0.0]))
    v = raw["v_template"]
    jaw = (raw["J_regressor"] @ v)[2]
    rot = _rot_x(angle)
    moved = out.vertices[0].numpy()
    expected_full = (v[JAW_FULL] - jaw) @ rot.T + jaw
    np.testing.assert_allclose(moved[JAW_FULL], expected_full, atol=1e-12)
    half = 0.5 * ((v[JAW_HALF] - jaw) @ rot.T + jaw) + 0.5 * v[JAW_HALF]  # 0.5 jaw, 0.5 (unposed) neck
    np.testing.assert_allclose(moved[JAW_HALF], half, atol=1e-12)
    still = np.setdiff1d(np.arange(V), np.concatenate([JAW_FULL, JAW_HALF]))
    np.testing.assert_allclose(moved[still], v[still], atol=1e-12)
    assert np.abs(moved[JAW_FULL] - v[JAW_FULL]).max() > 1e-3
    # One vertex by hand: rotation about x leaves x unchanged and turns (y, z) about the joint.
    d = v[JAW_FULL[0]] - jaw
    c, s = math.cos(angle), math.sin(angle)
    hand = jaw + np.array([d[0], c * d[1] - s * d[2], s * d[1] + c * d[2]])
    np.testing.assert_allclose(moved[JAW_FULL[0]], hand, atol=1e-12)


def test_pose_correctives_are_added(model, raw):
    angle = 0.3
    out = model(pose=_pose(jaw=[angle, 0.0, 0.0]))
    v = raw["v_template"]
    jaw = (raw["J_regressor"] @ v)[2]
    rot = _rot_x(angle)
    feature = np.zeros(36)
    feature[9:18] = (rot - np.eye(3)).ravel()  # non-root joint #1 of 4 is the jaw
    offsets = np.einsum("vcp,p->vc", raw["posedirs"], feature)
    moved = out.vertices[0].numpy()
    np.testing.assert_allclose(moved[JAW_FULL], (v[JAW_FULL] + offsets[JAW_FULL] - jaw) @ rot.T + jaw, atol=1e-12)
    still = np.arange(500, V)
    np.testing.assert_allclose(moved[still], v[still] + offsets[still], atol=1e-12)
    assert np.abs(offsets).max() > 1e-4


def test_global_rotation_about_y(model, raw):
    out = model(pose=_pose(global_=[0.0, math.pi / 2, 0.0]))
    v = raw["v_template"]
    root = (raw["J_regressor"] @ v)[0]
    for k in (ROOT_FULL[0], 4000):  # fully root-weighted and a mixed-weight vertex
        d = v[k] - root
        expected = root + np.array([d[2], d[1], -d[0]])  # 90 deg about y: x -> -z, z -> x
        np.testing.assert_allclose(out.vertices[0, k].numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(out.joints[0, 0].numpy(), root, atol=1e-12)


def test_rodrigues_hand_computed():
    angle = 0.4
    c, s = math.cos(angle), math.sin(angle)
    about_z = torch.tensor([[0.0, 0.0, angle]], dtype=torch.float64)
    expected_z = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(rodrigues(about_z)[0], expected_z)
    # 120 degrees about (1,1,1) cycles the axes: x -> y -> z -> x.
    cyc = torch.full((1, 3), 2 * math.pi / 3 / math.sqrt(3), dtype=torch.float64)
    expected_cyc = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(rodrigues(cyc)[0], expected_cyc)
    zero = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    rot = rodrigues(zero)
    torch.testing.assert_close(rot, torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    rot.sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_sample_prior(model):
    a = model.sample_prior(4, generator=torch.Generator().manual_seed(3), expression=True)
    b = model.sample_prior(4, generator=torch.Generator().manual_seed(3), expression=True)
    assert a.shape.shape == (4, 300) and a.expression.shape == (4, 50) and a.pose.shape == (4, 15)
    assert torch.equal(a.shape, b.shape) and torch.equal(a.pose, b.pose)
    assert a.shape.abs().max() <= 3.0 and a.expression.abs().max() > 0
    jaw = a.pose[:, JAW_SLICE.start]
    assert (jaw >= 0).all() and (jaw <= 0.25).all()
    others = torch.ones(15, dtype=torch.bool)
    others[JAW_SLICE.start] = False
    assert (a.pose[:, others] == 0).all()
    neutral = model.sample_prior(2, generator=torch.Generator().manual_seed(0))
    assert (neutral.expression == 0).all() and (neutral.pose == 0).all()


# -- code layout, clamping, fingerprint, records -------------------------------------------------
def test_split_code_puts_the_jaw_in_pose_6_to_9(loaded):
    model = loaded
    assert model.code_dim == 53
    code = torch.arange(2 * 53, dtype=torch.float32).reshape(2, 53)
    expression, pose = model.split_code(code, jaw_scale=0.5)
    assert expression.shape == (2, 50) and pose.shape == (2, 15)
    torch.testing.assert_close(expression, code[:, :50])
    expected = torch.zeros(2, 15)
    expected[0, 6:9] = torch.tensor([50.0, 51.0, 52.0]) * 0.5  # jaw = code[50:53], scaled
    expected[1, 6:9] = torch.tensor([103.0, 104.0, 105.0]) * 0.5
    torch.testing.assert_close(pose, expected)
    expression, pose = model.split_code(code)
    pose[:, 0:3] = 0.7  # a global rotation is not part of the code
    torch.testing.assert_close(model.join_code(expression, pose), code)
    batched = model.split_code(code.reshape(1, 2, 53))[1]  # (..., code_dim): leading dims are kept
    assert batched.shape == (1, 2, 15) and batched[0, 1, 8] == 105.0
    with pytest.raises(ValueError, match=r"\(\.\.\., 53\)"):
        model.split_code(code[:, :50])


def test_split_code_drives_the_jaw_joint(model):
    code = torch.zeros(1, 53, dtype=torch.float64)
    code[0, 50] = 0.3
    expression, pose = model.split_code(code)
    torch.testing.assert_close(model(expression=expression, pose=pose).vertices,
                               model(pose=_pose(jaw=[0.3, 0.0, 0.0])).vertices)


def test_flame_clamps_leave_coefficients_unchanged(loaded):
    shape = torch.full((2, 4, 300), 9.0)
    code = torch.full((3, 53), -7.0)
    assert torch.equal(loaded.clamp_shape(shape), shape)
    assert torch.equal(loaded.clamp_expression(code), code)
    with pytest.raises(ValueError, match="code must have shape"):
        loaded.clamp_expression(code[:, :50])  # the full code is expected, jaw included
    with pytest.raises(ValueError, match="shape must have shape"):
        loaded.clamp_shape(shape[..., :10])


def test_fingerprint_stable_and_independent_of_dtype(flame_file, loaded):
    again = load_flame(flame_file).double()  # hashed as float32: the cast does not change it
    assert again.fingerprint() == loaded.fingerprint() and len(loaded.fingerprint()) == 64
    assert loaded.info().to_dict()["fingerprint"] == loaded.fingerprint()
    fewer = load_flame(flame_file, shape_dim=20)
    assert fewer.fingerprint() != loaded.fingerprint()


def test_flame_record_with_options_round_trips(flame_file, tmp_path):
    masks = _write_masks(tmp_path / "masks.pkl")
    idx, bary = _landmark_arrays()
    lmk = tmp_path / "lmk.npz"
    np.savez(lmk, lmk_face_idx=idx, lmk_b_coords=bary)
    model = load_face_model(f"flame:{flame_file}", shape_dim=20, expression_dim=10, masks=masks, landmarks=lmk)
    record = json.loads(json.dumps(model.info().to_dict()))  # as stored in a checkpoint
    assert record["options"] == {"masks": str(masks), "landmarks": str(lmk), "shape_dim": 20, "expression_dim": 10}
    again = load_face_model_from_record(record)
    assert (again.shape_dim, again.expression_dim, again.code_dim) == (20, 10, 13)
    assert again.has_landmarks and int(again.front_mask.sum()) == len(FACE_REGION)
    assert again.fingerprint() == model.fingerprint()
    assert load_flame(flame_file).info().to_dict()["options"] == {}  # defaults are not recorded
    del record["options"]  # without its options the spec gives another model
    with pytest.raises(FaceModelError, match="shape_dim 20 vs 300"):
        load_face_model_from_record(record)


def test_record_of_another_flame_content_is_refused(flame_file):
    record = load_flame(flame_file, shape_dim=20).info().to_dict()
    record["fingerprint"] = "0" * 64
    with pytest.raises(FaceModelError) as info:
        load_face_model_from_record(record)
    assert "\n" not in str(info.value) and "other content" in str(info.value)
    with pytest.raises(FaceModelError, match="unknown face-model option"):
        load_face_model(f"flame:{flame_file}", shapes=3)
    with pytest.raises(FaceModelError, match="shape_dim must be an integer"):
        load_face_model(f"flame:{flame_file}", shape_dim="20")


# -- extra files --------------------------------------------------------------------------------
FACE_REGION = np.arange(1000, 2800)


def _write_masks(path: Path) -> Path:
    masks = {"face": FACE_REGION, "nose": np.arange(1500, 1600), "neck": np.arange(4000, 4200)}
    path.write_bytes(_pickle_with_fake_chumpy(masks))
    return path


def _landmark_arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    bary = rng.random((68, 3)).astype(np.float32)
    return rng.integers(0, F, 68), bary / bary.sum(1, keepdims=True)


def test_masks_and_deca_landmarks(small_file, tmp_path, raw):
    idx, bary = _landmark_arrays()
    lmk = tmp_path / "landmark_embedding.npy"
    np.save(lmk, {"full_lmk_faces_idx": idx[None], "full_lmk_bary_coords": torch.from_numpy(bary[None]),
                  "static_lmk_faces_idx": idx[:51]}, allow_pickle=True)
    model = load_flame(small_file, masks=_write_masks(tmp_path / "m.pkl"), landmarks=lmk).double()
    assert int(model.front_mask.sum()) == len(FACE_REGION) and bool(model.front_mask[FACE_REGION].all())
    out = model(shape=torch.zeros(3, model.shape_dim, dtype=torch.float64))
    assert out.landmarks68.shape == (3, 68, 3) and out.landmarks7.shape == (3, 7, 3)
    tri = raw["f"][idx[0]].astype(np.int64)
    np.testing.assert_allclose(out.landmarks68[0, 0].numpy(), bary[0] @ raw["v_template"][tri], atol=1e-6)


def test_npz_landmarks_and_front_indices(small_file, tmp_path):
    idx, bary = _landmark_arrays()
    lmk = tmp_path / "lmk.npz"
    np.savez(lmk, lmk_face_idx=idx, lmk_b_coords=bary)
    front = tmp_path / "front.npy"
    np.save(front, np.arange(10, 60))
    model = load_flame(small_file, masks=_write_masks(tmp_path / "m.pkl"), landmarks=lmk, front_indices=front)
    assert model.has_landmarks and int(model.front_mask.sum()) == 50


def test_auto_discovery_beside_the_pickle(small_file, tmp_path):
    local = tmp_path / "generic_model.pkl"
    shutil.copyfile(small_file, local)
    _write_masks(tmp_path / "FLAME_masks.pkl")
    model = load_flame(local)
    assert int(model.front_mask.sum()) == len(FACE_REGION) and not model.has_landmarks
    idx, bary = _landmark_arrays()
    np.save(tmp_path / "landmark_embedding.npy", {"full_lmk_faces_idx": idx[None], "full_lmk_bary_coords": bary[None]})
    np.save(tmp_path / "ofer_frontindices.npy", np.arange(7))
    model = load_flame(local)
    assert int(model.front_mask.sum()) == 7 and model.has_landmarks


# -- errors -------------------------------------------------------------------------------------
def _error(*args, **kwargs) -> str:
    with pytest.raises(FaceModelError) as info:
        load_flame(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith("flame: ")
    return message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pkl"
    assert _error(path) == f"flame: {path}: file not found"


def test_missing_key(tmp_path):
    model = flame_dict(n_cols=10)
    del model["posedirs"]
    path = write_flame(tmp_path / "x.pkl", model)
    assert _error(path) == f"flame: {path}: missing key 'posedirs'"


def test_not_a_pickle(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_text("hello, I am not a pickle\nsecond line\n")
    assert _error(path).startswith(f"flame: {path}: not a readable FLAME pickle (")
    list_path = tmp_path / "list.pkl"
    list_path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    assert "expected a dict" in _error(list_path)


def test_bad_shape_and_unconvertible_chumpy(tmp_path):
    model = flame_dict(n_cols=10)
    model["weights"] = model["weights"][:, :4]
    path = write_flame(tmp_path / "w.pkl", model)
    assert _error(path) == f"flame: {path}: 'weights' has shape ({V}, 4), expected ({V}, 5)"
    model = flame_dict(n_cols=10)
    model["shapedirs"] = _FakeChOp(model["shapedirs"].x)
    path = write_flame(tmp_path / "c.pkl", model)
    assert "cannot convert chumpy object chumpy.ch_ops.add" in _error(path)


def test_bad_extra_files(small_file, tmp_path):
    assert "file not found" in _error(small_file, masks=tmp_path / "none.pkl")
    bad = tmp_path / "lmk.npz"
    np.savez(bad, lmk_face_idx=np.arange(51), lmk_b_coords=np.ones((51, 3)) / 3)
    assert "68 points" in _error(small_file, landmarks=bad)


# -- real auxiliary files -------------------------------------------------------------------------
def _shared_aux() -> Path:
    root = Path(os.environ.get("OFER_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
    return root / "assets" / "facemodels" / "flame_aux"


@pytest.mark.skipif(
    not _shared_aux().is_dir(), reason="shared FLAME auxiliary files (shared/assets/facemodels/flame_aux) not present"
)
def test_real_auxiliary_files(small_file):
    aux = _shared_aux()
    model = load_flame(
        small_file,
        masks=aux / "FLAME_masks.pkl",
        landmarks=aux / "landmark_embedding.npy",
        front_indices=aux / "ofer_frontindices.npy",
    )
    assert int(model.front_mask.sum()) == 1785
    assert model.has_landmarks and model().landmarks68.shape == (1, 68, 3)
    masks_only = load_flame(small_file, masks=aux / "FLAME_masks.pkl", landmarks=aux / "landmark_embedding.npy")
    assert int(masks_only.front_mask.sum()) == 1787
