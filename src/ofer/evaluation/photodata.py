"""``ofer eval photodata``: methods on a photo-domain folder (``ofer synth photo``), against its pseudo-labels.

A photo folder holds K occluded copies of each generated face (one record each) and, for every
copy, the pseudo-labels the landmark fitter found on the *clean* picture (``shape``, ``expression``,
``jaw`` where the model has one; :mod:`ofer.data.photo`). Each method reconstructs every occluded
copy, and is scored against the clean picture's labels:

* **identity**: the RMS error over the face-region vertices of the neutral meshes after a
  similarity alignment of each identity sample onto the pseudo-label's neutral mesh (a fit to a
  photo does not pin scale and depth exactly), computed by the co545 code
  (:func:`ofer.evaluation.protocol.identity_metrics` with ``align=True``) for the ranked sample,
  the best one (oracle), the average over the samples and the medoid; the ranker's share of the
  average-to-oracle gap is :func:`ofer.evaluation.ranking.ranking_table`'s ``gap_closed``;
* **expression**: the method's M expression codes are put on the pseudo-label's shape (the
  identity fixed, as ``benchmarks/bench_expgen.py`` does) and compared, without alignment, with the
  pseudo-label's expressive mesh: SE (mean over the hypotheses) and CSE (best hypothesis) on the
  visible (unoccluded front), occluded (front minus unoccluded) and front vertices, the co545
  vertex sets.

Methods that reconstruct from embeddings use each record's stored ``arcface`` / ``appearance``
(of the occluded picture, as co545 does) with the record index as random key; a method that needs
images (``fit``) gets the record's occluded ``image``; where it finds no face the record counts as
a failure (``failed``) and is left out of that method's means. Per-image results are cached in
chunks under the report folder (:func:`ofer.evaluation.protocol._open_cache`), so a run resumes.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.occluders import CATEGORIES
from ..data.shards import ShardDataset, code_fields
from ..errors import InputError
from ..facemodels import FaceModel
from ..io.atomic import save_npz, write_json, write_text
from ..methods.base import Hypotheses, Method, Reconstruction, ReconstructionSettings
from . import metrics as M
from . import protocol as P
from .groundtruth import code_meshes, ground_truth
from .ranking import ranking_table
from .report import json_ready

__all__ = ["CACHE_VERSION", "EXPRESSION_KEYS", "IDENTITY_KEYS", "evaluate_photodata", "gap_share",
           "load_photo_set", "markdown_tables", "photodata_metrics", "summarise", "write_photodata_report"]

CACHE_VERSION = 1  # bump when photodata_metrics changes (old caches are recomputed)
FIELDS = (*P.FIELDS, "variant")
IDENTITY_KEYS = ("identity_ranked", "identity_oracle", "identity_average", "identity_medoid")
EXPRESSION_KEYS = ("expr_se_vis", "expr_cse_vis", "expr_se_occ", "expr_cse_occ", "expr_se_front", "expr_cse_front")
SUMMARY_KEYS = (*IDENTITY_KEYS, *EXPRESSION_KEYS)
# (header, summary key, format) of the main table
COLUMNS = (
    ("identity (ranked)", "identity_ranked", "{:.2f}"), ("identity (oracle)", "identity_oracle", "{:.2f}"),
    ("identity (average)", "identity_average", "{:.2f}"), ("expr SE vis", "expr_se_vis", "{:.2f}"),
    ("expr CSE vis", "expr_cse_vis", "{:.2f}"), ("expr SE occ", "expr_se_occ", "{:.2f}"),
    ("expr CSE occ", "expr_cse_occ", "{:.2f}"), ("expr SE front", "expr_se_front", "{:.2f}"),
    ("expr CSE front", "expr_cse_front", "{:.2f}"),
)


def load_photo_set(folder: str | Path, images: bool = False) -> P.Protocol:
    """A photo folder as a :class:`~ofer.evaluation.protocol.Protocol` (its columns; ``image`` too if ``images``).

    One-line :class:`InputError` for a missing folder, a folder without manifest, an incomplete one
    or one of another kind.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    dataset = ShardDataset(folder)
    kind = dataset.manifest.kind
    if kind != "photo":
        raise InputError(f"{folder}: not a photo folder (kind {kind!r}); use ofer synth photo")
    jaw = dataset.manifest.face_model.get("jaw_dim", 0)
    fields = list(dict.fromkeys([*FIELDS, *code_fields(jaw), *(["image"] if images else [])]))
    return P.Protocol(folder, dataset.manifest, dataset.arrays(fields))


def _reconstructions(method: Method, data: dict[str, np.ndarray], index: np.ndarray,
                     settings: ReconstructionSettings) -> list[Reconstruction | None]:
    """The method's result for the records ``index`` (``None`` where it found no face)."""
    keys = [int(i) for i in index]
    if not method.needs_images:
        return list(method.reconstruct_embeddings(data["arcface"][index], data["appearance"][index], settings, keys))
    out = []
    for i in keys:
        result = method.reconstruct([data["image"][i]], settings, [str(i)], place=False)[0]
        out.append(None if isinstance(result, Exception) else result)
    return out


def _expression_errors(model: FaceModel, rec: Reconstruction, shape: np.ndarray, gt: np.ndarray,
                       front: np.ndarray, vis: np.ndarray) -> dict[str, float]:
    """SE / CSE (mm) of the hypotheses' codes on the pseudo-label ``shape`` (S,) against ``gt`` (V, 3)."""
    codes = np.asarray(rec.expressions, np.float32)
    meshes = code_meshes(model, np.repeat(shape[None], len(codes), 0), codes)
    out = {}
    for name, mask in (("vis", vis), ("occ", front & ~vis), ("front", front)):
        out[f"expr_se_{name}"] = M.sample_error(meshes, gt, mask)
        out[f"expr_cse_{name}"] = M.closest_sample_error(meshes, gt, mask)
    return out


def photodata_metrics(recs: list[Reconstruction | None], data: dict[str, np.ndarray], index: np.ndarray,
                      masks: tuple[np.ndarray, np.ndarray], model: FaceModel, method: Method) -> dict[str, np.ndarray]:
    """Per-record metrics (B,) of one chunk; NaN (and ``failed``) where the method found no face.

    ``masks``: (B, V) ``front`` and ``unoccluded``. Also ``identity_errors`` / ``scores`` (B, N) for
    the ranking table (NaN rows for failures) and ``chosen`` (B,).
    """
    count = len(index)
    found = [b for b, r in enumerate(recs) if r is not None]
    failed = np.array([r is None for r in recs])
    out: dict[str, np.ndarray] = {k: np.full(count, np.nan) for k in SUMMARY_KEYS}
    out["failed"], out["chosen"] = failed, np.full(count, -1, np.int64)
    if not found:
        out["identity_errors"] = out["scores"] = np.full((count, 1), np.nan)
        return out
    h = Hypotheses.from_reconstructions([recs[b] for b in found])
    P._check_hypotheses(h, len(found), model.num_vertices, method)
    gt, neutral = ground_truth(model, data, index[found])
    ident = P.identity_metrics(h, neutral, model, align=True)
    width = ident["identity_errors"].shape[1]
    out["identity_errors"], out["scores"] = np.full((count, width), np.nan), np.full((count, width), np.nan)
    for key in (*IDENTITY_KEYS, "identity_errors", "scores"):
        out[key][found] = ident[key]
    out["chosen"][found] = h.chosen
    front, unocc = masks
    for j, b in enumerate(found):
        errors = _expression_errors(model, recs[b], data["shape"][index[b]], gt[j], front[b], unocc[b] & front[b])
        for key, value in errors.items():
            out[key][b] = value
    return out


def evaluate_photodata(method: Method, photos: P.Protocol, settings: ReconstructionSettings, cache: Path,
                       limit: int | None = None, signature: dict | None = None, model: FaceModel | None = None,
                       progress: bool = True) -> dict[str, np.ndarray]:
    """Evaluate ``method`` on the first ``limit`` records, in chunks cached under ``cache`` (resumable).

    As :func:`ofer.evaluation.protocol.evaluate_method`: ``signature`` names everything that made the
    numbers (a cache made otherwise is discarded), chunk files name their record range. Returns
    per-record arrays (count, ...) plus ``category`` and ``identity`` (face index).
    """
    model = model or method.face_model
    count = photos.count(limit)
    if count < 1:
        raise InputError(f"{photos.folder}: the photo folder holds no record")
    P._open_cache(cache, {**(signature or {}), "photodata_version": CACHE_VERSION})
    parts = []
    with tqdm(total=count, desc=f"eval {method.label}", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, count, P.CHUNK):
            index = np.arange(start, min(start + P.CHUNK, count))
            path = P.chunk_path(cache, index)
            stored = P.read_chunk(path, len(index))
            if stored is not None:
                parts.append(stored)
            else:
                recs = _reconstructions(method, photos.data, index, settings)
                result = photodata_metrics(recs, photos.data, index, photos.masks(index, model.num_vertices),
                                           model, method)
                save_npz(path, **result)
                parts.append(result)
            bar.update(len(index))
    width = max(p["identity_errors"].shape[1] for p in parts)  # a chunk where every record failed has width 1
    for p in parts:
        if p["identity_errors"].shape[1] < width:
            p["identity_errors"] = p["scores"] = np.full((len(p["failed"]), width), np.nan)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["category"] = photos.data["category"][:count].astype(np.int64)
    out["identity"] = photos.data["identity"][:count].astype(np.int64)
    return out


def gap_share(average: float, ranked: float, oracle: float) -> float:
    """The ranker's share of the average-to-oracle gap, ``(average - ranked) / (average - oracle)``; NaN if no gap."""
    gap = average - oracle
    return float((average - ranked) / gap) if gap > 0 else float("nan")


def _ranking(rows: dict[str, np.ndarray], keep: np.ndarray) -> dict | None:
    """:func:`ranking_table` of the records ``keep`` the method reconstructed, if it ranks there."""
    keep = keep & ~rows["failed"].astype(bool)
    if not keep.any() or not P.ranks({"scores": rows["scores"][keep]}):
        return None
    return ranking_table(rows["identity_errors"][keep], rows["scores"][keep])


def summarise(rows: dict[str, np.ndarray]) -> dict:
    """One method's summary: ``records``, ``failed``, the means of :data:`SUMMARY_KEYS` over the records
    where they are defined (``counts``), ``ranking`` (:func:`ranking_table`, or ``None`` for a method
    that does not rank) and the same per occluder category (``categories``)."""

    def means(keep: np.ndarray) -> dict:
        out = {"records": int(keep.sum()), "failed": int(rows["failed"][keep].sum()), "counts": {}}
        for key in SUMMARY_KEYS:
            values = np.asarray(rows[key], np.float64)[keep]
            finite = np.isfinite(values)
            out[key] = float(values[finite].mean()) if finite.any() else float("nan")
            out["counts"][key] = int(finite.sum())
        out["ranking"] = _ranking(rows, keep)
        return out

    everything = np.ones(len(rows["failed"]), bool)
    summary = means(everything)
    summary["faces"] = int(len(np.unique(rows["identity"])))
    summary["categories"] = {CATEGORIES[c] if 0 <= c < len(CATEGORIES) else str(c): means(rows["category"] == c)
                             for c in sorted(set(rows["category"].tolist()))}
    return summary


def _cell(summary: dict, key: str, fmt: str) -> str:
    value, total = summary[key], summary["records"]
    used = summary["counts"][key]
    text = fmt.format(value) if math.isfinite(value) else "n/a"
    return text if used == total else f"{text} (n={used} of {total})"


def _share(summary: dict) -> str:
    ranking = summary["ranking"]
    return "n/a" if ranking is None or not math.isfinite(ranking["gap_closed"]) else \
        f"{100 * ranking['gap_closed']:.1f} %"


def markdown_tables(results: dict[str, dict]) -> tuple[str, str]:
    """The main table (one row per method) and the per-category table (method x occluder category)."""
    head = ["method", "records", "failed", *(h for h, _, _ in COLUMNS), "ranker's share of gap"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for name, s in results.items():
        cells = [name, str(s["records"]), str(s["failed"]), *(_cell(s, k, f) for _, k, f in COLUMNS), _share(s)]
        lines.append("| " + " | ".join(cells) + " |")
    head2 = ["method", "occluder", "records", "failed", "identity (ranked)", "identity (oracle)",
             "identity (average)", "expr SE vis", "expr SE occ", "ranker's share of gap"]
    keys = ("identity_ranked", "identity_oracle", "identity_average", "expr_se_vis", "expr_se_occ")
    cats = ["| " + " | ".join(head2) + " |", "|" + "|".join(["---"] * len(head2)) + "|"]
    for name, s in results.items():
        for category, c in s["categories"].items():
            cells = [name, category, str(c["records"]), str(c["failed"]), *(_cell(c, k, "{:.2f}") for k in keys),
                     _share(c)]
            cats.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), "\n".join(cats)


def _describe(results: dict[str, dict]) -> str:
    first = next(iter(results.values()))
    return (
        f"{first['records']} occluded records of {first['faces']} generated faces; reference = the pseudo-labels "
        "fitted on each face's clean picture. Distances in mm. identity = RMS error of the neutral face-region "
        "vertices after similarity alignment (Umeyama) of each identity sample onto the pseudo-label, for the "
        "ranked sample, the best of the N samples (oracle) and their average; expr = the method's expression "
        "hypotheses on the pseudo-label's shape (identity fixed) against the pseudo-label's expressive mesh, no "
        "alignment: SE = mean over the hypotheses, CSE = best hypothesis, on the visible (unoccluded front), "
        "occluded and front vertices. ranker's share of gap = (average - ranked) / (average - oracle) on the means. "
        "failed = records where the method found no face (left out of its means); \"(n=K of N)\": the metric is "
        "defined for K records only (failures, or no occluded vertex). The pseudo-labels are the landmark "
        "fitter's own result on the clean picture: the `fit` method's row measures only what the occluder "
        "and the degradation do to the fitter, not its error against a true face."
    )


def write_photodata_report(out: Path, results: dict[str, dict], settings: dict) -> tuple[str, str]:
    """``metrics.json`` and ``report.md`` (both atomic) in ``out``; returns the two tables."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", json_ready({"settings": settings, "methods": results}))
    main, categories = markdown_tables(results)
    lines = ["# Photo-domain evaluation (held-out generated photos, pseudo-labels)", "", _describe(results), "",
             main, ""]
    for name, s in results.items():
        if s["ranking"] is not None:
            r = s["ranking"]
            lines.append(f"Ranking ({name}, {r['num_candidates']} identity samples, {r['num_rows']} records): ranked "
                         f"{r['ranked_error']:.3f} mm, oracle {r['oracle_error']:.3f} mm, average "
                         f"{r['average_error']:.3f} mm, medoid {s['identity_medoid']:.3f} mm; the ranker closes "
                         f"{_share(s)} of the average-to-oracle gap; top-5 precision "
                         f"{r.get('precision@5', float('nan')):.3f}.\n")
    lines += ["Per occluder category:", "", categories, "", f"Settings: `{json.dumps(json_ready(settings))}`"]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    return main, categories

