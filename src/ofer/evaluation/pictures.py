"""``ofer eval pictures``: FOCUS and its variants on a photo folder with exact occluder masks.

Every record's occluded picture (already framed by the engine) is resized to the run's picture size
and goes once through R and S (:meth:`~ofer.methods.focus.method.FocusMethod.encode`). Per record:

- segmentation (:func:`~.segmentation.segmentation_scores`): S's mask (>= 0.5) against the true
  visible face (the engine's face silhouette minus the occluder mask, resized), inside R's rendered
  region; for variants without S (``mofa``, ``supervised``) the rendered region itself, i.e. "all face";
  ``f1_all_face``, the F1 of that trivial mask, is kept for every method as the floor a segmenter must beat;
- the M_pre masks of the "Pretrained" R at xi = 0.0166 ([C]), 0.0296 (4 sigma) and 0.17 (the paper),
  BASELINES.md A.4's study;
- image-fitting RMSE inside the true visible face (0-255);
- identity error: the neutral mesh of R's identity against the pseudo-label's (face region,
  similarity-aligned RMS, mm), and the expressive mesh's error on the visible face-region vertices;
- paired clean / occluded (BASELINES.md A.11.6.4; folders made with ``--clean-images``): the same
  identity error on the record's unoccluded picture (``identity_clean``) and the gap occluded - clean.

Records group by occluder (:data:`~ofer.data.occluders.KIND_GROUPS`, from ``occluder_kind``; folders
made before it was stored group by ``category``). Means over records; F1 also with its std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.occluders import CATEGORIES, OCCLUDER_KINDS, kind_group
from ..data.shards import ShardDataset, unpack_bits
from ..errors import InputError
from ..methods.focus import losses as L
from ..methods.focus.method import FocusMethod
from . import metrics as M
from .groundtruth import code_meshes, ground_truth
from .segmentation import fitting_rmse, segmentation_scores

XI_STUDY = (0.0166, 0.0296, 0.17)
LABELS = {"focus": "FOCUS", "baseline": "Baseline", "neighbor": "Neighbor", "perceptual": "Perceptual",
          "mofa": "MoFA-style", "supervised": "Backbone-Supervised"}
CATEGORY_GROUPS = {"none": "unoccluded", "hand": "hand", "object": "object", "random": "random", "eyes": "glasses"}
CHUNK = 16


def load_pictures_folder(folder: str | Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """The records of a photo folder that this protocol reads: pictures, true visible face, groups, labels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    dataset = ShardDataset(folder)
    if dataset.manifest.kind != "photo":
        raise InputError(f"{folder}: kind {dataset.manifest.kind!r} has no face silhouette; use a photo folder "
                         f"(ofer synth photo)")
    first = dataset.read_shard(0)
    fields = ["image", "silhouette", "occluder_mask", "category", "shape", "expression", "front", "unoccluded"]
    fields += [f for f in ("occluder_kind", "image_clean") if f in first]
    data = dataset.arrays(fields)
    count = len(data["image"]) if limit is None else min(limit, len(data["image"]))
    data = {k: v[:count] for k, v in data.items()}
    width = data["image"].shape[2]
    data["visible"] = unpack_bits(data["silhouette"], width) & ~unpack_bits(data["occluder_mask"], width)
    if "occluder_kind" in data:
        data["group"] = np.array([kind_group(OCCLUDER_KINDS[k]) for k in data["occluder_kind"]])
    else:
        data["group"] = np.array([CATEGORY_GROUPS[CATEGORIES[c]] for c in data["category"]])
    return data


def _resize(images: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    import cv2

    mode = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return np.stack([cv2.resize(np.ascontiguousarray(im), (size, size), interpolation=mode) for im in images])


def _neutral_meshes(method: FocusMethod, theta: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(B, V, 3) neutral and expressive meshes (mm) of R's theta, the misfit prior subtracted if the method has it."""
    model = method.cpu_face_model()
    shape, code = method.coefficients(theta)
    neutral, expressive = code_meshes(model, shape.numpy()), code_meshes(model, shape.numpy(), code.numpy())
    if method.misfit_prior:  # P_mf = P - E_MP (mm here)
        neutral = neutral - method.model.misfit_neutral.cpu().numpy() * 1000.0
        expressive = expressive - method.model.misfit_expression.cpu().numpy() * 1000.0
    return neutral, expressive


def _clean_identity(method: FocusMethod, data: dict, part: slice, gt_neutral: np.ndarray,
                    front_vertices: np.ndarray) -> list[float]:
    """The identity error of R on the records' unoccluded pictures (the paired comparison)."""
    size = method.model.config.image_size
    crops = torch.from_numpy(_resize(data["image_clean"][part], size)).permute(0, 3, 1, 2).float() / 255.0
    theta, _, _ = method.encode(crops.to(method.device))
    neutral, _ = _neutral_meshes(method, theta)
    return [M.aligned_rms(neutral[b], gt_neutral[b], front_vertices[b], scaling=True) for b in range(len(theta))]


def evaluate_method(method: FocusMethod, data: dict[str, np.ndarray], xi_study: bool = False) -> dict[str, np.ndarray]:
    """Per-record metrics (N,) of one loaded FOCUS-like method (see the module docstring)."""
    size, model = method.model.config.image_size, method.cpu_face_model()
    front_vertices = np.unpackbits(data["front"], axis=-1, count=model.num_vertices).astype(bool)
    visible_vertices = np.unpackbits(data["unoccluded"], axis=-1, count=model.num_vertices).astype(bool)
    rows: dict[str, list] = {}
    for start in range(0, len(data["image"]), CHUNK):
        part = slice(start, start + CHUNK)
        crops = torch.from_numpy(_resize(data["image"][part], size)).permute(0, 3, 1, 2).float() / 255.0
        truth = _resize(data["visible"][part].astype(np.uint8), size, nearest=True).astype(bool)
        theta, rendering, mask = method.encode(crops.to(method.device))
        segments = method.model.config.segments
        predicted = (mask >= 0.5) if segments else rendering.region.bool()
        region = rendering.region[:, 0].bool().cpu().numpy()
        images, rendered = crops.permute(0, 2, 3, 1).numpy(), rendering.image.permute(0, 2, 3, 1).cpu().numpy()
        neutral, expressive = _neutral_meshes(method, theta)
        gt_expressive, gt_neutral = ground_truth(model, data, np.arange(start, start + len(theta)))
        clean = (_clean_identity(method, data, part, gt_neutral, front_vertices[part]) if "image_clean" in data
                 else None)
        studies = ({xi: L.preliminary_mask(crops, rendering.image.cpu(), rendering.region.cpu(), xi, "squared")[:, 0]
                    .bool().numpy() for xi in XI_STUDY} if xi_study else {})
        for b in range(len(theta)):
            index = start + b
            scores = segmentation_scores(predicted[b, 0].cpu().numpy(), truth[b], region[b])
            out = {**scores, "rmse": fitting_rmse(images[b], rendered[b], truth[b]),
                   "f1_all_face": segmentation_scores(region[b], truth[b], region[b])["f1"]}
            out["identity"] = M.aligned_rms(neutral[b], gt_neutral[b], front_vertices[index], scaling=True)
            out["expression_vis"] = M.aligned_rms(expressive[b], gt_expressive[b], visible_vertices[index] &
                                                  front_vertices[index], scaling=True)
            if clean is not None:
                out["identity_clean"], out["identity_gap"] = clean[b], out["identity"] - clean[b]
            for xi, masks in studies.items():
                out[f"mpre_f1_{xi:g}"] = segmentation_scores(masks[b], truth[b], region[b])["f1"]
            for key, value in out.items():
                rows.setdefault(key, []).append(value)
    return {k: np.asarray(v, np.float64) for k, v in rows.items()}


def summarise(rows: dict[str, np.ndarray], groups: np.ndarray) -> dict:
    """Means per metric over all, occluded and unoccluded records and per group (F1 also with its std)."""
    def stats(keep: np.ndarray) -> dict:
        out = {"count": int(keep.sum())}
        for key, values in rows.items():
            part = values[keep]
            out[key] = float(np.nanmean(part)) if np.isfinite(part).any() else float("nan")
        f1 = rows["f1"][keep]
        out["f1_std"] = float(np.nanstd(f1)) if np.isfinite(f1).any() else float("nan")
        return out

    occluded = groups != "unoccluded"
    summary = {"all": stats(np.ones(len(groups), bool)), "occluded": stats(occluded), "unoccluded": stats(~occluded)}
    summary["groups"] = {g: stats(groups == g) for g in dict.fromkeys(groups)}
    return summary


def run_rows(run: Path, device: str = "cpu") -> list[tuple[str, FocusMethod, bool]]:
    """(label, method, with the M_pre study) of a FOCUS run: its final weights and, if it has them, the
    Pretrained ones (R and S before EM) with the xi study."""
    from ..methods.focus.method import FocusPretrainedMethod

    from ..methods.focus.method import MISFIT_NETWORK, FocusMisfitMethod

    final = FocusMethod.from_run(run, device=device)
    label = LABELS[final.model.config.variant]
    rows = []
    if final.model.config.segments and (Path(run) / "focus" / "pretrained.pt").is_file():
        rows.append((f"Pretrained ({label})", FocusPretrainedMethod.from_run(run, device=device), True))
    rows.append((label, final, False))
    if (Path(run) / MISFIT_NETWORK / "last.pt").is_file():
        rows.append((f"{label}-MP", FocusMisfitMethod.from_run(run, device=device), False))
    return rows


def paired_test(a: np.ndarray, b: np.ndarray, names=("without", "with")) -> dict:
    """Means of the per-record values ``a`` and ``b`` (where both are finite) and scipy's paired ``ttest_rel``."""
    from scipy.stats import ttest_rel

    keep = np.isfinite(a) & np.isfinite(b)
    result = ttest_rel(a[keep], b[keep]) if keep.sum() > 1 else None
    mean = (lambda v: float(v[keep].mean()) if keep.any() else float("nan"))
    return {names[0]: mean(a), names[1]: mean(b), "count": int(keep.sum()),
            "t": float(result.statistic) if result else float("nan"),
            "p": float(result.pvalue) if result else float("nan")}


def misfit_tests(rows: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
    """For every ``X`` with an ``X-MP`` row: the mean identity and expression errors without and with the
    misfit prior and a paired t-test of the per-record errors."""
    return {label: {key: paired_test(rows[label][key], rows[f"{label}-MP"][key]) for key in ("identity", "expression_vis")}
            for label in rows if f"{label}-MP" in rows}


def clean_occluded_tests(rows: dict[str, dict[str, np.ndarray]], groups: np.ndarray) -> dict[str, dict]:
    """Per method with paired clean pictures: the identity error on the occluded records' clean and
    occluded pictures and a paired t-test (A.11.6.4); {} for folders without ``image_clean``."""
    occluded = groups != "unoccluded"
    return {label: paired_test(values["identity_clean"][occluded], values["identity"][occluded], ("clean", "occluded"))
            for label, values in rows.items() if "identity_clean" in values}


__all__ = ["LABELS", "XI_STUDY", "clean_occluded_tests", "evaluate_method", "load_pictures_folder", "misfit_tests",
           "paired_test", "run_rows", "summarise"]
