"""``--method fit``: the face model fitted to MediaPipe's landmarks, written like every other method."""

import json
import re

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED, require
from ofer.cli.main import main
from ofer.errors import OferError
from ofer.facemodels.base import vertices_to_landmarks
from ofer.io.mesh import load_mesh
from ofer.methods import ReconstructionSettings, available, get

PHOTO = SHARED / "assets/faces/obama.jpg"


def test_fit_is_registered_and_listed(capsys):
    cls = get("fit")
    assert "fit" in available() and cls.label == "landmark fit" and not cls.needs_run and cls.produces_meshes
    assert main(["info"]) == 0
    out = capsys.readouterr().out  # (the name column is as wide as the longest registered name, tests' included)
    assert re.search(r"^  fit +classic deterministic optimisation", out, re.M)
    assert re.search(r"^  fit-photometric +the landmark fit refined on the photo's colours", out, re.M)


def test_only_fit_photometric_uses_the_pictures_colours():
    from ofer.fitting import PHOTOMETRIC_STEPS

    assert get("fit").default_options().photometric_steps == 0
    assert get("fit-photometric").default_options().photometric_steps == PHOTOMETRIC_STEPS > 0


def test_fit_needs_images(default_model):
    method = get("fit").from_run(face_model=default_model)
    with pytest.raises(OferError, match="method 'fit' needs images, not embeddings"):
        method.reconstruct_embeddings(np.zeros((1, 512)), np.zeros((1, 8)), ReconstructionSettings(), ["x"])


def test_eval_runs_fit_on_the_protocol_pictures_and_names_one_without_a_face(tmp_path, capsys):
    import test_eval_protocol as T

    shape, expression = T.coefficients(2, 1)
    front = np.repeat(T._model().front_mask.numpy()[None], 2, 0)
    arrays = {"shape": shape, "expression": expression, "arcface": np.zeros((2, 4), np.float32),
              "appearance": np.zeros((2, 3), np.float32), "front": T.pack_bits(front), "unoccluded": T.pack_bits(front),
              "identity": np.arange(2, dtype=np.int32), "category": np.zeros(2, np.int8),
              "image": np.full((2, 64, 64, 3), 128, np.uint8)}  # grey: no face
    folder = T.write_folder(tmp_path / "protocol", "protocol", arrays)
    code = main(["eval", "co545", "--method", "fit", "--data", str(folder), "-o", str(tmp_path / "out"),
                 "--reference-samples", "300"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "found no face in protocol picture 0" in err.splitlines()[-1] and "Traceback" not in err


def test_fit_writes_a_mesh_its_pose_and_an_overlay(tmp_path, default_model):
    assert main(["reconstruct", "--method", "fit", str(require(PHOTO)), "-o", str(tmp_path)]) == 0
    folder = tmp_path / "obama"
    params = np.load(folder / "params.npz")
    assert params["shapes"].shape == (1, default_model.shape_dim) and params["expressions"].shape == (1, 52)
    assert params["rotation"].shape == (2, 3, 3) and np.array_equal(params["rotation"][0], params["rotation"][1])
    assert params["reprojection_error"].shape == (2,) and params["reprojection_error"][1] < 10
    vertices, _ = load_mesh(folder / "expression_00.ply")
    points = vertices_to_landmarks(torch.as_tensor(vertices)[None], default_model.faces, default_model.lmk_faces_idx,
                                   default_model.lmk_bary)[0].numpy()
    rotation, translation, k = (params[key][1] for key in ("rotation", "translation", "intrinsics"))
    pixels, _ = cv2.projectPoints(points, cv2.Rodrigues(rotation)[0], translation, k, None)
    assert np.abs(pixels[:, 0] - params["landmarks68_2d"][1]).max() < 0.01
    assert Image.open(folder / "overlay.png").size == (3 * 384 + 2 * 4, 384)  # photo, identity, expression
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["method"] == "fit" and set(summary["timings_s"]) == {"frontend", "fit"}


def test_a_photo_without_a_face_is_a_one_line_error(tmp_path, capsys):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(grey)
    assert main(["reconstruct", "--method", "fit", str(grey), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"ofer: error: {grey}: no face found"
    assert not (tmp_path / "out" / "grey").exists()
