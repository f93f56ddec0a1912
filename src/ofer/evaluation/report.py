"""The CO-545 report: table (markdown, also printed), ``metrics.json``, ``report.md`` and its figures.

``results`` maps a method's row label to :func:`ofer.evaluation.protocol.summarise` output; a cell
whose mean left images out (metric undefined there) says how many entered it: ``0.41 (n=540 of 545)``.
``metrics.json`` writes NaN (a metric defined for no image) as ``null``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..data.shards import ShardDataset
from ..facemodels import FaceModel
from ..io.atomic import atomic_path, save_picture, write_json, write_text
from ..methods.outputs import render_views
from .protocol import TAU_MM

__all__ = ["COLUMNS", "json_ready", "markdown_table", "ranking_sentence", "write_report"]

# (header, summary key, format) of the table's metric columns
COLUMNS = (
    ("SE vis", "se_vis", "{:.2f}"), ("CSE vis", "cse_vis", "{:.2f}"), ("SE front", "se_front", "{:.2f}"),
    ("CSE front", "cse_front", "{:.2f}"), ("minASD-V", "min_asd_v", "{:.2f}"), ("maxASD-V", "max_asd_v", "{:.2f}"),
    ("ASD-O", "asd_o", "{:.3f}"), ("ODE", "ode", "{:.1e}"), ("spread vis", "std_vis", "{:.2f}"),
    ("spread occ", "std_occ", "{:.2f}"), ("identity (ranked)", "identity_ranked", "{:.2f}"),
    ("identity (oracle)", "identity_oracle", "{:.2f}"), ("identity (average)", "identity_average", "{:.2f}"),
)


def _cell(summary: dict, key: str, fmt: str) -> str:
    value, total = summary[key], summary["images"]
    used = summary.get("counts", {}).get(key, total)
    text = fmt.format(value) if math.isfinite(value) else "n/a"
    return text if used == total else f"{text} (n={used} of {total})"


def markdown_table(results: dict[str, dict]) -> str:
    """One row per method: the :data:`COLUMNS`, with the exclusion count where a mean left images out."""
    lines = ["| method | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|" + "|".join(["---"] * (len(COLUMNS) + 1)) + "|"]
    for name, summary in results.items():
        lines.append(f"| {name} | " + " | ".join(_cell(summary, k, f) for _, k, f in COLUMNS) + " |")
    return "\n".join(lines)


def ranking_sentence(label: str, ranking: dict, medoid_mm: float) -> str:
    """The ranking summary of one ranking method (``ranking``: :func:`ofer.evaluation.ranking.ranking_table`)."""
    return (f"Ranking ({label}, {ranking['num_candidates']} identity samples): "
            f"ranked {ranking['ranked_error']:.3f} mm, "
            f"oracle {ranking['oracle_error']:.3f} mm, average {ranking['average_error']:.3f} mm; the ranker closes "
            f"{100 * ranking['gap_closed']:.1f} % of the average-to-oracle gap; top-5 precision "
            f"{ranking.get('precision@5', float('nan')):.3f}; the sample closest to the mean of the samples "
            f"(no network) has {medoid_mm:.3f} mm.")


def json_ready(value):
    """``value`` with every non-finite float replaced by ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _describe(images: int, reference: dict) -> str:
    source = (f"{reference['samples']} meshes of {reference['path']}" if reference.get("source") == "folder"
              else f"{reference.get('samples')} prior draws, protocol expression recipe, seed {reference.get('seed')}")
    return (
        f"{images} protocol images; distances in mm (RMS vertex distance, no alignment). "
        "`vis` = unoccluded front vertices, `front` = all front-face vertices. SE = mean over hypotheses, "
        "CSE = best hypothesis; minASD-V / maxASD-V = distance of each hypothesis to its nearest / farthest "
        f"other on visible vertices; ASD-O with tau = {TAU_MM} mm (higher is better); ODE = mean Mahalanobis "
        f"excess over a reference ground-truth distribution ({source}); spread = per-vertex std across the "
        "in-distribution hypotheses on visible / occluded vertices; identity = RMS error of neutral face-region "
        "vertices for the ranked, the best (oracle) and the average of the N identity samples. "
        "\"(n=K of N)\": the metric is undefined for the other images (no occluded vertex, a single hypothesis, "
        "or no vertex with two in-distribution hypotheses) and left out of the mean."
    )


def write_report(out: Path, results: dict[str, dict], per_image: dict[str, dict], rankings: dict[str, dict],
                 model: FaceModel, settings: dict, reference: dict) -> None:
    """``metrics.json``, ``report.md`` and the figures (cdf, per-vertex identity error, worst cases) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", json_ready({"settings": settings, "reference": reference, "methods": results,
                                                  "ranking": rankings}))
    sentences = [ranking_sentence(label, table, results[label]["identity_medoid"]) for label, table in rankings.items()]
    text = ["# CO-545-style evaluation", "", _describe(next(iter(results.values()))["images"], reference), "",
            markdown_table(results), "", *[s + "\n" for s in sentences], f"Settings: `{json.dumps(settings)}`", "",
            "![CDF](cdf.png)", "", "![per-vertex identity error](vertex_error.png)", "", "![worst cases](worst.png)"]
    write_text(out / "report.md", "\n".join(text) + "\n")
    plot_cdf(out / "cdf.png", per_image)
    first = next(iter(per_image))
    plot_vertex_error(out / "vertex_error.png", model, per_image[first]["identity_vertex_error"].mean(0))
    plot_worst(out / "worst.png", model, per_image[first], settings["data"])


def plot_vertex_error(path: Path, model: FaceModel, error_mm: np.ndarray) -> None:
    """Mean per-vertex identity error rendered on the mean face (front and side), with a scale."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    from matplotlib import cm
    from PIL import Image, ImageDraw

    top = max(float(np.percentile(error_mm, 99)), 1e-6)
    colours = cm.viridis(np.clip(error_mm / top, 0, 1))[:, :3]
    with torch.no_grad():
        mean_face = model().vertices.cpu().numpy()
    views = render_views(model, mean_face, colours, size=256)
    picture = Image.fromarray(np.concatenate([views["front"][0], views["side"][0]], 1))
    caption = f"mean identity error per vertex: 0 (purple) .. {top:.2f} mm (yellow)"
    ImageDraw.Draw(picture).text((4, 3), caption, fill=(0, 0, 0))
    save_picture(path, picture)


def plot_worst(path: Path, model: FaceModel, rows: dict, data_folder: str, count: int = 6) -> None:
    """The images with the largest CSE on visible vertices: input picture and the first hypothesis."""
    from PIL import Image, ImageDraw

    dataset = ShardDataset(data_folder, fields=("image",))
    cse = np.where(np.isfinite(rows["cse_vis"]), rows["cse_vis"], -np.inf)
    tiles = []
    for i in np.argsort(-cse, kind="stable")[:count]:
        picture = Image.fromarray(dataset[int(i)]["image"].numpy()).resize((192, 192))
        render = render_views(model, rows["first_hypothesis"][i][None].astype(np.float32) / 1000, size=192)["front"][0]
        tile = Image.fromarray(np.concatenate([np.asarray(picture), render], 0))
        ImageDraw.Draw(tile).text((4, 3), f"#{i} CSE {rows['cse_vis'][i]:.2f} mm", fill=(255, 255, 0))
        tiles.append(np.asarray(tile))
    save_picture(path, Image.fromarray(np.concatenate(tiles, 1)))


def plot_cdf(path: Path, per_image: dict[str, dict]) -> None:
    """CDFs of CSE on visible vertices and of the ranked identity error, one curve per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    panels = (("cse_vis", "CSE on visible vertices (mm)"), ("identity_ranked", "identity error (mm)"))
    for ax, (key, title) in zip(axes, panels):
        for name, rows in per_image.items():
            values = np.sort(rows[key][np.isfinite(rows[key])])
            ax.plot(values, np.linspace(0, 1, len(values)), label=name)
        ax.set_xlabel(title)
        ax.set_ylabel("fraction of images")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
