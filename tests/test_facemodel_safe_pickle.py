"""Face-model files are read without running pickled code (FLAME pickles, masks, landmark .npy/.npz)."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from ofer.errors import FaceModelError, OferError
from ofer.facemodels.flame import load_flame
from ofer.facemodels.flame_io import read_face_mask, read_landmarks
from ofer.io.safe_pickle import UnsafePickleError, load_numpy, load_pickle


class _Payload:
    """Pickles as ``func(*args)``: what a malicious file runs on ``pickle.load``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, _Payload]:
    return {
        f"{os.system.__module__}.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_flame_pickle_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    for qualified, payload in _payloads(marker).items():
        path = tmp_path / "generic_model.pkl"
        path.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3)), "bs_style": payload}, protocol=protocol))
        with pytest.raises(FaceModelError) as info:
            load_flame(path)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"flame: {path}: refused to load {qualified}")
        assert not marker.exists(), f"{qualified} ran while loading"


def test_malicious_masks_and_landmark_files_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[f"{os.system.__module__}.system"]
    masks = tmp_path / "FLAME_masks.pkl"
    masks.write_bytes(pickle.dumps({"face": payload}, protocol=0))
    with pytest.raises(FaceModelError, match="refused to load"):
        read_face_mask(masks, 10)
    npy = tmp_path / "landmark_embedding.npy"
    np.save(npy, np.array({"full_lmk_faces_idx": payload}, dtype=object), allow_pickle=True)
    npz = tmp_path / "lmk.npz"
    np.savez(npz, lmk_face_idx=np.array([payload], dtype=object), lmk_b_coords=np.ones((68, 3)) / 3)
    for path in (npy, npz):
        with pytest.raises(FaceModelError, match="refused to load"):
            read_landmarks(path, 10)
    assert not marker.exists()


def test_unknown_module_is_refused_before_import(tmp_path):
    data = b"\x80\x02cofer_not_a_module_x\nGadget\nq\x00)\x81q\x01."  # protocol-2 NEWOBJ of a made-up class
    with pytest.raises(UnsafePickleError, match=r"ofer_not_a_module_x\.Gadget") as info:
        load_pickle(io.BytesIO(data))
    assert isinstance(info.value, OferError) and isinstance(info.value, pickle.UnpicklingError)
    assert "ofer_not_a_module_x" not in sys.modules
    evil_codec = pickle.dumps(b"x", protocol=2).replace(b"latin1", b"rot_13")  # _codecs.encode(..., "rot_13")
    assert b"rot_13" in evil_codec
    with pytest.raises(pickle.UnpicklingError, match="rot_13"):
        load_pickle(io.BytesIO(evil_codec))


def test_data_classes_still_load(tmp_path):
    value = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(2.5), "i": np.int64(-3),
             "set": {1, 2}, "frozen": frozenset({3}), "csc": scipy.sparse.csc_matrix(np.eye(3)),
             "csr": scipy.sparse.csr_matrix(np.eye(2)), "t": torch.arange(4)}
    for protocol in (0, 2, 4):
        loaded = load_pickle(io.BytesIO(pickle.dumps(value, protocol=protocol)))
        np.testing.assert_array_equal(loaded["a"], value["a"])
        assert loaded["s"] == 2.5 and loaded["i"] == -3 and loaded["set"] == {1, 2} and loaded["frozen"] == {3}
        np.testing.assert_array_equal(loaded["csc"].toarray(), np.eye(3))
        np.testing.assert_array_equal(loaded["csr"].toarray(), np.eye(2))
        assert torch.equal(loaded["t"], value["t"])
    path = tmp_path / "obj.npy"
    np.save(path, np.array({"k": np.arange(3)}, dtype=object), allow_pickle=True)
    np.testing.assert_array_equal(load_numpy(path).item()["k"], np.arange(3))
    np.save(tmp_path / "plain.npy", np.arange(4))
    np.testing.assert_array_equal(load_numpy(tmp_path / "plain.npy"), np.arange(4))



def test_unraisable_noise_of_a_failed_unpickling_is_not_printed(capfd):
    import gc
    import sys

    from ofer.io.safe_pickle import _quiet_unraisable

    class Noisy:
        def __del__(self):
            raise SystemError("deallocated bytearray object has exported buffers")

    hook = sys.unraisablehook
    with _quiet_unraisable():
        Noisy()
        gc.collect()
    assert sys.unraisablehook is hook and "SystemError" not in capfd.readouterr().err
