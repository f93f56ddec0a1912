"""NoW-style shape error: exact point-to-triangle distances, crop, alignment, pooled statistics, `ofer eval now`."""

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import ofer.cli.main as cli_main
from ofer.evaluation.now import (
    SurfaceQuery,
    closest_points_on_triangles,
    crop_scan,
    face_crop_sphere,
    load_landmarks,
    now_error,
    now_statistics,
)
from ofer.facemodels.base import NOW7_FROM_68, vertices_to_landmarks
from ofer.io import save_mesh

ROT = Rotation.from_euler("xyz", [20, -35, 10], degrees=True).as_matrix()
SCALE = 0.87
SHIFT = np.array([10.0, -50.0, 300.0])


def move(points):
    return SCALE * np.asarray(points) @ ROT.T + SHIFT


@pytest.fixture(scope="module")
def head(default_model):
    """The default head's neutral mesh in mm, its faces, 7 NoW landmarks and front mask."""
    with torch.no_grad():
        out = default_model()
    vertices = out.vertices[0].double().numpy() * 1000
    return vertices, default_model.faces.numpy(), out.landmarks7[0].double().numpy() * 1000, default_model


def brute_force_distance(points, vertices, faces):
    tri = vertices[faces]
    out = []
    for p in points:
        cp, _ = closest_points_on_triangles(p[None], tri[:, 0], tri[:, 1], tri[:, 2])
        out.append(np.sqrt(((cp - p) ** 2).sum(1)).min())
    return np.array(out)


def test_closest_point_on_triangle_matches_dense_sampling():
    rng = np.random.default_rng(0)
    n = 300
    a, b, c = (rng.normal(0, 1, (n, 3)) for _ in range(3))
    c[:20] = a[:20] + 0.5 * (b[:20] - a[:20])  # degenerate (collinear) triangles
    p = rng.normal(0, 1.5, (n, 3))
    cp, bary = closest_points_on_triangles(p, a, b, c)
    assert np.allclose(bary.sum(1), 1) and (bary >= -1e-12).all()
    assert np.allclose(cp, bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c)
    ours = np.linalg.norm(p - cp, axis=1)
    # dense barycentric grid on every triangle
    g = np.linspace(0, 1, 161)
    u, v = np.meshgrid(g, g)
    keep = u + v <= 1
    u, v = u[keep], v[keep]
    dense = a[:, None] + u[None, :, None] * (b - a)[:, None] + v[None, :, None] * (c - a)[:, None]
    sampled = np.linalg.norm(dense - p[:, None], axis=2).min(1)
    step = np.linalg.norm(np.stack([b - a, c - a, c - b]), axis=2).max(0) / 160
    assert (ours <= sampled + 1e-12).all()  # never worse than any point of the triangle
    assert (sampled - ours <= step).all()  # and within the grid resolution of the best
    # hand cases: above the interior, beyond a vertex, beside an edge
    tri = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    q = np.array([[0.2, 0.2, 3.0], [-1.0, -1.0, 0.0], [0.5, -2.0, 0.0]])
    cp, _ = closest_points_on_triangles(q, *tri)
    assert np.allclose(cp, [[0.2, 0.2, 0], [0, 0, 0], [0.5, 0, 0]])


def test_surface_query_is_exact(head):
    vertices, faces, _, _ = head
    rng = np.random.default_rng(1)
    query = SurfaceQuery(vertices, faces)
    near = vertices[rng.integers(0, len(vertices), 150)] + rng.normal(0, 1.0, (150, 3))
    off = vertices[rng.integers(0, len(vertices), 100)] + rng.normal(0, 15.0, (100, 3))
    far = rng.normal(0, 400, (20, 3))  # exercises the exact fallback
    points = np.concatenate([near, off, far])
    hit = query.query(points)
    assert query.num_fallback > 0
    assert np.allclose(hit.distances, brute_force_distance(points, vertices, faces), atol=1e-9)
    assert np.allclose(np.linalg.norm(hit.points - points, axis=1), hit.distances)
    on = np.einsum("pk,pkc->pc", hit.barycentric, vertices[faces[hit.faces]])
    assert np.allclose(on, hit.points)


def test_crop_sphere_and_pooled_statistics():
    lmk = np.array(
        [[-40.0, 0, 0], [-10, 0, 0], [10, 0, 0], [40, 0, 0], [0, -50, 0], [-20, -70, 0], [20, -70, 0]]
    )
    centre, radius = face_crop_sphere(lmk)
    # bridge = (0, 0, 0); centre = nose bottom + 0.3 (bridge - nose bottom); radius = 1.4 mean(80, 50)
    assert np.allclose(centre, [0, -35, 0]) and radius == pytest.approx(1.4 * 65)
    pts = np.array([[0, -35 + 90, 0], [0, -35 + 92, 0.0], [0, 0, 0]])
    keep, kept, faces, _, _ = crop_scan(pts, np.array([[0, 1, 2]]), lmk)
    assert keep.tolist() == [True, False, True] and len(kept) == 2 and len(faces) == 0
    stats = now_statistics([np.array([1.0, 2.0]), np.array([3.0, 10.0, 20.0])])
    assert stats["median"] == 3.0 and stats["mean"] == pytest.approx(36 / 5) and stats["count"] == 5
    assert stats["std"] == pytest.approx(np.std([1, 2, 3, 10, 20]))


def test_now_moved_copy_is_exact_and_metrical_sees_scale(head):
    vertices, faces, lmk, _ = head
    res = now_error(move(vertices), faces, move(lmk), vertices, lmk, faces)
    assert np.median(res.distances) < 0.01 and res.distances.max() < 0.01
    assert res.scale == pytest.approx(1 / SCALE, rel=1e-6)
    assert np.nanmax(res.pred_vertex_errors) < 0.01
    assert len(res.scan_points) > 1000
    metrical = now_error(move(vertices), faces, move(lmk), vertices, lmk, faces, metrical=True)
    assert metrical.scale == 1.0
    assert np.median(metrical.distances) > 1.0  # a 13 % smaller head cannot be aligned away
    rigid = now_error((vertices - 5) @ ROT.T, faces, (lmk - 5) @ ROT.T, vertices, lmk, faces, metrical=True)
    assert np.median(rigid.distances) < 0.01


def test_now_local_nose_displacement(head):
    vertices, faces, lmk, model = head
    # vertex normals
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], fn)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    front = model.front_mask.numpy()
    tip = vertices[np.flatnonzero(front)[np.argmax(vertices[front, 2])]]  # nose tip: most forward face vertex
    dist_tip = np.linalg.norm(vertices - tip, axis=1)
    weight = np.clip((25.0 - dist_tip) / 10.0, 0, 1)  # 3 mm within 15 mm of the tip, fading out by 25 mm
    bumped = vertices + 3.0 * weight[:, None] * normals
    bumped_lmk = vertices_to_landmarks(
        torch.tensor(bumped[None]), model.faces, model.lmk_faces_idx, model.lmk_bary.double()
    )[0, list(NOW7_FROM_68)].numpy()
    exact = now_error(move(vertices), faces, move(lmk), vertices, lmk, faces)
    res = now_error(move(bumped), faces, move(bumped_lmk), vertices, lmk, faces)
    median, mean = np.median(res.distances), res.distances.mean()
    assert median > 0.05 and mean > 0.15 and median > 20 * np.median(exact.distances)
    # the error map peaks on the nose, both on the scan points and on the predicted vertices
    worst_point = res.scan_points[np.argmax(res.distances)]
    assert np.linalg.norm(worst_point - tip) < 25
    errors = res.pred_vertex_errors
    assert dist_tip[np.nanargmax(errors)] < 25
    assert np.nanmean(errors[weight == 1]) > 2.0 and np.nanmean(errors[weight == 0]) < 0.5


def run(capsys, *argv):
    code = cli_main.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def now_layout(tmp_path, head, monkeypatch):
    if "eval" not in cli_main.COMMANDS:
        monkeypatch.setattr(cli_main, "COMMANDS", (*cli_main.COMMANDS, "eval"))
    vertices, faces, lmk, _ = head
    gt, pred = tmp_path / "GT", tmp_path / "PRED"
    save_mesh(gt / "scans" / "subj01.obj", vertices / 1000, faces, units="mm")
    (gt / "scans_lmks").mkdir(parents=True)
    np.savetxt(gt / "scans_lmks" / "subj01.txt", lmk)
    # one prediction in metres (.ply + .npy), one in millimetres (.obj + .txt)
    save_mesh(pred / "subj01" / "neutral" / "img01.ply", move(vertices) / 1000, faces, units="m")
    np.save(pred / "subj01" / "neutral" / "img01.npy", move(lmk) / 1000)
    moved2 = (vertices + [3.0, 1.0, -2.0]) @ ROT
    save_mesh(pred / "subj01" / "occlusion" / "img02.obj", moved2 / 1000, faces, units="mm")
    np.savetxt(pred / "subj01" / "occlusion" / "img02.txt", (lmk + [3.0, 1.0, -2.0]) @ ROT)
    return gt, pred


def test_cli_eval_now(capsys, tmp_path, now_layout):
    gt, pred = now_layout
    out_json, heat = tmp_path / "now.json", tmp_path / "heat.png"
    argv = ["eval", "now", "--pred", str(pred), "--gt", str(gt), "--json", str(out_json), "--heatmap", str(heat)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert int(rows["all"][1]) == 2 and float(rows["all"][2]) < 0.01
    assert "neutral" in rows and "occlusion" in rows
    report = json.loads(out_json.read_text())
    assert report["overall"]["median"] < 0.01 and len(report["items"]) == 2
    assert heat.is_file() and heat.stat().st_size > 1000


def test_cli_eval_now_errors_are_one_line(capsys, tmp_path, now_layout):
    gt, pred = now_layout
    (pred / "subj01" / "neutral" / "img01.npy").unlink()
    code, _, err = run(capsys, "eval", "now", "--pred", str(pred), "--gt", str(gt))
    assert code != 0 and "landmark file not found" in err and "img01" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    code, _, err = run(capsys, "eval", "now", "--pred", str(tmp_path / "nope"), "--gt", str(gt))
    assert code != 0 and "prediction folder not found" in err and len(err.strip().splitlines()) == 1

    (pred / "subj01" / "neutral" / "img01.ply").unlink()
    (pred / "subj01" / "occlusion" / "img02.obj").write_text("this is not a mesh\n")
    code, _, err = run(capsys, "eval", "now", "--pred", str(pred), "--gt", str(gt))
    assert code != 0 and "img02.obj" in err and len(err.strip().splitlines()) == 1


def test_landmark_file_formats(tmp_path):
    lmk = np.arange(21.0).reshape(7, 3)
    np.savetxt(tmp_path / "a.txt", lmk, delimiter=",")
    pp = "<!DOCTYPE PickedPoints>\n<PickedPoints>\n" + "".join(
        f'<point x="{x}" y="{y}" z="{z}" name="{i}" active="1"/>\n' for i, (x, y, z) in enumerate(lmk)
    ) + "</PickedPoints>\n"
    (tmp_path / "b.pp").write_text(pp)
    assert np.allclose(load_landmarks(tmp_path / "a.txt"), lmk)
    assert np.allclose(load_landmarks(tmp_path / "b.pp"), lmk)
    np.save(tmp_path / "c.npy", lmk[:5])
    from ofer.errors import InputError

    with pytest.raises(InputError, match="expected 7 x 3"):
        load_landmarks(tmp_path / "c.npy")


def test_cli_eval_now_refuses_non_finite_predictions_in_one_line(capsys, tmp_path, now_layout, head):
    gt, pred = now_layout
    vertices, faces, lmk, _ = head
    bad = move(vertices).copy()
    bad[5] = np.nan
    save_mesh(pred / "subj01" / "neutral" / "img01.ply", bad / 1000, faces, units="m")
    code, _, err = run(capsys, "eval", "now", "--pred", str(pred), "--gt", str(gt))
    assert code != 0 and "img01.ply" in err and "NaN or infinite" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    np.save(pred / "subj01" / "neutral" / "img01.npy", np.full((7, 3), np.inf))
    save_mesh(pred / "subj01" / "neutral" / "img01.ply", move(vertices) / 1000, faces, units="m")
    code, _, err = run(capsys, "eval", "now", "--pred", str(pred), "--gt", str(gt))
    assert code != 0 and "img01.npy" in err and "NaN or infinite" in err and len(err.strip().splitlines()) == 1
