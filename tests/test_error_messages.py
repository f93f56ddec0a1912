"""Error messages that name the real problem (and never advise an unsafe fix)."""

import os

import numpy as np
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


def test_a_binary_manifest_is_one_line(tmp_path):
    from ofer.data.shards import Manifest

    (tmp_path / "manifest.json").write_bytes(b"\x9d\xff\x00" + os.urandom(200))
    with pytest.raises(OferError, match="damaged manifest .not JSON text."):
        Manifest.load(tmp_path)


@pytest.mark.parametrize("change, words", [
    ({"faces": np.zeros((0, 3), np.int64)}, "faces must be (F, 3) indices into 10 vertices, F > 0"),
    ({"v_template": np.array("abc")}, "v_template must hold numbers"),
    ({"v_template": np.zeros((0, 3), np.float32)}, "v_template must be (V, 3) with V > 0"),
    ({"shapedirs": np.full((10, 3, 2), np.nan, np.float32)}, "shapedirs contains NaN or infinite values"),
])
def test_malformed_npz_face_models_are_one_line(tmp_path, change, words):
    arrays = {"v_template": np.zeros((10, 3), np.float32), "faces": np.array([[0, 1, 2]]),
              "shapedirs": np.zeros((10, 3, 2), np.float32), **change}
    np.savez(tmp_path / "model.npz", **arrays)
    with pytest.raises(OferError) as info:
        load_face_model(f"npz:{tmp_path / 'model.npz'}")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_zip_flagged_as_strongly_encrypted_is_one_line(tmp_path):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, v_template=np.zeros((10, 3), np.float32), faces=np.array([[0, 1, 2]]),
             shapedirs=np.zeros((10, 3, 2), np.float32))
    data = bytearray(buffer.getvalue())
    for start in range(len(data) - 4):  # set bit 6 (strong encryption) of every header's flags
        if data[start:start + 4] in (b"PK\x03\x04", b"PK\x01\x02"):
            flags = start + (6 if data[start + 2] == 3 else 8)
            data[flags] |= 0x40
    (tmp_path / "model.npz").write_bytes(bytes(data))
    with pytest.raises(OferError, match="not a readable .npz file") as info:
        load_face_model(f"npz:{tmp_path / 'model.npz'}")
    assert "\n" not in str(info.value)
    (tmp_path / "shard.npz").write_bytes(bytes(data))
    with pytest.raises(OferError, match="damaged shard"):
        read_npz(tmp_path / "shard.npz")
