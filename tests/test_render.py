"""Renderer: cameras, the OpenGL and PyTorch rasterisers, SH shading, visibility, `ofer render`."""

import math

import numpy as np
import pytest
import torch

from ofer.errors import OferError
from ofer.render import raster_gl, raster_torch
from ofer.render.cameras import FRONTAL_R, PerspectiveCameras, WeakPerspectiveCameras, look_at_face
from ofer.render.fragments import Fragments
from ofer.render.raster_numpy import rasterize as rasterize_numpy
from ofer.render.renderer import MeshRenderer, default_sh, paint_face_model, vertex_visibility
from ofer.render.shading import SHShader, sh_basis, sh_from_lights, sh_irradiance, vertex_normals

SIZE = 224


@pytest.fixture(scope="module")
def gl():
    try:
        raster_gl.gl_context()
    except OferError as exc:  # names the Debian packages to install
        pytest.skip(f"headless OpenGL unavailable: {exc}")
    return raster_gl


@pytest.fixture(scope="module")
def head(default_model):
    """The neutral default head: vertices (1, V, 3) and faces (F, 3)."""
    with torch.no_grad():
        vertices = default_model().vertices
    return vertices, default_model.faces


def uv_sphere(radius=0.1, n_lat=9, n_lon=16):
    """Sphere with poles on the z axis, no vertex on the z = 0 circle nor at x = 0 except the poles;
    counter-clockwise (outward) faces."""
    theta = torch.arange(1, n_lat) * math.pi / n_lat
    phi = (torch.arange(n_lon) + 0.5) * 2 * math.pi / n_lon
    ring = torch.stack(
        [theta.sin()[:, None] * phi.cos(), theta.sin()[:, None] * phi.sin(), theta.cos()[:, None].expand(-1, n_lon)], -1
    ).reshape(-1, 3)
    vertices = radius * torch.cat([torch.tensor([[0.0, 0.0, 1.0]]), ring, torch.tensor([[0.0, 0.0, -1.0]])])
    faces, south = [], len(vertices) - 1

    def idx(i, j):
        return 1 + i * n_lon + j % n_lon

    for j in range(n_lon):
        faces.append([0, idx(0, j), idx(0, j + 1)])
        faces.append([south, idx(n_lat - 2, j + 1), idx(n_lat - 2, j)])
        for i in range(n_lat - 2):
            faces += [[idx(i, j), idx(i + 1, j), idx(i + 1, j + 1)], [idx(i, j), idx(i + 1, j + 1), idx(i, j + 1)]]
    return vertices, torch.tensor(faces)


# -- cameras --------------------------------------------------------------------------------


def test_perspective_projection_by_hand():
    cameras = PerspectiveCameras(
        focal_length=100.0, principal_point=(50.0, 40.0), T=(0.0, 0.0, 2.0), image_size=(80, 100)
    )
    points = torch.tensor([[[0.2, 0.1, 0.0], [0.0, 0.0, 0.5], [-0.4, -0.2, -2.0]]])
    # camera frame: (x, -y, 2 - z); pixel = 100 * xy / depth + (50, 40)
    expected = torch.tensor([[[60.0, 35.0, 2.0], [50.0, 40.0, 1.5], [40.0, 45.0, 4.0]]])
    torch.testing.assert_close(cameras.transform_points_screen(points), expected)
    # Two cameras in one batch; the second at world (1, 0, 0) looking along -x (R is a rotation).
    turned = torch.tensor([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])
    batch = PerspectiveCameras(
        focal_length=torch.tensor([100.0, 200.0]),
        R=torch.stack([FRONTAL_R, turned]),
        T=torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0]]),
        image_size=100,
    )
    screen = batch.transform_points_screen(torch.tensor([[-1.0, 0.5, 0.2]]).expand(2, 1, 3))
    expected = torch.tensor([[[100 * -1 / 1.8 + 50, 100 * -0.5 / 1.8 + 50, 1.8]], [[30.0, 0.0, 2.0]]])
    torch.testing.assert_close(screen, expected)
    torch.testing.assert_close(batch.camera_center()[1], torch.tensor([1.0, 0.0, 0.0]))


def test_weak_perspective_projection_by_hand():
    cameras = WeakPerspectiveCameras(scale=100.0, translation=(50.0, 40.0), image_size=(80, 100))
    points = torch.tensor([[[0.2, 0.1, 0.3], [0.0, 0.0, 0.0]]])
    expected = torch.tensor([[[70.0, 30.0, -0.3], [50.0, 40.0, 0.0]]])
    torch.testing.assert_close(cameras.transform_points_screen(points), expected)
    torch.testing.assert_close(cameras.view_directions(points), torch.tensor([0.0, 0.0, 1.0]).expand(1, 2, 3))


def test_look_at_face_orientation_and_framing(head, default_model):
    cameras = look_at_face(distance=1.0, image_size=SIZE)
    ends = cameras.transform_points_screen(torch.tensor([[[0.0, 0.11, 0.0], [0.0, -0.11, 0.0], [0.0, 0.0, 0.0]]]))
    torch.testing.assert_close(ends[0, :, :2], torch.tensor([[112.0, 0.0], [112.0, 224.0], [112.0, 112.0]]))
    lmk = default_model(None).landmarks68
    frontal = cameras.transform_points_screen(lmk)[0]
    assert frontal[36, 0] < SIZE / 2 < frontal[45, 0]  # the subject's right eye on the image's left
    assert frontal[27, 1] < frontal[33, 1] < frontal[8, 1]  # nose bridge above nose tip above chin
    turned = look_at_face(yaw=30.0, image_size=SIZE).transform_points_screen(lmk)[0]
    assert turned[30, 0] > frontal[30, 0] + 10  # positive yaw: the nose towards the image's right
    raised = look_at_face(pitch=20.0, image_size=SIZE).transform_points_screen(lmk)[0]
    assert raised[30, 1] < frontal[30, 1] - 5  # positive pitch: the nose up
    ortho = look_at_face(yaw=30.0, image_size=SIZE, orthographic=True).transform_points_screen(lmk)[0]
    assert (ortho[:, :2] - turned[:, :2]).abs().max() < 10  # weak perspective approximates the pinhole


# -- rasterisers ----------------------------------------------------------------------------


def test_single_triangle_coverage_is_inclusive_like_the_reference(gl):
    screen = torch.tensor([[[0.0, 0.0, 1.0], [4.0, 0.0, 1.0], [0.0, 4.0, 1.0]]])
    rows, cols = np.mgrid[0:6, 0:6]
    expected = (cols + 0.5) + (rows + 0.5) <= 4.0  # centres on the hypotenuse count
    for backend in (raster_torch, gl):
        frags = backend.rasterize(screen, torch.tensor([[0, 1, 2]]), 6, 6)
        assert np.array_equal(frags.mask[0].numpy(), expected), backend.__name__


def test_every_rasteriser_returns_the_one_fragments_type(gl):
    from ofer.render import raster_numpy

    screen = torch.tensor([[[0.0, 0.0, 1.0], [4.0, 0.0, 2.0], [0.0, 4.0, 3.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    reference = raster_numpy.rasterize(screen[0].numpy(), faces.numpy(), 5, 6)
    results = {
        "numpy": reference,
        "torch": raster_torch.rasterize(screen, faces, 5, 6),
        "gl": gl.rasterize(screen, faces, 5, 6),
        "torch module": raster_torch.TorchRasterizer()(screen, faces, (5, 6)),
    }
    for name, frags in results.items():
        assert type(frags) is Fragments, name
        assert frags.image_size == (5, 6), name
    assert raster_numpy.Fragments is Fragments  # the name older code imports from there
    # NumPy reference: one mesh, no batch dimension; torch backends: (B, H, W) tensors
    assert not reference.is_torch and reference.triangle_id.shape == (5, 6) and reference.triangle_id.dtype == np.int64
    assert reference.barycentric.shape == (5, 6, 3) and reference.depth.shape == (5, 6)
    ours = results["torch"]
    assert ours.is_torch and ours.triangle_id.shape == (1, 5, 6) and ours.triangle_id.dtype == torch.long
    assert np.array_equal(ours.as_numpy().triangle_id[0], reference.triangle_id)
    np.testing.assert_allclose(ours.as_numpy().barycentric[0], reference.barycentric, atol=1e-6)
    back = reference.as_torch()
    assert back.is_torch and torch.equal(back.mask, torch.from_numpy(reference.mask))
    torch.testing.assert_close(back.depth, ours.depth[0].float())  # +inf on background in both


def test_fragments_refuse_mismatched_arrays():
    ids = torch.full((1, 4, 5), -1)
    with pytest.raises(ValueError, match="shapes disagree"):
        Fragments(ids, torch.zeros(1, 4, 5, 2), torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="shapes disagree"):
        Fragments(ids, torch.zeros(1, 4, 5, 3), torch.zeros(4, 5))
    with pytest.raises(TypeError, match="all be torch tensors or all NumPy arrays"):
        Fragments(ids, np.zeros((1, 4, 5, 3)), torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="several devices"):
        Fragments(ids, torch.zeros(1, 4, 5, 3), torch.zeros(1, 4, 5, device="meta"))
    moved = Fragments(ids, torch.zeros(1, 4, 5, 3), torch.zeros(1, 4, 5)).to("meta")
    assert moved.device.type == "meta" and moved.mask.device.type == "meta"


def test_missing_egl_is_a_one_line_error(monkeypatch):
    import threading

    import moderngl

    def broken(**kwargs):
        raise RuntimeError("eglGetDisplay failed\nmore detail")

    monkeypatch.setattr(raster_gl, "_STATE", threading.local())  # forget the shared context
    monkeypatch.setattr(moderngl, "create_standalone_context", broken)
    with pytest.raises(OferError) as info:
        raster_gl.rasterize(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), 4, 4)
    message = str(info.value)
    assert "\n" not in message and "libegl1" in message and "libgl1-mesa-dri" in message
    assert not raster_gl.gl_available()


def test_torch_rasteriser_matches_numpy_reference(head):
    vertices, faces = head
    screen = look_at_face(yaw=25.0, pitch=-10.0, image_size=SIZE).transform_points_screen(vertices).double()
    ours = raster_torch.rasterize(screen, faces, SIZE, SIZE)
    reference = rasterize_numpy(screen[0].numpy(), faces.numpy(), SIZE, SIZE)
    assert np.array_equal(ours.triangle_id[0].numpy(), reference.triangle_id)
    np.testing.assert_allclose(ours.barycentric[0].numpy(), reference.barycentric, atol=1e-6)


def test_gl_and_torch_agree_on_the_default_head(gl, head):
    vertices, faces = head
    cameras = look_at_face(
        yaw=torch.tensor([0.0, 40.0, -75.0]), pitch=torch.tensor([0.0, 10.0, -15.0]), image_size=SIZE
    )
    screen = cameras.transform_points_screen(vertices.expand(3, -1, -1))
    a = gl.rasterize(screen, faces, SIZE, SIZE)
    b = raster_torch.rasterize(screen, faces, SIZE, SIZE)
    foreground = a.mask | b.mask
    for item in range(3):
        agree = (a.triangle_id[item] == b.triangle_id[item])[foreground[item]].float().mean()
        assert agree >= 0.99, f"view {item}: triangle ids agree on {agree:.2%} of the foreground"
        assert (a.mask[item] != b.mask[item]).sum() <= 10  # of ~20k foreground pixels
    same = a.triangle_id == b.triangle_id
    torch.testing.assert_close(a.barycentric[same], b.barycentric[same], atol=2e-3, rtol=0)
    torch.testing.assert_close(a.depth[same], b.depth[same], atol=1e-4, rtol=0)
    assert torch.isinf(a.depth[~a.mask]).all() and (a.barycentric[~a.mask] == 0).all()


def test_gl_and_torch_agree_on_a_sphere(gl):
    vertices, faces = uv_sphere(n_lat=31, n_lon=48)
    screen = WeakPerspectiveCameras(scale=300.0, image_size=(64, 80)).transform_points_screen(vertices[None])
    a, b = gl.rasterize(screen, faces, 64, 80), raster_torch.rasterize(screen, faces, 64, 80)
    assert torch.equal(a.mask, b.mask)
    assert (a.triangle_id == b.triangle_id)[a.mask].float().mean() >= 0.99


@pytest.mark.parametrize("backend", ["torch", "gl"])
def test_barycentrics_sum_to_one_and_reproduce_pixel_centres(backend, head, request):
    module = request.getfixturevalue("gl") if backend == "gl" else raster_torch
    vertices, faces = head
    screen = look_at_face(yaw=-20.0, image_size=SIZE).transform_points_screen(vertices)
    frags = module.rasterize(screen, faces, SIZE, SIZE)
    b, row, col = frags.mask.nonzero(as_tuple=True)
    bary = frags.barycentric[b, row, col]
    torch.testing.assert_close(bary.sum(-1), torch.ones(len(bary)), atol=1e-5, rtol=0)
    assert bary.min() > -5e-3  # GL: pixel centres within its vertex snapping of an edge
    corners = screen[b[:, None], faces[frags.triangle_id[b, row, col]]]  # (N, 3, 3)
    position = (bary[..., None] * corners).sum(1)
    torch.testing.assert_close(position[:, :2], torch.stack([col, row], -1).float() + 0.5, atol=2e-3, rtol=0)
    torch.testing.assert_close(position[:, 2], frags.depth[b, row, col], atol=1e-5, rtol=0)


# -- shading and gradients ------------------------------------------------------------------


def test_sh_constants_and_lights():
    normals = torch.nn.functional.normalize(torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    basis = sh_basis(normals)
    gram = basis.T @ basis * (4 * math.pi / len(normals))  # Monte Carlo: orthonormal on the sphere
    torch.testing.assert_close(gram, torch.eye(9), atol=0.12, rtol=0)
    ambient = sh_from_lights(ambient=0.4, intensity=0.0)
    torch.testing.assert_close(sh_irradiance(normals[None], ambient), torch.full((1, 2000, 3), 0.4))
    key = sh_from_lights(ambient=0.0, direction=(0.0, 0.0, 1.0), intensity=1.0)
    lit = sh_irradiance(torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]]), key)[0, :, 0]
    # order-2 clamped cosine: 1/4 + t/2 + 5/16 (3t^2 - 1)/2 at t = cos = 1, 0, -1
    torch.testing.assert_close(lit, torch.tensor([1.0625, 0.09375, 0.0625]))


@pytest.mark.parametrize("backend", ["torch", "gl"])
def test_gradients_reach_vertices_albedo_lights_and_camera(backend, head, default_model, request):
    rasterizer = request.getfixturevalue("gl").GLRasterizer() if backend == "gl" else raster_torch.TorchRasterizer()
    vertices, faces = head
    vertices = vertices.clone().requires_grad_(True)
    albedo = paint_face_model(default_model)[None].clone().requires_grad_(True)
    sh = default_sh(1).requires_grad_(True)
    cameras = look_at_face(yaw=15.0, image_size=96)
    cameras.T = cameras.T.detach().clone().requires_grad_(True)
    out = MeshRenderer(rasterizer, SHShader(background=(0.2, 0.2, 0.2)))(vertices, faces, cameras, albedo, sh)
    weights = torch.rand(out.image.shape, generator=torch.Generator().manual_seed(1))
    (out.image * weights).sum().backward()
    for name, tensor in {"vertices": vertices, "albedo": albedo, "sh": sh, "camera T": cameras.T}.items():
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name
    assert cameras.T.grad[0, 2].abs() > 0  # moving the camera away changes the picture


def test_vertex_normals_point_outwards():
    vertices, faces = uv_sphere()
    normals = vertex_normals(vertices[None], faces)[0]
    cosine = (normals * torch.nn.functional.normalize(vertices, dim=-1)).sum(-1)
    assert cosine.min() > 0.99


# -- visibility -----------------------------------------------------------------------------


def test_visibility_of_a_sphere_behind_a_plate():
    """Orthographic frontal view of a sphere whose x < 0 half is hidden by a plate in front."""
    sphere, sphere_faces = uv_sphere(radius=0.1)
    plate = torch.tensor([[-0.15, -0.15, 0.2], [0.0, -0.15, 0.2], [0.0, 0.15, 0.2], [-0.15, 0.15, 0.2]])
    vertices = torch.cat([sphere, plate])[None]
    n = len(sphere)
    faces = torch.cat([sphere_faces, torch.tensor([[n, n + 1, n + 2], [n, n + 2, n + 3]])])
    cameras = WeakPerspectiveCameras(scale=200.0, translation=(32.0, 32.0), image_size=64)
    screen = cameras.transform_points_screen(vertices)
    visible = vertex_visibility(vertices, faces, cameras, screen, raster_torch.rasterize(screen, faces, 64, 64))[0]
    expected = torch.cat([(sphere[:, 2] > 0) & (sphere[:, 0] >= 0), torch.ones(4, dtype=torch.bool)])
    assert torch.equal(visible, expected)
    # Without the plate the whole front half is visible.
    screen = screen[:, :n]
    alone = vertex_visibility(
        vertices[:, :n], sphere_faces, cameras, screen, raster_torch.rasterize(screen, sphere_faces, 64, 64)
    )[0]
    assert torch.equal(alone, sphere[:, 2] > 0)


def test_visibility_of_the_frontal_head(head, default_model):
    vertices, faces = head
    out = MeshRenderer(raster_torch.TorchRasterizer(), SHShader())(
        vertices, faces, look_at_face(image_size=SIZE), paint_face_model(default_model)
    )
    visible = out.visibility[0]
    assert visible[default_model.front_mask].float().mean() > 0.95
    back = vertices[0, :, 2] < -0.06  # the back of the head (about 200 vertices)
    assert back.sum() > 100 and not visible[back].any()
    eyeball = default_model.part == 1
    assert visible[eyeball].any() and not visible[eyeball & (vertices[0, :, 2] < vertices[0, eyeball, 2].mean())].any()


# -- the picture and the command ------------------------------------------------------------


def test_render_command_writes_a_grid(monkeypatch, tmp_path, capsys, default_model):
    from PIL import Image

    from ofer.cli import main as cli_main

    monkeypatch.setattr(cli_main, "COMMANDS", tuple(dict.fromkeys(cli_main.COMMANDS + ("render",))))
    path = tmp_path / "grid.png"
    argv = [
        "render",
        "--model",
        "default",
        "--seed",
        "3",
        "--count",
        "3",
        "--size",
        "64",
        "--backend",
        "torch",
        "-o",
    ] + [str(path)]
    code = cli_main.main(argv)
    assert code == 0 and "wrote" in capsys.readouterr().out
    grid = np.asarray(Image.open(path))
    assert grid.shape == (64, 192, 3)
    tiles = grid.reshape(64, 3, 64, 3).transpose(1, 0, 2, 3).astype(int)
    background = np.array([0.30, 0.30, 0.35]) * 255
    for tile in tiles:
        assert (np.abs(tile - background).max(-1) > 3).mean() > 0.3  # a head fills the tile
    assert np.abs(tiles[0] - tiles[1]).mean() > 2  # different heads
    (tmp_path / "file").write_text("x")
    code = cli_main.main(["render", "-o", str(tmp_path / "file" / "grid.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is not a folder" in err
