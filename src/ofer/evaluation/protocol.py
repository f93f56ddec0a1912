"""Evaluation on a CO-545-style protocol folder (``ofer synth protocol``): co545, shape and rank.

Per image the method's hypotheses are compared with the exact ground truth (no alignment: both
live in the face model's frame, since the head pose is part of the camera). Vertex sets:
``front`` (face region, visible in the picture) and ``unoccluded`` (front and not under the
occluder); "visible" = unoccluded, "occluded" = front minus unoccluded.

Methods evaluated the same way:

- ``OFER``: IdGen samples N shapes, IdRank picks one, ExpGen gives M expressions; the M
  hypotheses are the ranked shape with each expression;
- ``random prior``: N shapes and M expressions drawn from the face model's prior, the first shape
  taken (a random pick); the paper's "FLAME" row.
- ``regressor`` (optional): a deterministic ArcFace -> shape regressor (MICA-like) with the prior's
  mean expression, one hypothesis.

Embeddings are the ones stored in the protocol folder (computed by the same front end when the
data were generated); they are checked against the checkpoints' encoders.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..data.shards import Manifest, ShardDataset
from ..data.synth import unpack_bits
from ..errors import InputError
from ..facemodels import FaceModel
from . import metrics as M

TAU_MM = 10.0  # ASD-O normaliser: 10 mm counts as total failure / full diversity
CHUNK = 16
CACHE_VERSION = 2  # bump when image_metrics gains or changes a field (old caches are recomputed)


@dataclass
class Hypotheses:
    """What a method returns for a batch of B images (mm, model frame)."""

    shapes: np.ndarray  # (B, N, S) identity samples
    scores: np.ndarray  # (B, N) ranking scores (higher = better)
    chosen: np.ndarray  # (B,) index of the identity used
    meshes: np.ndarray  # (B, M, V, 3) expressive hypotheses, mm


def load_protocol(folder: str | Path) -> tuple[Manifest, dict[str, np.ndarray]]:
    dataset = ShardDataset(folder)
    if dataset.manifest.kind != "protocol":
        raise InputError(f"{folder}: not a protocol folder (kind {dataset.manifest.kind!r}); use ofer synth protocol")
    fields = ["shape", "expression", "arcface", "appearance", "front", "unoccluded", "identity", "category"]
    if dataset.manifest.face_model.get("jaw_dim", 0):
        fields.append("jaw")
    return dataset.manifest, dataset.arrays(fields)


def ground_truth(model: FaceModel, data: dict, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expressive (B, V, 3) and neutral (B, V, 3) ground-truth meshes in mm."""
    from ..pipeline.ofer import split_expression

    shape = torch.from_numpy(data["shape"][index])
    code = data["expression"][index]
    if "jaw" in data:
        code = np.concatenate([code, data["jaw"][index]], 1)
    expression, pose = split_expression(model, torch.from_numpy(code))
    with torch.no_grad():
        expressive = model(shape, expression, pose).vertices.numpy() * 1000
        neutral = model(shape).vertices.numpy() * 1000
    return expressive, neutral


def ofer_method(pipe, shapes: int, expressions: int, sampler: str, steps: Optional[int], seed: int) -> Callable:
    from ..pipeline.ofer import ReconstructionSettings

    settings = ReconstructionSettings(shapes, expressions, sampler, steps, seed)

    def run(data: dict, index: np.ndarray) -> Hypotheses:
        settings.seed = seed + int(index[0])  # reproducible per chunk, whatever was computed before
        recs = pipe.reconstruct_embeddings(data["arcface"][index], data["appearance"][index], settings,
                                           [str(i) for i in index])
        return Hypotheses(
            shapes=np.stack([r.shapes for r in recs]),
            scores=np.stack([r.rank_scores for r in recs]),
            chosen=np.array([r.chosen for r in recs]),
            meshes=np.stack([r.expression_vertices for r in recs]) * 1000,
        )

    return run


def prior_method(model: FaceModel, shapes: int, expressions: int, seed: int) -> Callable:
    def run(data: dict, index: np.ndarray) -> Hypotheses:
        g = torch.Generator().manual_seed(seed + int(index[0]))
        B = len(index)
        shape = model.sample_prior(B * shapes, g).shape.view(B, shapes, -1)
        sample = model.sample_prior(B * expressions, g, expression=True)
        with torch.no_grad():
            meshes = model(shape[:, 0].repeat_interleave(expressions, 0), sample.expression, sample.pose).vertices
        return Hypotheses(shape.numpy(), np.zeros((B, shapes)), np.zeros(B, int),
                          meshes.view(B, expressions, -1, 3).numpy() * 1000)

    return run


def front_meshes(model: FaceModel, shapes: np.ndarray) -> np.ndarray:
    """(B, N, S) shapes -> (B, N, F, 3) face-region vertices of their neutral meshes, mm."""
    B, N, S = shapes.shape
    with torch.no_grad():
        meshes = model(torch.from_numpy(shapes.reshape(B * N, S)).float()).vertices.numpy().reshape(B, N, -1, 3) * 1000
    return meshes[:, :, model.front_mask.numpy()]


def medoid_index(meshes: np.ndarray) -> np.ndarray:
    """(B, N, F, 3) -> (B,) index of the sample closest (RMS) to the mean of the N samples: a network-free ranker."""
    return np.sqrt(((meshes - meshes.mean(1, keepdims=True)) ** 2).sum(-1).mean(-1)).argmin(1)


def image_metrics(h: Hypotheses, gt: np.ndarray, neutral_gt: np.ndarray, front: np.ndarray, unocc: np.ndarray,
                  gaussian: M.VertexGaussian, model: FaceModel) -> dict[str, np.ndarray]:
    """Per-image metrics (B,) for one chunk."""
    meshes = front_meshes(model, h.shapes)
    ident = np.sqrt(((meshes - neutral_gt[:, None, model.front_mask.numpy()]) ** 2).sum(-1).mean(-1))
    rows = {k: [] for k in ("se_vis", "cse_vis", "se_front", "cse_front", "min_asd_v", "max_asd_v", "asd_o",
                            "ode", "ode_o", "ode_v", "std_vis", "std_occ")}
    for b in range(len(gt)):
        x, vis, occ = h.meshes[b], unocc[b], front[b] & ~unocc[b]
        errs_vis, errs_front = M.sample_errors(x, gt[b], vis), M.sample_errors(x, gt[b], front[b])
        rows["se_vis"].append(errs_vis.mean())
        rows["cse_vis"].append(errs_vis.min())
        rows["se_front"].append(errs_front.mean())
        rows["cse_front"].append(errs_front.min())
        multi = len(x) > 1
        rows["min_asd_v"].append(M.min_asd_v(x, vis) if multi else 0.0)
        rows["max_asd_v"].append(M.max_asd_v(x, vis) if multi else 0.0)
        rows["asd_o"].append(M.asd_o(x, gt[b], vis, TAU_MM, region=front[b]) if multi and occ.any() else 0.0)
        rows["ode"].append(M.ode(x, gaussian, front[b]))
        rows["ode_o"].append(M.ode(x, gaussian, occ) if occ.any() else 0.0)
        rows["ode_v"].append(M.ode(x, gaussian, vis))
        rows["std_vis"].append(M.std_s(x, None, vis) if multi else 0.0)
        rows["std_occ"].append(M.std_s(x, None, occ) if multi and occ.any() else 0.0)
    out = {k: np.asarray(v, np.float64) for k, v in rows.items()}
    rows_idx = np.arange(len(gt))
    out.update(identity_ranked=ident[rows_idx, h.chosen], identity_oracle=ident.min(1), identity_average=ident.mean(1),
               identity_medoid=ident[rows_idx, medoid_index(meshes)], identity_errors=ident, scores=h.scores)
    with torch.no_grad():
        chosen = torch.from_numpy(h.shapes[rows_idx, h.chosen]).float()
        ranked_neutral = model(chosen).vertices.numpy() * 1000
    out["identity_vertex_error"] = np.linalg.norm(ranked_neutral - neutral_gt, axis=-1).astype(np.float32)
    out["first_hypothesis"] = h.meshes[:, 0].astype(np.float16)
    return out


def run_method(name: str, method: Callable, model: FaceModel, data: dict, gaussian: M.VertexGaussian,
               cache: Path, limit: Optional[int] = None, progress: bool = True,
               signature: Optional[dict] = None) -> dict[str, np.ndarray]:
    """Evaluate ``method`` on every protocol image, in chunks cached under ``cache/<name>/`` (resumable).

    ``signature`` (the settings that produced the cache) is stored beside the chunks; a cache made
    with other settings is discarded.
    """
    import shutil

    from tqdm import tqdm

    count = len(data["shape"]) if limit is None else min(limit, len(data["shape"]))
    V = model.num_vertices
    folder = cache / name.replace(" ", "_")
    stamp = folder / "signature.json"
    wanted = json.dumps({**(signature or {}), "cache_version": CACHE_VERSION}, sort_keys=True)
    if folder.is_dir() and (not stamp.is_file() or stamp.read_text() != wanted):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(wanted)
    parts = []
    for start in tqdm(range(0, count, CHUNK), desc=f"eval {name}", disable=not progress, file=sys.stderr):
        path = folder / f"chunk_{start:05d}.npz"
        if path.is_file():
            with np.load(path) as stored:
                parts.append({k: stored[k] for k in stored.files})
            continue
        index = np.arange(start, min(start + CHUNK, count))
        gt, neutral = ground_truth(model, data, index)
        front = unpack_bits(data["front"][index], V)
        unocc = unpack_bits(data["unoccluded"][index], V)
        result = image_metrics(method(data, index), gt, neutral, front, unocc, gaussian, model)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **result)
        tmp.replace(path)
        parts.append(result)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


SUMMARY_KEYS = ("se_vis", "cse_vis", "se_front", "cse_front", "min_asd_v", "max_asd_v", "asd_o", "ode", "ode_o",
                "ode_v", "std_vis", "std_occ", "identity_ranked", "identity_oracle", "identity_average", "identity_medoid")


def summarise(per_image: dict[str, np.ndarray]) -> dict[str, float]:
    out = {k: float(np.mean(per_image[k])) for k in SUMMARY_KEYS}
    out["images"] = int(len(per_image["se_vis"]))
    return out


def reference_gaussian(model: FaceModel, data: dict) -> M.VertexGaussian:
    """Per-vertex Gaussian of the protocol's ground-truth expressive meshes (mm), for ODE."""
    gt, _ = ground_truth(model, data, np.arange(len(data["shape"])))
    return M.VertexGaussian.fit(gt)


def markdown_table(results: dict[str, dict]) -> str:
    header = ("| method | SE vis | CSE vis | SE front | CSE front | minASD-V | maxASD-V | ASD-O | ODE | "
              "spread vis | spread occ | identity (ranked) | identity (oracle) | identity (average) |")
    lines = [header, "|" + "|".join(["---"] * 14) + "|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['se_vis']:.2f} | {r['cse_vis']:.2f} | {r['se_front']:.2f} | {r['cse_front']:.2f} | "
            f"{r['min_asd_v']:.2f} | {r['max_asd_v']:.2f} | {r['asd_o']:.3f} | {r['ode']:.3f} | {r['std_vis']:.2f} | "
            f"{r['std_occ']:.2f} | {r['identity_ranked']:.2f} | {r['identity_oracle']:.2f} | {r['identity_average']:.2f} |"
        )
    return "\n".join(lines)


def write_report(out: Path, results: dict[str, dict], per_image: dict[str, dict], model: FaceModel, settings: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ranking = M.ranking_table(per_image["OFER"]["identity_errors"], per_image["OFER"]["scores"]) if "OFER" in per_image else {}
    (out / "metrics.json").write_text(json.dumps({"settings": settings, "methods": results, "ranking": ranking}, indent=2))
    text = [
        "# CO-545-style evaluation",
        "",
        f"{next(iter(results.values()))['images']} protocol images; distances in mm (RMS vertex distance, no alignment). "
        "`vis` = unoccluded front vertices, `front` = all front-face vertices. SE = mean over hypotheses, "
        "CSE = best hypothesis; minASD-V / maxASD-V = distance of each hypothesis to its nearest / farthest "
        f"other on visible vertices; ASD-O with tau = {TAU_MM} mm (higher is better); ODE = mean Mahalanobis "
        "excess over the protocol's ground-truth distribution; spread = per-vertex std across hypotheses on "
        "visible / occluded vertices; identity = RMS error of neutral face-region vertices for the ranked, the "
        "best (oracle) and the average of the N identity samples.",
        "",
        markdown_table(results),
        "",
        *( [f"Ranking (OFER, {ranking['num_candidates']} identity samples): ranked {ranking['ranked_error']:.3f} mm, "
            f"oracle {ranking['oracle_error']:.3f} mm, average {ranking['average_error']:.3f} mm; the ranker closes "
            f"{100 * ranking['gap_closed']:.1f} % of the average-to-oracle gap; top-5 precision "
            f"{ranking.get('precision@5', float('nan')):.3f}; the sample closest to the mean of the samples "
            f"(no network) has {results['OFER']['identity_medoid']:.3f} mm.", ""] if ranking else []),
        f"Settings: `{json.dumps(settings)}`",
        "",
        "![CDF](cdf.png)",
        "",
        "![per-vertex identity error](vertex_error.png)",
        "",
        "![worst cases](worst.png)",
    ]
    (out / "report.md").write_text("\n".join(text) + "\n")
    plot_cdf(out / "cdf.png", per_image)
    first = next(iter(per_image))
    plot_vertex_error(out / "vertex_error.png", model, per_image[first]["identity_vertex_error"].mean(0))
    plot_worst(out / "worst.png", model, per_image[first], settings["data"])


def plot_vertex_error(path: Path, model: FaceModel, error_mm: np.ndarray) -> None:
    """Mean per-vertex identity error rendered on the mean face (front and side), with a scale."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import cm
    from PIL import Image, ImageDraw

    from ..pipeline.outputs import render_views

    top = max(float(np.percentile(error_mm, 99)), 1e-6)
    colours = cm.viridis(np.clip(error_mm / top, 0, 1))[:, :3]
    with torch.no_grad():
        mean_face = model().vertices.numpy()
    views = render_views(model, mean_face, colours, size=256)
    picture = Image.fromarray(np.concatenate([views["front"][0], views["side"][0]], 1))
    ImageDraw.Draw(picture).text((4, 3), f"mean identity error per vertex: 0 (purple) .. {top:.2f} mm (yellow)", fill=(0, 0, 0))
    picture.save(path)


def plot_worst(path: Path, model: FaceModel, rows: dict, data_folder: str, count: int = 6) -> None:
    """The images with the largest CSE on visible vertices: input picture and the first hypothesis."""
    from PIL import Image, ImageDraw

    from ..pipeline.outputs import render_views

    dataset = ShardDataset(data_folder, fields=("image",))
    worst = np.argsort(-rows["cse_vis"])[:count]
    tiles = []
    for i in worst:
        picture = Image.fromarray(dataset[int(i)]["image"].numpy()).resize((192, 192))
        render = render_views(model, rows["first_hypothesis"][i][None].astype(np.float32) / 1000, size=192)["front"][0]
        pair = np.concatenate([np.asarray(picture), render], 0)
        tile = Image.fromarray(pair)
        ImageDraw.Draw(tile).text((4, 3), f"#{i} CSE {rows['cse_vis'][i]:.2f} mm", fill=(255, 255, 0))
        tiles.append(np.asarray(tile))
    Image.fromarray(np.concatenate(tiles, 1)).save(path)


def plot_cdf(path: Path, per_image: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for ax, key, title in ((axes[0], "cse_vis", "CSE on visible vertices (mm)"), (axes[1], "identity_ranked", "identity error (mm)")):
        for name, rows in per_image.items():
            values = np.sort(rows[key])
            ax.plot(values, np.linspace(0, 1, len(values)), label=name)
        ax.set_xlabel(title)
        ax.set_ylabel("fraction of images")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
