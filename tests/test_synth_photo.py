"""The photo-domain data engine on tiny sizes: determinism, resume, rejection, masks, pseudo-labels, preview."""

import numpy as np
import pytest
import torch

from ofer.cli.main import main
from ofer.data.occluders import emoji_available
from ofer.data.stylegan import photo_engine_available
from ofer.errors import OferError

pytestmark = pytest.mark.skipif(not (photo_engine_available() and emoji_available()),
                                reason="needs the photo extra (openvino, random-face) and fonts-noto-color-emoji")

SEED = 5


def tiny_config(**overrides):
    from ofer.data.photo import PhotoConfig
    from ofer.fitting import FitOptions

    settings = dict(image_size=160, variants=2, fit=FitOptions(rigid_steps=40, full_steps=80).to_dict())
    return PhotoConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_model):
    from ofer.data.photo import generate_photo

    path = tmp_path_factory.mktemp("photo") / "data"
    manifest, made = generate_photo(path, "default", 2, SEED, tiny_config(), faces_per_shard=1, progress=False)
    assert made == 2 and manifest.num_samples == 4 and manifest.shard_size == 2
    return path


@pytest.fixture(scope="module")
def maker(default_model):
    from ofer.data.photo import PhotoMaker

    return PhotoMaker("default", tiny_config())


def test_fields_and_manifest(folder, default_model):
    from ofer.data.photo import REJECTIONS
    from ofer.data.shards import Manifest, read_npz, shard_name

    data = read_npz(folder / shard_name(0))
    assert data["image"].shape == (2, 160, 160, 3) and data["arcface"].shape == (2, 512)
    assert data["identity"].tolist() == [0, 0] and data["variant"].tolist() == [0, 1]
    assert data["mediapipe478"].shape == (2, 478, 3) and data["blendshapes"].shape == (2, 52)
    assert data["expression"].shape == (2, default_model.expression_dim) and data["head_pose"].shape == (2, 3)
    assert np.array_equal(data["shape"][0], data["shape"][1])  # one face, two occluded copies
    assert "image_clean" not in data
    manifest = Manifest.load(folder)
    assert manifest.kind == "photo" and manifest.generator_version.startswith("ofer-photo/1+")
    assert manifest.stats["faces"] == 2 and set(manifest.stats["rejected"]) == set(REJECTIONS)
    assert manifest.stats["rejection_rate"] == pytest.approx(
        sum(manifest.stats["rejected"].values()) / manifest.stats["attempts"])


def test_resume_regenerates_byte_identical_shards(folder):
    from ofer.data.photo import generate_photo
    from ofer.data.shards import shard_name

    before = (folder / shard_name(1)).read_bytes()
    _, made = generate_photo(folder, "default", 2, SEED, tiny_config(), faces_per_shard=1, progress=False)
    assert made == 0
    (folder / shard_name(1)).write_bytes(before[: len(before) // 2])  # a shard cut short by a kill
    _, made = generate_photo(folder, "default", 2, SEED, tiny_config(), faces_per_shard=1, progress=False)
    assert made == 1 and (folder / shard_name(1)).read_bytes() == before
    with pytest.raises(OferError, match="holds other data"):
        generate_photo(folder, "default", 2, SEED + 1, tiny_config(), faces_per_shard=1, progress=False)


def test_a_face_does_not_depend_on_its_shard(folder, maker):
    """Face 1 made alone equals face 1 made in a shard of one face (rows 2, 3 of the data)."""
    from ofer.data.shards import read_npz, shard_name

    stored = read_npz(folder / shard_name(1))
    alone = maker.make_shard(2, 2, SEED)
    assert set(alone) == set(stored)
    for key, value in alone.items():
        np.testing.assert_array_equal(value, stored[key], err_msg=key)


def test_visibility_and_masks_are_consistent(folder, default_model):
    from ofer.data.shards import ShardDataset, unpack_bits
    from ofer.fitting import project

    data = ShardDataset(folder).arrays(["front", "unoccluded", "occluder_mask", "silhouette", "shape", "expression",
                                        "rotation", "translation", "intrinsics"])
    count, size = default_model.num_vertices, 160
    front, unocc = unpack_bits(data["front"], count), unpack_bits(data["unoccluded"], count)
    masks, silhouettes = unpack_bits(data["occluder_mask"], size), unpack_bits(data["silhouette"], size)
    assert (unocc <= front).all() and front.sum(1).min() > 500 and silhouettes.sum((1, 2)).min() > 1000
    assert not front[:, ~default_model.front_mask.numpy()].any()
    with torch.no_grad():
        vertices = default_model(torch.from_numpy(data["shape"]), torch.from_numpy(data["expression"])).vertices
    pixels = project(vertices, torch.from_numpy(data["rotation"]), torch.from_numpy(data["translation"]),
                     torch.from_numpy(data["intrinsics"])).numpy()
    col, row = (np.clip(np.floor(pixels[..., k]).astype(int), 0, size - 1) for k in (0, 1))
    rows = np.arange(len(col))[:, None]
    assert not (unocc & masks[rows, row, col]).any()  # an unoccluded vertex never lies under the occluder
    assert (front & ~masks[rows, row, col] <= unocc).all()
    assert silhouettes[rows, row, col][front].mean() > 0.9  # visible face vertices fall in the silhouette (edges aside)


def test_pseudo_labels_reproject_onto_the_stored_landmarks(folder, default_model):
    from ofer.data.shards import ShardDataset
    from ofer.fitting import project

    data = ShardDataset(folder).arrays(["shape", "expression", "rotation", "translation", "intrinsics",
                                        "landmarks2d", "head_pose"])
    with torch.no_grad():
        out = default_model(torch.from_numpy(data["shape"]), torch.from_numpy(data["expression"]))
    pixels = project(out.landmarks68, torch.from_numpy(data["rotation"]), torch.from_numpy(data["translation"]),
                     torch.from_numpy(data["intrinsics"])).numpy()
    assert np.abs(pixels - data["landmarks2d"]).max() < 0.5
    assert (np.abs(data["head_pose"][:, 0]) <= 45.0).all()


def test_rejections_are_counted_and_retried(maker, monkeypatch):
    from ofer.data.photo import REJECTIONS

    assert maker.label(np.full((1024, 1024, 3), 128, np.uint8)) == (None, "no_face")
    strict = type(maker)("default", tiny_config(max_fit_error=0.0))
    assert strict.label(maker.photo(0, SEED, 0)) == (None, "fit_error")
    real, reasons = maker.label_group, iter(["pose", "no_landmarks"])

    def flaky(photos):
        reason = next(reasons, None)
        return (None, reason) if reason else real(photos)

    monkeypatch.setattr(maker, "label_group", flaky)
    faces, attempt, rejections, _ = maker.make_face(0, SEED)
    assert attempt == 2 and len(faces) == 1
    assert rejections.tolist() == [int(r in ("pose", "no_landmarks")) for r in REJECTIONS]
    monkeypatch.setattr(maker, "label_group", lambda photos: (None, "no_face"))
    with pytest.raises(OferError, match="no acceptable picture in 16 attempts"):
        maker.make_face(0, SEED)


def test_head_angles_invert_the_render_engines_rotation():
    from ofer.data.photo import head_angles
    from ofer.render.cameras import FRONTAL_R, head_rotation

    rotation = (FRONTAL_R @ head_rotation(30.0, -12.0, 7.0))[0].numpy()
    np.testing.assert_allclose(head_angles(rotation), [30.0, -12.0, 7.0], atol=1e-4)


def test_preview_draws_a_photo_folder(folder):
    from ofer.data.preview import contact_sheet

    assert contact_sheet(folder, count=4, columns=2).size == (320, 320)


def test_missing_extra_is_one_line(capsys, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "random_face" else real(name, *a))
    assert main(["synth", "photo", "--n", "1", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'ofer[photo]'" in err and "--no-deps random-face" in err
    assert not (tmp_path / "x").exists()


def test_bad_options_are_one_line(capsys, tmp_path):
    for argv, text in ((["--n", "0"], "--n"), (["--n", "1", "--variants", "0"], "--variants"),
                       (["--n", "1", "--expressions", "0"], "--expressions"),
                       (["--n", "1", "--psi", "-1"], "--psi")):
        assert main(["synth", "photo", *argv, "-o", str(tmp_path / "y")]) == 2
        assert text in capsys.readouterr().err


@pytest.fixture()
def toy_directions(tmp_path, monkeypatch):
    """Random expression directions for the installed generator (the shipped ones are fitted by a script)."""
    from ofer.data import stylegan

    rng = np.random.default_rng(0)
    directions = rng.standard_normal((2, 512))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    toy = stylegan.StyleDirections(("smile", "blink"), directions, np.array([0.05, 0.05]), np.array([0.3, 0.1]),
                                   np.array([4.0, 4.0]), np.array([0.5, 0.2]), stylegan.face_generator(1).digest)
    monkeypatch.setattr(stylegan, "DIRECTIONS_FILE", toy.save(tmp_path / "directions.npz"))
    return toy


def test_expression_pictures_share_one_fitted_identity(toy_directions, tmp_path, default_model):
    from ofer.data.photo import generate_photo
    from ofer.data.shards import Manifest, read_npz, shard_name
    from ofer.fitting import project

    path = tmp_path / "expr"
    manifest, _ = generate_photo(path, "default", 1, SEED, tiny_config(variants=1, expressions=2), progress=False)
    assert manifest.num_samples == 2 and Manifest.load(path).stats["faces"] == 1
    data = read_npz(path / shard_name(0))
    assert data["picture"].tolist() == [0, 1] and data["identity"].tolist() == [0, 0]
    assert np.array_equal(data["shape"][0], data["shape"][1]) and not np.array_equal(*data["expression"])
    assert not data["style_move"][0].any() and np.count_nonzero(data["style_move"][1]) == 1
    assert not np.array_equal(*data["image"])  # another picture, not only another occluder
    with torch.no_grad():
        out = default_model(torch.from_numpy(data["shape"]), torch.from_numpy(data["expression"]))
    pixels = project(out.landmarks68, torch.from_numpy(data["rotation"]), torch.from_numpy(data["translation"]),
                     torch.from_numpy(data["intrinsics"])).numpy()
    assert np.abs(pixels - data["landmarks2d"]).max() < 0.5  # each picture's own pose and expression


def test_missing_or_foreign_directions_are_one_line(capsys, tmp_path, monkeypatch):
    from ofer.data import stylegan

    monkeypatch.setattr(stylegan, "DIRECTIONS_FILE", tmp_path / "none.npz")
    assert main(["synth", "photo", "--n", "1", "--expressions", "2", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "style directions" in err and not (tmp_path / "x").exists()
    other = stylegan.StyleDirections(("smile",), np.eye(1, 512), np.ones(1), np.zeros(1), np.ones(1), np.ones(1), "0" * 64)
    monkeypatch.setattr(stylegan, "DIRECTIONS_FILE", other.save(tmp_path / "other.npz"))
    assert main(["synth", "photo", "--n", "1", "--expressions", "2", "-o", str(tmp_path / "x")]) == 2
    assert "other generator weights" in capsys.readouterr().err


def _with_closing(toy, tmp_path, monkeypatch):
    """``toy`` plus an eye-closing direction (saved as the installed directions)."""
    from ofer.data import stylegan

    closing = np.zeros((1, 512))
    closing[0, 7] = 1.0
    grown = stylegan.StyleDirections(toy.names + (stylegan.CLOSING,), np.concatenate([toy.directions, closing]),
                                     np.append(toy.gains, 0.06), np.append(toy.intercepts, 0.1),
                                     np.append(toy.spread, 0.5), np.append(toy.r2, 0.6), toy.digest)
    monkeypatch.setattr(stylegan, "DIRECTIONS_FILE", grown.save(tmp_path / "closing.npz"))
    return grown


def test_closed_eyes_move_along_the_closing_direction_only(toy_directions, tmp_path, monkeypatch, default_model):
    from ofer.data.photo import PhotoMaker

    old = PhotoMaker("default", tiny_config(expressions=6)).styles(3, SEED, 0)
    grown = _with_closing(toy_directions, tmp_path, monkeypatch)
    kept = PhotoMaker("default", tiny_config(expressions=6)).styles(3, SEED, 0)
    # the extra direction is not a random move: the older data stay as they were
    assert all(np.array_equal(a, b) for a, b in zip(old[0], kept[0]))
    assert np.array_equal(old[1], kept[1][:, :-1]) and not kept[1][:, -1].any()
    styles, moves = PhotoMaker("default", tiny_config(expressions=6, closed_eyes_fraction=1.0)).styles(3, SEED, 0)
    assert not moves[0].any() and np.array_equal(styles[0], kept[0][0])
    np.testing.assert_allclose(moves[1:, -1], 14.0 * 0.5)
    assert not moves[1:, :-1].any()
    np.testing.assert_allclose(styles[1] - styles[0], 7.0 * grown.directions[-1][None], atol=1e-5)
    half = PhotoMaker("default", tiny_config(expressions=16, closed_eyes_fraction=0.5)).styles(3, SEED, 0)[1]
    assert 0 < np.count_nonzero(half[:, -1]) < 15


def test_closed_eyes_options_are_one_line(capsys, toy_directions, tmp_path):
    for argv, text in ((["--closed-eyes", "1.5", "--expressions", "2"], "--closed-eyes must be a fraction"),
                       (["--closed-eyes", "0.5"], "--closed-eyes moves expression pictures"),
                       (["--closed-eyes", "0.5", "--expressions", "2"], "'eyesClosed' style direction")):
        assert main(["synth", "photo", "--n", "1", *argv, "-o", str(tmp_path / "z")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and text in err and not (tmp_path / "z").exists()
