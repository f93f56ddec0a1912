"""NoW alignment on ofer.geometry: landmark similarity, Gauss-Newton refinement, heat-map files."""

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from ofer.evaluation.now import landmark_alignment, refine_alignment, save_error_heatmap
from ofer.geometry import apply_similarity

ROT = Rotation.from_euler("xyz", [30, -50, 120], degrees=True).as_matrix()
SHIFT = np.array([5.0, -200.0, 31.0])


def test_landmark_alignment_recovers_a_similarity_and_its_rigid_variant():
    src = np.random.default_rng(0).normal(0, 40, (7, 3))
    s, r, t, rmse = landmark_alignment(src, apply_similarity(src, 1.7, ROT, SHIFT))
    assert s == pytest.approx(1.7) and np.allclose(r, ROT) and np.allclose(t, SHIFT) and rmse < 1e-9
    # rigid: the scale stays 1 and the residual is what the 1.7x size leaves
    s, r, t, rmse = landmark_alignment(src, apply_similarity(src, 1.7, ROT, SHIFT), scaling=False)
    assert s == 1.0 and np.allclose(r, ROT, atol=1e-9) and rmse > 10
    expected = np.sqrt(((apply_similarity(src, 1.0, r, t) - apply_similarity(src, 1.7, ROT, SHIFT)) ** 2).sum(1).mean())
    assert rmse == pytest.approx(expected)


def test_refinement_recovers_the_similarity_of_a_bumpy_ellipsoid_cap():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=50.0)
    vertices, faces = np.asarray(sphere.vertices) * [1.0, 0.8, 0.6], np.asarray(sphere.faces)
    vertices[:, 2] += 0.002 * vertices[:, 0] ** 2  # no symmetry left that would hide a rotation
    # scan points: the front cap of the same surface, moved by a known similarity; start from identity
    truth = (1.05, Rotation.from_euler("xyz", [4, -3, 2], degrees=True).as_matrix(), np.array([1.0, -2.0, 0.5]))
    points = apply_similarity(vertices[vertices[:, 2] > 5], *truth)
    start = (1.0, np.eye(3), np.zeros(3))
    state, iterations = refine_alignment(vertices, faces, points, start, length=50.0)
    assert 1 <= iterations < 50 and state.energy < 1e-12
    assert state.scale == pytest.approx(1.05, rel=1e-9) and np.allclose(state.rotation, truth[1], atol=1e-9)
    assert np.allclose(state.translation, truth[2], atol=1e-7)
    # rigid: the 5 % size difference cannot be aligned away
    rigid, _ = refine_alignment(vertices, faces, points, start, scaling=False, length=50.0)
    assert rigid.scale == 1.0 and rigid.energy > 0.1


def test_heatmap_is_written_atomically(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=50.0)
    errors = np.asarray(sphere.vertices)[:, 2].copy()
    errors[:5] = np.nan
    path = save_error_heatmap(tmp_path / "deep" / "heat.png", sphere.vertices, sphere.faces, errors, title="t")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["heat.png"]  # no temporary file left behind
