import numpy as np

from ofer.render.raster_numpy import rasterize


def test_single_triangle_covers_expected_pixels():
    # Right triangle with legs along x and y: pixel centres (i+0.5, j+0.5) with x + y <= 4.
    screen = np.array([[0.0, 0.0, 1.0], [4.0, 0.0, 1.0], [0.0, 4.0, 1.0]])
    frags = rasterize(screen, np.array([[0, 1, 2]]), 6, 6)
    rows, cols = np.mgrid[0:6, 0:6]
    expected = (cols + 0.5) + (rows + 0.5) <= 4.0
    assert np.array_equal(frags.mask, expected)
    # Barycentrics reproduce the pixel centre.
    r, c = 1, 2
    pos = frags.barycentric[r, c] @ screen[:, :2]
    np.testing.assert_allclose(pos, [c + 0.5, r + 0.5], atol=1e-5)


def test_depth_test_keeps_closer_triangle():
    square = np.array([[0, 0], [8, 0], [0, 8]], float)
    far = np.c_[square, np.full(3, 5.0)]
    near = np.c_[square, np.full(3, 1.0)]
    screen = np.concatenate([far, near])
    frags = rasterize(screen, np.array([[0, 1, 2], [3, 4, 5]]), 8, 8)
    assert set(np.unique(frags.triangle_id[frags.mask])) == {1}
    assert np.allclose(frags.depth[frags.mask], 1.0)
    assert np.all(np.isinf(frags.depth[~frags.mask]))
