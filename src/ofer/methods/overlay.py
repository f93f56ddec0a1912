"""``overlay.png``: the photo with the ranked identity and the first hypotheses drawn where they sit.

Panels, left to right: the photo, then the ranked identity and up to :data:`HYPOTHESES` expression
hypotheses, each shaded and blended over the photo (:data:`ALPHA`). Every panel shows the same
square crop of :data:`CONTEXT` face-box sizes around the face, resized to :data:`SIZE` pixels, so a
small face in a large photo stays readable; the meshes are rendered with their placement seen in
that crop (:func:`crop_placement`).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..fitting import Placement
from ..frontend.align import appearance_window, crop_square
from ..render.renderer import MeshRenderer, make_rasterizer, paint_face_model
from ..render.shading import SHShader

CONTEXT = 2.2  # side of the crop, in face-box sizes
SIZE = 384  # panel side, pixels
ALPHA = 0.55  # opacity of the meshes
HYPOTHESES = 3  # expression hypotheses shown
CLAY_RGB = (0.72, 0.76, 0.84)  # the meshes' skin: a light grey-blue that stands out from real skin


def crop_placement(placement: Placement, x0: float, y0: float, side: float, size: int) -> Placement:
    """The placement seen in the square crop ``[x0, x0 + side) x [y0, y0 + side)`` resized to ``size``.

    A pixel ``u`` of the image is ``(u - origin) * size / side`` in the crop (continuous coordinates),
    so ``K_crop = A K`` with ``A = [[s, 0, -s x0], [0, s, -s y0], [0, 0, 1]]``, ``s = size / side``
    (for both projections: the weak-perspective ``K`` is affine in the same way).
    """
    scale = size / side
    shift = torch.tensor([[scale, 0.0, -scale * x0], [0.0, scale, -scale * y0], [0.0, 0.0, 1.0]],
                         dtype=placement.intrinsics.dtype)
    return Placement(placement.rotation, placement.translation, shift @ placement.intrinsics, placement.projection,
                     (size, size))


@torch.no_grad()
def render_over(model, photo: np.ndarray, vertices: np.ndarray, placement: Placement, alpha: float = ALPHA
                ) -> np.ndarray:
    """Meshes (K, V, 3) shaded and blended over a photo (H, W, 3) uint8 with their placements -> (K, H, W, 3)."""
    background = torch.as_tensor(photo, dtype=torch.float32).div(255)
    renderer = MeshRenderer(make_rasterizer("auto"), SHShader(background=background))
    verts = torch.as_tensor(vertices, dtype=torch.float32)
    albedo = paint_face_model(model, skin=CLAY_RGB).float().cpu()
    out = renderer(verts, model.faces.cpu(), placement.cameras(), albedo)
    blended = background + alpha * (out.image.clamp(0, 1) - background)
    return (blended.numpy() * 255 + 0.5).astype(np.uint8)


def crop_window(box, image_size) -> tuple[int, int, int]:
    """Square window x0, y0, side of :data:`CONTEXT` box sizes around ``box``, moved inside the image where it fits."""
    x0, y0, side = appearance_window(box, CONTEXT)
    height, width = image_size
    x0 = min(max(x0, 0), width - side) if side <= width else x0
    y0 = min(max(y0, 0), height - side) if side <= height else y0
    return x0, y0, side


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """``text`` in black on a small white box at the top left of ``tile``."""
    picture = Image.fromarray(tile)
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = draw.textbbox((6, 5), text)
    draw.rectangle((left - 3, top - 3, right + 3, bottom + 3), fill=(255, 255, 255))
    draw.text((6, 5), text, fill=(0, 0, 0))
    return np.asarray(picture)


def overlay_image(model, rec, image: np.ndarray) -> np.ndarray | None:
    """The overlay (SIZE, (2 + K) * SIZE, 3) uint8 of a placed reconstruction of ``image``; ``None`` if unplaced."""
    if rec.placement is None:
        return None
    x0, y0, side = crop_window(rec.box, image.shape[:2])
    photo = crop_square(image, x0, y0, side, SIZE)
    count = min(HYPOTHESES, len(rec.expression_vertices))
    meshes = np.concatenate([rec.identity_vertices[None], rec.expression_vertices[:count]])
    placement = crop_placement(rec.placement.select(slice(0, 1 + count)), x0, y0, side, SIZE)
    tiles = [photo, *render_over(model, photo, meshes, placement)]
    error = np.asarray(rec.reprojection_error)
    px = [f", {e:.1f} px" if np.isfinite(e) else "" for e in error]  # NaN: placed without landmarks
    labels = ["photo", f"identity{' (ranked)' if len(rec.shapes) > 1 else ''}{px[0]}"]
    labels += [f"expression {i:02d}{px[1 + i]}" for i in range(count)]
    if rec.visible_mask is not None:  # the predicted visible face in green, the rest of the photo dimmed
        mask = crop_square(np.repeat(np.asarray(rec.visible_mask, np.uint8)[..., None] * 255, 3, -1), x0, y0, side,
                           SIZE)[..., :1] > 127
        tiles.append(np.where(mask, 0.5 * photo + [0, 127, 0], 0.35 * photo).astype(np.uint8))
        labels.append("visible face (mask)")
    gap = np.full((SIZE, 4, 3), 255, np.uint8)
    panels = [part for tile, text in zip(tiles, labels) for part in (_label(tile, text), gap)][:-1]
    return np.concatenate(panels, 1)
