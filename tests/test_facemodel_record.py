"""Linear face models: code layout, clamping, fingerprint, records that reload the model, checkpoint checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ofer import load_face_model
from ofer.errors import CheckpointError, FaceModelError
from ofer.facemodels import load_face_model_from_record
from ofer.facemodels.base import fingerprint_arrays
from ofer.runs import RunConfig, check_face_model
from test_linear_model import write_tiny


@pytest.fixture()
def tiny(tmp_path):
    return load_face_model(f"npz:{write_tiny(tmp_path / 'tiny.npz')}")


def test_linear_split_code_has_no_jaw(tiny):
    assert (tiny.code_dim, tiny.jaw_dim, tiny.pose_dim) == (1, 0, 3)
    code = torch.tensor([[0.25], [0.75]])
    expression, pose = tiny.split_code(code, jaw_scale=2.0)
    assert torch.equal(expression, code) and torch.equal(pose, torch.zeros(2, 3))
    rotated = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 1.0]])  # the global rotation is not in the code
    assert torch.equal(tiny.join_code(expression, rotated), code)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        tiny.join_code(expression, rotated[:, :2])


def test_linear_clamps(tmp_path):
    path = write_tiny(tmp_path / "c.npz", shape_lo=np.array([-0.5], np.float32), shape_hi=np.array([0.25], np.float32),
                      expression_names=np.asarray(["jawOpen"]))
    model = load_face_model(f"npz:{path}")
    shape = torch.tensor([[[-1.0], [0.1], [1.0]]])  # (B, N, S)
    torch.testing.assert_close(model.clamp_shape(shape), torch.tensor([[[-0.5], [0.1], [0.25]]]))
    code = torch.tensor([[-0.2], [0.4], [1.3]])
    torch.testing.assert_close(model.clamp_expression(code), torch.tensor([[0.0], [0.4], [1.0]]))  # blendshape weights
    gaussian = load_face_model(f"npz:{write_tiny(tmp_path / 'g.npz')}")  # no names: gaussian expression prior
    assert torch.equal(gaussian.clamp_expression(code), code)
    torch.testing.assert_close(gaussian.clamp_shape(torch.tensor([[-4.0], [4.0]])), torch.tensor([[-3.0], [3.0]]))
    with pytest.raises(ValueError, match="shape must have shape"):
        model.clamp_shape(torch.zeros(2, 3))


def test_fingerprint_tells_apart_same_dimensions_other_content(tmp_path, tiny):
    other_dirs = np.zeros((4, 3, 1), np.float32)
    other_dirs[3, 2, 0] = 21.0  # one expression displacement differs by 1 mm
    other = load_face_model(f"npz:{write_tiny(tmp_path / 'other.npz', exprdirs=other_dirs)}")
    ours, theirs = tiny.info().to_dict(), other.info().to_dict()
    same_dims = ("num_vertices", "num_faces", "shape_dim", "expression_dim", "pose_dim", "jaw_dim")
    assert all(ours[k] == theirs[k] for k in same_dims)
    assert len(ours["fingerprint"]) == 64 and ours["fingerprint"] != theirs["fingerprint"]
    again = load_face_model(f"npz:{tmp_path / 'tiny.npz'}")
    assert again.fingerprint() == tiny.fingerprint()
    config = RunConfig(network="idgen", face_model=ours, encoders={}, net={})
    check_face_model(config, again.info().to_dict(), "run")  # the same model passes
    with pytest.raises(CheckpointError) as info:
        check_face_model(config, theirs, "run")
    assert "\n" not in str(info.value) and "fingerprint" in str(info.value)


def test_fingerprint_covers_mask_landmarks_and_dtype():
    base = {"v": torch.zeros(2, 3), "mask": torch.tensor([True, False]), "idx": torch.tensor([0, 1])}
    reference = fingerprint_arrays(base)
    assert fingerprint_arrays({**base, "v": torch.zeros(2, 3, dtype=torch.float64)}) == reference
    assert fingerprint_arrays({**base, "mask": torch.tensor([True, True])}) != reference
    assert fingerprint_arrays({**base, "idx": torch.tensor([1, 0])}) != reference
    assert fingerprint_arrays({**base, "v": torch.zeros(3, 2)}) != reference  # same bytes, other shape


def test_npz_record_round_trip_and_changed_file(tmp_path):
    path = write_tiny(tmp_path / "m.npz")
    model = load_face_model(f"npz:{path}", name="tiny-head")
    record = model.info().to_dict()
    assert record["options"] == {"name": "tiny-head"} and record["name"] == "tiny-head"
    again = load_face_model_from_record(record)
    assert again.name == "tiny-head" and again.fingerprint() == model.fingerprint()
    write_tiny(path, rotation_center=np.ones(3, np.float32))  # the file changed since the record was made
    with pytest.raises(FaceModelError, match="other content"):
        load_face_model_from_record(record)


@pytest.mark.parametrize(
    "record, message",
    [
        ("npz:x", "not a face-model record"),
        ({"name": "x"}, "not a face-model record"),
        ({"spec": "default", "options": [1]}, "options must be a mapping"),
        ({"spec": "default", "options": {"shape_dim": 3}}, "takes no options"),
        ({"spec": "npz:/x.npz", "options": {"masks": "m.pkl"}}, "unknown face-model option"),
        ({"spec": "bfm:/x"}, "unknown face model"),
    ],
)
def test_bad_records(record, message):
    with pytest.raises(FaceModelError, match=message) as info:
        load_face_model_from_record(record)
    assert "\n" not in str(info.value)
