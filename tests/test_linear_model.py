import numpy as np
import pytest
import torch

from conftest import FLAME_BASIS_NPZ, ICT_NPZ, require
from ofer import load_face_model
from ofer.errors import FaceModelError
from ofer.facemodels.linear import guess_units, sample_blendshape_weights


def write_tiny(path, **extra):
    """A 4-vertex model in millimetres with one piecewise identity target and one expression."""
    arrays = dict(
        v_template=np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], np.float32),
        faces=np.array([[0, 1, 2], [0, 2, 3]], np.int32),
        shapedirs=np.zeros((4, 3, 1), np.float32),
        shapedirs_neg=np.zeros((4, 3, 1), np.float32),
        exprdirs=np.zeros((4, 3, 1), np.float32),
        units=np.asarray("mm"),
    )
    arrays["shapedirs"][1, 0, 0] = 10.0  # +1 moves vertex 1 by +10 mm in x
    arrays["shapedirs_neg"][2, 1, 0] = 4.0  # -1 moves vertex 2 by +4 mm in y (not a mirror image)
    arrays["exprdirs"][3, 2, 0] = 20.0
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def test_piecewise_identity_and_expression_by_hand(tmp_path):
    model = load_face_model(f"npz:{write_tiny(tmp_path / 'tiny.npz')}")
    assert (model.shape_dim, model.expression_dim, model.num_vertices) == (1, 1, 4)
    out = model(torch.tensor([[0.5], [-0.5]]), torch.tensor([[1.0], [0.0]])).vertices
    expected = model.v_template.expand(2, 4, 3).clone()
    expected[0, 1, 0] += 0.005  # 0.5 * 10 mm
    expected[0, 3, 2] += 0.020
    expected[1, 2, 1] += 0.002  # 0.5 * 4 mm on the negative side
    torch.testing.assert_close(out, expected)
    assert out.shape == (2, 4, 3)
    assert model(torch.zeros(1, 1)).landmarks68 is None  # no embedding in this file


def test_global_rotation_about_pivot(tmp_path):
    model = load_face_model(f"npz:{write_tiny(tmp_path / 't.npz', rotation_center=np.zeros(3, np.float32))}")
    pose = torch.tensor([[0.0, np.pi / 2, 0.0]])  # 90 degrees about +y: x -> -z
    v = model(pose=pose).vertices[0]
    torch.testing.assert_close(v[1], torch.tensor([0.0, 0.0, -0.1]), atol=1e-6, rtol=0)
    torch.testing.assert_close(v[3], torch.tensor([0.1, 0.0, 0.0]), atol=1e-6, rtol=0)


def test_bad_files(tmp_path):
    with pytest.raises(FaceModelError, match="file not found"):
        load_face_model(f"npz:{tmp_path / 'none.npz'}")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(FaceModelError, match="not a readable .npz"):
        load_face_model(f"npz:{tmp_path / 'text.npz'}")
    np.savez(tmp_path / "partial.npz", v_template=np.zeros((3, 3)))
    with pytest.raises(FaceModelError, match="missing key 'faces'"):
        load_face_model(f"npz:{tmp_path / 'partial.npz'}")
    with pytest.raises(FaceModelError, match="unknown face model"):
        load_face_model("bfm:/x")


def test_shape_argument_checked(tmp_path):
    model = load_face_model(f"npz:{write_tiny(tmp_path / 'tiny.npz')}")
    with pytest.raises(ValueError, match=r"\(B, 1\)"):
        model(torch.zeros(2, 3))


def test_guess_units():
    head = np.array([[0, 0, 0], [0.16, 0.23, 0.2]])
    assert [guess_units(head * k) for k in (1, 10, 100, 1000)] == ["m", "dm", "cm", "mm"]


def test_blendshape_prior_in_range_and_seeded():
    names = ["eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight", "tongueOut"]
    a = sample_blendshape_weights(200, names, torch.Generator().manual_seed(1), inactive=("tongueOut",))
    b = sample_blendshape_weights(200, names, torch.Generator().manual_seed(1), inactive=("tongueOut",))
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert (a[:, 5] == 0).all()
    both = (a[:, 0] > 0) == (a[:, 1] > 0)  # left and right of a group switch on together
    assert both.all() and (a[:, 0] > 0).any()


def test_ict_facekit():
    model = load_face_model(f"npz:{require(ICT_NPZ)}")
    assert model.num_vertices == 9409 and model.units_in_file == "cm"
    assert (model.shape_dim, model.expression_dim) == (100, 53)
    extent = (model.v_template.max(0).values - model.v_template.min(0).values).max()
    assert 0.15 < float(extent) < 0.5  # metres
    sample = model.sample_prior(3, torch.Generator().manual_seed(0), expression=True)
    v = model(sample.shape, sample.expression).vertices
    assert v.shape == (3, 9409, 3) and not torch.equal(v[0], v[1])


def test_flame2023_open_identity_basis():
    model = load_face_model(f"npz:{require(FLAME_BASIS_NPZ)}")
    assert (model.num_vertices, model.shape_dim, model.expression_dim) == (5023, 60, 0)
    beta = torch.zeros(1, 60)
    beta[0, 0] = 1.0
    moved = model(beta).vertices[0] - model.v_template
    torch.testing.assert_close(moved, model.shapedirs[..., 0])
