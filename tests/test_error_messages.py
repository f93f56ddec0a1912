"""Error messages that name the real problem (and never advise an unsafe fix)."""

import os

import pytest

from ofer.data.shards import read_npz
from ofer.errors import OferError
from ofer.evaluation.now.folders import load_landmarks
from ofer.facemodels import load_face_model


@pytest.mark.parametrize("name, read", [
    ("shard.npz", read_npz),
    ("model.npz", lambda p: load_face_model(f"npz:{p}")),
    ("kpt7.npy", load_landmarks),
])
def test_random_bytes_in_a_numpy_file_are_not_called_pickled_data(tmp_path, name, read):
    path = tmp_path / name
    path.write_bytes(os.urandom(600))
    with pytest.raises(OferError) as info:
        read(path)
    message = str(info.value)
    assert "not a numpy .npy/.npz file" in message or "zip" in message.lower()
    assert "allow_pickle" not in message and "pickle.load" not in message and "\n" not in message
