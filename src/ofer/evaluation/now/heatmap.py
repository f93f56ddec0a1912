"""Heat maps of per-vertex errors (mm) painted on a mesh, front and side views (matplotlib, no GPU)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...geometry import apply_similarity
from ...io.atomic import atomic_path
from ...io.mesh import load_mesh
from .folders import NowItem, NowReport

__all__ = ["save_error_heatmap", "save_now_heatmap"]


def _face_frame(landmarks7: np.ndarray | None, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (rows: right, up, towards the viewer) and origin of a frontal view of the face."""
    if landmarks7 is None:
        return np.eye(3), vertices.mean(0)
    lmk = np.asarray(landmarks7, dtype=np.float64)
    x = lmk[3] - lmk[0]  # towards the subject's left = the viewer's right
    x /= np.linalg.norm(x)
    y = 0.5 * (lmk[0] + lmk[3]) - 0.5 * (lmk[5] + lmk[6])  # mouth -> eyes
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)]), lmk[4]


def save_error_heatmap(
    path: str | Path,
    vertices,
    faces,
    errors,
    landmarks7=None,
    title: str | None = None,
    vmax: float | None = None,
    views=(("front", 0.0), ("side", 60.0)),
) -> Path:
    """Picture of a per-vertex error (mm) painted on a mesh, from the front and the side (matplotlib).

    ``landmarks7`` (7, 3), in the mesh's frame, orient the views (else the mesh's own axes are used);
    triangles with a NaN error at a corner are left out; ``vmax`` (top of the colour scale, mm) defaults
    to the 99th percentile of the errors, at least 0.1 mm (so numerical noise does not look like error).
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    e = np.asarray(errors, dtype=np.float64)
    f = f[np.isfinite(e[f]).all(1)]
    if len(f) == 0:
        raise InputError("no triangle has a finite error to draw")
    face_err = e[f].mean(1)
    vmax = float(vmax) if vmax else max(float(np.percentile(e[np.isfinite(e)], 99)), 0.1)
    frame, origin = _face_frame(landmarks7, v)
    local = (v - origin) @ frame.T
    cmap = matplotlib.colormaps["turbo"]
    fig = Figure(figsize=(4.2 * len(views) + 0.8, 4.8))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(views)))
    for ax, (name, yaw) in zip(axes, views):
        _draw_view(ax, local, f, cmap(np.clip(face_err / vmax, 0, 1)), yaw)
        ax.set_title(name)
    mappable = ScalarMappable(cmap=cmap, norm=Normalize(0, vmax))
    fig.colorbar(mappable, ax=list(axes), label="error (mm)", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".").lower() or "png")
    return path


def _draw_view(ax, local: np.ndarray, faces: np.ndarray, colours: np.ndarray, yaw: float) -> None:
    """Paint the triangles (F, 3) of the (V, 3) face-frame mesh seen from ``yaw`` degrees, one colour (F, 4) each."""
    from matplotlib.collections import PolyCollection

    a = math.radians(yaw)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    tri = (local @ rot.T)[faces]
    order = np.argsort(tri[:, :, 2].mean(1))  # painter's algorithm: far triangles first
    ax.add_collection(PolyCollection(tri[order, :, :2], facecolors=colours[order], edgecolors=colours[order],
                                     linewidths=0.3))
    ax.set_xlim(tri[:, :, 0].min(), tri[:, :, 0].max())
    ax.set_ylim(tri[:, :, 1].min(), tri[:, :, 1].max())
    ax.set_aspect("equal")
    ax.set_axis_off()


def save_now_heatmap(report: NowReport, path: str | Path, which: str = "worst") -> tuple[Path, NowItem]:
    """Heat map of the per-vertex error of one prediction of a folder evaluation (``worst`` median or ``first``)."""
    if not report.items:
        raise InputError("no prediction to draw")
    item = report.worst() if which == "worst" else report.items[0]
    v, f = load_mesh(item.mesh_path)
    aligned = apply_similarity(v * item.mm_per_unit, item.scale, item.rotation, item.translation)
    lmk = report.ground_truth.get(item.subject, {}).get("landmarks_mm")
    stats = item.statistics()
    title = (
        f"{item.subject} / {item.challenge} / {item.image}: median {stats['median']:.3f} mm, "
        f"mean {stats['mean']:.3f} mm ({'metrical' if report.metrical else 'non-metrical'})"
    )
    out = save_error_heatmap(path, aligned, f, item.pred_vertex_errors, landmarks7=lmk, title=title)
    return out, item
