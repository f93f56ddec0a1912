"""Contact sheet of a data folder: pictures with the occluder outline and visible/occluded vertices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..config import require_int
from ..facemodels import load_face_model_from_record
from ..fitting.placement import project
from ..render.cameras import look_at_face
from .occluders import CATEGORIES
from .shards import ShardDataset, code_fields, stored_code, unpack_bits

VISIBLE_RGB = (40, 220, 60)
HIDDEN_RGB = (235, 40, 40)
OUTLINE_RGB = (255, 230, 0)


def project_vertices(model, record: dict, centre: torch.Tensor) -> np.ndarray:
    """Pixel positions (V, 2) of a stored sample's vertices (re-posed from its coefficients and camera).

    Photo-engine records carry the fit's ``rotation``, ``translation`` and ``intrinsics`` (OpenCV
    convention, model frame); render-engine records a look-at ``camera`` and ``head_pose`` about ``centre``.
    """
    code = stored_code({k: record[k][None].float() for k in code_fields(model.jaw_dim)}, model.jaw_dim)
    expression, pose = model.split_code(code)
    with torch.no_grad():
        vertices = model(record["shape"][None].float(), expression, pose).vertices
    if "rotation" in record:
        return project(vertices, record["rotation"][None].float(), record["translation"][None].float(),
                       record["intrinsics"][None].float())[0].numpy()
    vertices = vertices - centre
    yaw, pitch, roll = record["head_pose"].tolist()
    focal, distance, cx, cy = record["camera"].tolist()
    size = record["image"].shape[0]
    cameras = look_at_face(distance=distance, yaw=yaw, pitch=pitch, roll=roll, focal=focal, image_size=size)
    cameras.principal_point = torch.tensor([[cx, cy]])
    return cameras.transform_points_screen(vertices)[0, :, :2].numpy()


def annotate(record: dict, points: np.ndarray, num_vertices: int) -> Image.Image:
    image = Image.fromarray(record["image"].numpy())
    draw = ImageDraw.Draw(image)
    mask = unpack_bits(record["occluder_mask"].numpy(), image.width)
    edge = mask ^ np.roll(mask, 1, 0) | mask ^ np.roll(mask, 1, 1)
    rows, cols = np.nonzero(edge)
    for r, c in zip(rows, cols):
        draw.point((int(c), int(r)), fill=OUTLINE_RGB)
    front = unpack_bits(record["front"].numpy(), num_vertices)
    unoccluded = unpack_bits(record["unoccluded"].numpy(), num_vertices)
    for idx in np.nonzero(front)[0][::2]:
        x, y = points[idx]
        draw.point((float(x), float(y)), fill=VISIBLE_RGB if unoccluded[idx] else HIDDEN_RGB)
    category = float(record["category"]) if "category" in record else math.nan
    label = CATEGORIES[int(category)] if category in range(len(CATEGORIES)) else "occluder ?"
    if "identity" in record:
        label += f" id{int(record['identity'])}"
    draw.rectangle([0, 0, 7 * len(label) + 6, 13], fill=(0, 0, 0))
    draw.text((3, 1), label, fill=(255, 255, 255))
    return image


def contact_sheet(folder: str | Path, count: int = 24, columns: int = 6) -> Image.Image:
    """A grid of ``count`` samples spread over the folder (evenly spaced indices), ``columns`` wide."""
    require_int(count, "count", 1)
    require_int(columns, "columns", 1)
    dataset = ShardDataset(folder)
    model = load_face_model_from_record(dataset.manifest.face_model)
    dataset.manifest.check_face_model(model.info().to_dict(), folder)
    with torch.no_grad():
        neutral = model().vertices[0]
    centre = 0.5 * (neutral.amin(0) + neutral.amax(0))
    count = min(count, len(dataset))
    indices = np.linspace(0, len(dataset) - 1, count).round().astype(int)
    tiles = []
    for i in indices:
        record = dataset[int(i)]
        tiles.append(annotate(record, project_vertices(model, record, centre), model.num_vertices))
    size = tiles[0].width
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * size, rows * size), (0, 0, 0))
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % columns) * size, (k // columns) * size))
    return sheet
