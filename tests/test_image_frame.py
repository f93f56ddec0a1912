"""Reconstructions in the image frame: the written pose and camera put the written meshes on the photo."""

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import SHARED, require
from ofer.cli.main import main
from ofer.facemodels.base import vertices_to_landmarks
from ofer.fitting import Placement, observe
from ofer.frontend import ibug68_from_mediapipe, load_image
from ofer.io.mesh import load_mesh
from ofer.methods.overlay import crop_placement

PHOTO = SHARED / "assets/faces/obama.jpg"
SMALL = ["--shapes", "4", "--expressions", "2", "--steps", "5"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("frame")
    assert main(["reconstruct", str(require(PHOTO)), "-o", str(out), *SMALL]) == 0
    return out / "obama"


def written_landmarks(model, folder, index: int) -> np.ndarray:
    """(68, 3) the model's iBUG-68 points of mesh ``index`` (0: identity.ply, i: expression_{i-1}.ply)."""
    name = "identity.ply" if index == 0 else f"expression_{index - 1:02d}.ply"
    vertices, _ = load_mesh(folder / name)
    points = vertices_to_landmarks(torch.as_tensor(vertices)[None], model.faces, model.lmk_faces_idx, model.lmk_bary)
    return points[0].numpy()


def test_written_pose_projects_the_written_meshes_onto_their_landmarks(result, default_model):
    params = np.load(result / "params.npz")
    assert params["rotation"].shape == (3, 3, 3) and params["translation"].shape == (3, 3)
    assert params["intrinsics"].shape == (3, 3, 3) and params["landmarks68_2d"].shape == (3, 68, 2)
    assert str(params["projection"]) == "perspective" and tuple(params["image_size"]) == (1137, 910)
    for index in range(3):
        rotation, translation, k = (params[key][index] for key in ("rotation", "translation", "intrinsics"))
        points = written_landmarks(default_model, result, index)
        camera = points @ rotation.T + translation
        pixels = camera[:, :2] / camera[:, 2:] * np.diag(k)[:2] + k[:2, 2]
        assert np.abs(pixels - params["landmarks68_2d"][index]).max() < 0.01
        opencv, _ = cv2.projectPoints(points, cv2.Rodrigues(rotation)[0], translation, k, None)
        assert np.abs(opencv[:, 0] - pixels).max() < 0.01


def test_the_placed_identity_sits_on_the_face(result):
    summary = json.loads((result / "summary.json").read_text())
    face = observe(load_image(PHOTO), np.asarray(summary["box"]))
    seen = ibug68_from_mediapipe(face.points)[:, :2]
    projected = np.load(result / "params.npz")["landmarks68_2d"][0]
    assert np.median(np.linalg.norm(projected - seen, axis=1)) < 0.12 * np.linalg.norm(seen[36] - seen[45])
    camera = summary["camera"]
    assert camera["convention"].startswith("OpenCV") and camera["projection"] == "perspective"
    assert camera["reprojection_error_px"]["identity"] > 0 and np.shape(camera["identity"]["intrinsics"]) == (3, 3)
    assert summary["landmarks_found"] and summary["timings_s"]["pose"] > 0


def test_overlay_shows_the_photo_and_the_meshes(result):
    from PIL import Image

    overlay = np.asarray(Image.open(result / "overlay.png"))
    panels = [overlay[:, i * 388 : i * 388 + 384] for i in range(4)]  # photo, identity, 2 hypotheses
    assert overlay.shape == (384, 4 * 384 + 3 * 4, 3)
    centre = (slice(150, 230), slice(150, 230))
    assert all(np.abs(p[centre].astype(int) - panels[0][centre]).mean() > 3 for p in panels[1:])  # meshes drawn
    corner = (slice(300, 384), slice(0, 60))
    assert np.abs(panels[1][corner].astype(int) - panels[0][corner]).mean() < 1  # the background left alone


def test_no_landmarks_warns_once_and_writes_the_rest(tmp_path, capsys, monkeypatch):
    import ofer.methods.image_frame as image_frame

    monkeypatch.setattr(image_frame, "observe", lambda image, box: None)
    assert main(["reconstruct", str(require(PHOTO)), "-o", str(tmp_path), *SMALL]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "landmarks" in line]
    assert len(warnings) == 1 and warnings[0].startswith("ofer: warning: ") and "Traceback" not in err
    folder = tmp_path / "obama"
    params = np.load(folder / "params.npz")
    assert "rotation" not in params.files and tuple(params["image_size"]) == (1137, 910)
    assert (folder / "identity.ply").is_file() and not (folder / "overlay.png").exists()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["camera"] is None and summary["landmarks_found"] is False


@pytest.mark.parametrize("projection", ["perspective", "weak-perspective"])
def test_crop_placement_sees_the_crop(projection):
    g = torch.Generator().manual_seed(0)
    points = torch.randn(1, 20, 3, generator=g, dtype=torch.float64) * 0.05
    rotation = torch.linalg.qr(torch.randn(1, 3, 3, generator=g, dtype=torch.float64))[0]
    translation = torch.tensor([[0.02, -0.01, 1.2]], dtype=torch.float64) * (projection == "perspective")
    k = torch.tensor([[[900.0, 0, 310], [0, 900.0, 240], [0, 0, 1]]], dtype=torch.float64)
    placement = Placement(rotation, translation, k, projection, (480, 640))
    cropped = crop_placement(placement, 120, -40, 500, 384)
    expected = (placement.project(points) - torch.tensor([120.0, -40.0], dtype=torch.float64)) * 384 / 500
    assert torch.allclose(cropped.project(points), expected, atol=1e-9) and cropped.image_size == (384, 384)


def test_embedding_results_stay_unplaced_and_write_without_a_photo(tmp_path, default_model):
    from ofer.methods import ReconstructionSettings, get
    from ofer.methods.outputs import write_reconstruction

    method = get("prior").from_run(face_model=default_model)
    settings = ReconstructionSettings(shapes=2, expressions=2)
    rec = method.reconstruct_embeddings(np.zeros((1, 512)), np.zeros((1, 8)), settings, ["x"])[0]
    assert rec.placement is None and rec.reprojection_error is None and rec.image_size is None
    folder = write_reconstruction(tmp_path, rec, default_model, {})
    assert "rotation" not in np.load(folder / "params.npz").files and not (folder / "overlay.png").exists()
    assert json.loads((folder / "summary.json").read_text())["camera"] is None
