"""A small exact z-buffer rasteriser in NumPy (reference backend; no GPU, no gradients).

Screen convention: x to the right, y downwards, pixel centres at integer + 0.5;
smaller depth = closer to the camera. ``Fragments`` is re-exported here for older imports.
"""

from __future__ import annotations

import numpy as np

from .fragments import Fragments

__all__ = ["Fragments", "rasterize"]


def rasterize(screen: np.ndarray, faces: np.ndarray, height: int, width: int) -> Fragments:
    """Rasterise triangles given in screen space.

    Args:
        screen: (V, 3) pixel x, pixel y, depth (smaller = closer).
        faces: (F, 3) vertex indices.
    Returns:
        :class:`~ofer.render.fragments.Fragments` of NumPy arrays for this one mesh (no batch
        dimension): triangle_id (H, W) int64, barycentric (H, W, 3) float32, depth (H, W) float32;
        the closest triangle per pixel (both windings are drawn).
    """
    tri_id = np.full((height, width), -1, dtype=np.int64)
    bary = np.zeros((height, width, 3), dtype=np.float32)
    zbuf = np.full((height, width), np.inf, dtype=np.float32)
    tri = screen[faces]  # (F, 3, 3)
    x0 = np.clip(np.floor(tri[:, :, 0].min(1) - 0.5).astype(int), 0, width)
    x1 = np.clip(np.ceil(tri[:, :, 0].max(1) - 0.5).astype(int) + 1, 0, width)
    y0 = np.clip(np.floor(tri[:, :, 1].min(1) - 0.5).astype(int), 0, height)
    y1 = np.clip(np.ceil(tri[:, :, 1].max(1) - 0.5).astype(int) + 1, 0, height)
    for f in np.nonzero((x1 > x0) & (y1 > y0))[0]:
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = tri[f]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(area) < 1e-12:
            continue
        px, py = np.meshgrid(np.arange(x0[f], x1[f]) + 0.5, np.arange(y0[f], y1[f]) + 0.5)
        w0 = ((bx - px) * (cy - py) - (by - py) * (cx - px)) / area
        w1 = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) / area
        w2 = 1.0 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        if not inside.any():
            continue
        z = w0 * az + w1 * bz + w2 * cz
        window = zbuf[y0[f] : y1[f], x0[f] : x1[f]]
        closer = inside & (z < window)
        if not closer.any():
            continue
        window[closer] = z[closer]
        tri_id[y0[f] : y1[f], x0[f] : x1[f]][closer] = f
        bary[y0[f] : y1[f], x0[f] : x1[f]][closer] = np.stack([w0, w1, w2], -1)[closer]
    return Fragments(triangle_id=tri_id, barycentric=bary, depth=zbuf)
