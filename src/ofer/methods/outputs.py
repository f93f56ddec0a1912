"""Files of a reconstruction: overlay, meshes, landmarks, coefficients, pose and camera, summary, previews.

``OUT/<name>/`` receives ``overlay.png`` (the meshes over the photo, where they were placed;
:mod:`ofer.methods.overlay`), ``mask.png`` (methods that segment: the predicted visible face),
``identity.ply``, ``expression_XX.ply``, ``kpt7.npy``, ``params.npz``
(coefficients and, when placed, every mesh's pose and camera: :mod:`ofer.methods.image_frame`),
``summary.json`` (with a ``camera`` block), ``preview.png`` and ``uncertainty.png``. Everything is
first written to a temporary sibling folder that replaces the old one at the end, so a failure
never leaves a half-written or destroyed result behind.

Safety: result names are sanitised and unique within a call (:func:`result_names`), and a result
folder is only ever replaced if ``ofer`` wrote it (it holds :data:`MARKER`); any other existing
folder or file of that name is left alone and the image is reported as an error.
"""

from __future__ import annotations

import glob
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import OferError
from ..io.atomic import follow_umask, remove_stale, replace_dir
from ..io.mesh import save_mesh
from ..render.cameras import look_at_face
from ..render.renderer import MeshRenderer, make_rasterizer, paint_face_model
from ..render.shading import SHShader
from .base import Method, Reconstruction
from .image_frame import camera_record, placement_arrays
from .overlay import overlay_image

MARKER = ".ofer-result"  # present in every folder written by write_reconstruction

VIEWS = {"front": 0.0, "side": 55.0}
TILE = 192
FIELD_M = 0.26


def render_views(model, vertices: np.ndarray, colours: np.ndarray | None = None, size: int = TILE) -> dict[str, np.ndarray]:
    """Shaded renders (H, W, 3) uint8 of meshes (K, V, 3) from the front and the side: {view: (K, H, W, 3)}."""
    renderer = MeshRenderer(make_rasterizer("auto"), SHShader(background=(1.0, 1.0, 1.0)))
    verts = torch.as_tensor(vertices, dtype=torch.float32)
    with torch.no_grad():
        neutral = model().vertices[0]
    centre = 0.5 * (neutral.amin(0) + neutral.amax(0))
    albedo = paint_face_model(model) if colours is None else torch.as_tensor(colours, dtype=torch.float32)
    out = {}
    for view, yaw in VIEWS.items():
        cameras = look_at_face(distance=1.0, yaw=yaw, focal=size / FIELD_M, image_size=size)
        with torch.no_grad():
            image = renderer(verts - centre, model.faces, cameras, albedo).image.clamp(0, 1)
        out[view] = (image.numpy() * 255 + 0.5).astype(np.uint8)
    return out


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    picture = Image.fromarray(tile)
    ImageDraw.Draw(picture).text((4, 3), text, fill=(0, 0, 0))
    return np.asarray(picture)


def preview_image(model, rec: Reconstruction, max_expressions: int = 8) -> np.ndarray:
    """Columns: ranked identity, then up to ``max_expressions`` hypotheses; rows: front and side views."""
    meshes = np.concatenate([rec.identity_vertices[None], rec.expression_vertices[:max_expressions]])
    views = render_views(model, meshes)
    labels = ["identity (ranked)"] + [f"expression {i:02d}" for i in range(len(meshes) - 1)]
    rows = [np.concatenate([_label(t, labels[k] if view == "front" else view) for k, t in enumerate(views[view])], 1)
            for view in VIEWS]
    return np.concatenate(rows, 0)


def uncertainty_image(model, rec: Reconstruction) -> np.ndarray:
    """Per-vertex spread (RMS distance to the mean, mm) across the expression hypotheses as a colour map."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import cm

    spread = np.sqrt(((rec.expression_vertices - rec.expression_vertices.mean(0)) ** 2).sum(-1).mean(0)) * 1000
    top = max(float(np.percentile(spread, 99)), 1e-6)
    colours = cm.viridis(np.clip(spread / top, 0, 1))[:, :3]
    mean_mesh = rec.expression_vertices.mean(0)[None]
    views = render_views(model, mean_mesh, colours, size=256)
    panel = np.concatenate([views["front"][0], views["side"][0]], 1)
    bar = (cm.viridis(np.linspace(0, 1, panel.shape[1]))[:, :3] * 255).astype(np.uint8)
    legend = np.full((28, panel.shape[1], 3), 255, np.uint8)
    legend[:10] = bar[None]
    legend = _label(legend, "")
    picture = Image.fromarray(np.concatenate([panel, legend], 0))
    draw = ImageDraw.Draw(picture)
    y = panel.shape[0] + 12
    draw.text((4, y), "0 mm", fill=(0, 0, 0))
    draw.text((panel.shape[1] - 90, y), f"{top:.2f} mm (p99)", fill=(0, 0, 0))
    title = "spread across expression hypotheses" if len(rec.expression_vertices) > 1 else "one hypothesis: no spread"
    draw.text((4, 3), title, fill=(0, 0, 0))
    return np.asarray(picture)


def summary_record(rec: Reconstruction, settings: dict, method: Method, source: str) -> dict:
    return {
        "image": source,
        "name": rec.name,
        "method": method.name,
        "face_model": method.face_model.info().to_dict(),
        "settings": settings,
        "checkpoints": method.checkpoint_record(),
        "chosen_shape": rec.chosen,
        "num_shapes": int(len(rec.shapes)),
        "num_expressions": int(len(rec.expressions)),
        "box": [float(x) for x in rec.box],
        "appearance_found": bool(rec.appearance_found),
        "faces_in_image": int(rec.faces_in_image),
        "landmarks_found": bool(rec.landmarks_found),
        "timings_s": {k: round(float(v), 4) for k, v in rec.timings.items()},
    }


def result_names(paths: Sequence[Path]) -> list[str]:
    """Safe, unique result-folder names for ``paths``: file stems with unsafe characters replaced.

    Leading dots are dropped (``..jpg`` would otherwise name the output folder itself); an empty
    stem becomes ``image``. A repeated name gets the first free suffix ``_2``, ``_3``, ... that is
    not also the plain name of another image of the call.
    """
    stems = [re.sub(r"[^A-Za-z0-9._-]", "_", Path(p).stem).lstrip(".") or "image" for p in paths]
    taken = set(stems)
    used: set[str] = set()
    names = []
    for stem in stems:
        name, k = stem, 1
        while name in used or (name != stem and name in taken):
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        names.append(name)
    return names


def write_reconstruction(out_dir: str | Path, rec: Reconstruction, model, summary: dict, units: str = "m",
                         image: np.ndarray | None = None) -> Path:
    """Write all files of one reconstruction to ``out_dir/<rec.name>/`` (replaced atomically).

    ``image``: the photo (RGB uint8) of a placed reconstruction, for ``overlay.png`` (none without).

    Raises:
        OferError: ``out_dir/<rec.name>`` exists but was not written by ofer (it is left untouched), or
            a write failed (full disk, permissions; an earlier result there is kept).
    """
    if rec.name in ("", ".", "..") or "/" in rec.name or "\\" in rec.name:
        raise OferError(f"{rec.name!r}: not a safe result name")
    target = Path(out_dir) / rec.name
    if target.exists() and not (target.is_dir() and (target / MARKER).is_file()):
        raise OferError(f"{target}: exists and was not written by ofer; left untouched (choose another -o)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target.parent, f".{glob.escape(rec.name)}.*")  # staging left by a killed run
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{rec.name}."))
        follow_umask(staging, folder=True)
    except OSError as exc:
        raise OferError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        _write_files(staging, rec, model, summary, units, image)
        replace_dir(staging, target)
    except OSError as exc:  # a full disk: the earlier result (if any) stays as it was
        raise OferError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_files(folder: Path, rec: Reconstruction, model, summary: dict, units: str, image) -> None:
    overlay = None if image is None else overlay_image(model, rec, image)
    if overlay is not None:
        Image.fromarray(overlay).save(folder / "overlay.png")
    if rec.visible_mask is not None:
        Image.fromarray(np.asarray(rec.visible_mask, bool).astype(np.uint8) * 255).save(folder / "mask.png")
    scale = 1000.0 if units == "mm" else 1.0
    save_mesh(folder / "identity.ply", rec.identity_vertices, model.faces, units=units)
    for i, vertices in enumerate(rec.expression_vertices):
        save_mesh(folder / f"expression_{i:02d}.ply", vertices, model.faces, units=units)
    np.save(folder / "kpt7.npy", (rec.kpt7 * scale).astype(np.float32))
    np.savez(
        folder / "params.npz",
        shapes=rec.shapes.astype(np.float32),
        rank_scores=rec.rank_scores.astype(np.float32),
        chosen=np.int64(rec.chosen),
        shape=rec.shape.astype(np.float32),
        expressions=rec.expressions.astype(np.float32),
        identity_embedding=np.asarray(rec.identity_embedding, np.float32),
        appearance_embedding=np.asarray(rec.appearance_embedding, np.float32),
        **placement_arrays(rec),
    )
    Image.fromarray(preview_image(model, rec)).save(folder / "preview.png")
    Image.fromarray(uncertainty_image(model, rec)).save(folder / "uncertainty.png")
    summary = dict(summary, units={"meshes": units, "kpt7": units}, camera=camera_record(rec, units))
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    (folder / MARKER).write_text("written by ofer reconstruct\n")
