"""Evaluation on a CO-545-style protocol folder (``ofer synth protocol``): per-image metrics of any method.

Per image the method's hypotheses (:class:`ofer.methods.base.Hypotheses`) are compared with the
exact ground truth (no alignment: both live in the face model's frame, since the head pose is part
of the camera). Vertex sets: ``front`` (face region, visible in the picture) and ``unoccluded``
(front and not under the occluder); "visible" = unoccluded, "occluded" = front minus unoccluded.

Methods come from :mod:`ofer.methods.registry` and are called with the embeddings stored in the
protocol folder (computed by the same front end when the data were generated) and the protocol
image indices as keys, so an image's result does not depend on chunking or ``--limit``. The
folder's face model and encoders are checked against each method's (:func:`check_method`).

A metric undefined for an image is NaN there and left out of the means (:func:`summarise` counts
the images that entered each mean): no occluded vertex (ASD-O, ODE-O, spread occ), a single
hypothesis (minASD-V, maxASD-V, ASD-O, spreads), or no vertex left for STD-S.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.shards import Manifest, ShardDataset, code_fields, unpack_bits
from ..errors import InputError, OferError
from ..facemodels import FaceModel
from ..io.atomic import save_npz, write_text
from ..methods.base import Hypotheses, Method, ReconstructionSettings
from ..runs import encoder_mismatch
from . import metrics as M
from .groundtruth import ground_truth, neutral_meshes
from .ranking import medoid_index

__all__ = [
    "CACHE_VERSION",
    "CHUNK",
    "SUMMARY_KEYS",
    "TAU_MM",
    "Protocol",
    "check_method",
    "evaluate_method",
    "front_meshes",
    "identity_metrics",
    "image_metrics",
    "load_protocol",
    "medoid_index",
    "ranks",
    "summarise",
]

TAU_MM = 10.0  # ASD-O normaliser: 10 mm counts as total failure / full diversity
CHUNK = 16
CACHE_VERSION = 3  # bump when image_metrics gains or changes a field (old caches are recomputed)
FIELDS = ("shape", "expression", "arcface", "appearance", "front", "unoccluded", "identity", "category")
IMAGE_KEYS = ("se_vis", "cse_vis", "se_front", "cse_front", "min_asd_v", "max_asd_v", "asd_o", "ode", "ode_o",
              "ode_v", "std_vis", "std_occ")
SUMMARY_KEYS = (*IMAGE_KEYS, "identity_ranked", "identity_oracle", "identity_average", "identity_medoid")


@dataclass
class Protocol:
    """A loaded protocol folder: its manifest and the columns (N, ...) of :data:`FIELDS` (and ``jaw``)."""

    folder: Path
    manifest: Manifest
    data: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        return len(self.data["shape"])

    def count(self, limit: int | None = None) -> int:
        """Images evaluated with ``--limit`` (``None``: all)."""
        return self.size if limit is None else min(int(limit), self.size)

    def masks(self, index: np.ndarray, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
        """Boolean (B, V) ``front`` and ``unoccluded`` vertex masks of the rows ``index``."""
        return (unpack_bits(self.data["front"][index], num_vertices),
                unpack_bits(self.data["unoccluded"][index], num_vertices))


def load_protocol(folder: str | Path, images: bool = False) -> Protocol:
    """A protocol folder's columns (:data:`FIELDS`, the code; the pictures too if ``images``)."""
    dataset = ShardDataset(folder)
    if dataset.manifest.kind != "protocol":
        raise InputError(f"{folder}: not a protocol folder (kind {dataset.manifest.kind!r}); use ofer synth protocol")
    fields = list(dict.fromkeys([*FIELDS, *code_fields(dataset.manifest.face_model.get("jaw_dim", 0)),
                                 *(["image"] if images else [])]))
    return Protocol(Path(folder), dataset.manifest, dataset.arrays(fields))


def check_method(protocol: Protocol, method: Method) -> None:
    """Refuse a method whose face model or encoders (for the roles it uses) differ from the protocol's."""
    where = protocol.folder
    protocol.manifest.check_face_model(method.face_model.info().to_dict(), where)
    mismatch = encoder_mismatch(method.encoders or {}, protocol.manifest.encoders or {})
    if mismatch:
        role, wanted, have = mismatch
        raise InputError(f"{where}: embedded with {role} encoder {have}, but method {method.name!r} uses {wanted}")


def front_meshes(model: FaceModel, shapes: np.ndarray) -> np.ndarray:
    """(B, N, S) shapes -> (B, N, F, 3) face-region vertices of their neutral meshes, mm."""
    return neutral_meshes(model, shapes)[0][:, :, model.front_mask.cpu().numpy()]


def _image_row(x: np.ndarray, gt: np.ndarray, front: np.ndarray, vis: np.ndarray,
               gaussian: M.VertexGaussian) -> dict[str, float]:
    """The per-image metrics of hypotheses (M, V, 3) against gt (V, 3); NaN where undefined."""
    occ = front & ~vis
    return {
        "se_vis": M.sample_error(x, gt, vis), "cse_vis": M.closest_sample_error(x, gt, vis),
        "se_front": M.sample_error(x, gt, front), "cse_front": M.closest_sample_error(x, gt, front),
        "min_asd_v": M.min_asd_v(x, vis), "max_asd_v": M.max_asd_v(x, vis),
        "asd_o": M.asd_o(x, gt, vis, TAU_MM, region=front),
        "ode": M.ode(x, gaussian, front), "ode_o": M.ode(x, gaussian, occ), "ode_v": M.ode(x, gaussian, vis),
        "std_vis": M.std_s(x, gaussian, vis), "std_occ": M.std_s(x, gaussian, occ),
    }


def identity_metrics(h: Hypotheses, neutral_gt: np.ndarray, model: FaceModel, align: bool = False
                     ) -> dict[str, np.ndarray]:
    """Identity errors of B images' N identity samples: RMS over the face-region vertices of the neutral meshes.

    ``neutral_gt`` (B, V, 3) mm. ``align``: each sample is first similarity-aligned (Umeyama, on the
    same face-region vertices) onto the reference, for references whose scale and placement are
    not exact (e.g. pseudo-labels fitted to photos); the protocol's exact ground truth is compared
    as it is. Returns ``identity_ranked`` / ``_oracle`` (best sample) / ``_average`` / ``_medoid``
    (B,), ``identity_errors`` (B, N) and ``scores`` (B, N).
    """
    meshes = front_meshes(model, h.shapes)
    face = model.front_mask.cpu().numpy()
    if align:
        ident = np.array([[M.aligned_rms(sample, reference) for sample in samples]
                          for samples, reference in zip(meshes, neutral_gt[:, face])]).reshape(meshes.shape[:2])
    else:
        ident = np.sqrt(((meshes - neutral_gt[:, None, face]) ** 2).sum(-1).mean(-1))  # (B, N)
    at = np.arange(len(neutral_gt))
    return dict(identity_ranked=ident[at, h.chosen], identity_oracle=ident.min(1), identity_average=ident.mean(1),
                identity_medoid=ident[at, medoid_index(meshes)], identity_errors=ident,
                scores=np.asarray(h.scores, np.float64))


def image_metrics(h: Hypotheses, gt: np.ndarray, neutral_gt: np.ndarray, front: np.ndarray, unocc: np.ndarray,
                  gaussian: M.VertexGaussian, model: FaceModel) -> dict[str, np.ndarray]:
    """Per-image metrics (B,) of one chunk, plus what the report needs (identity errors, scores, ...).

    ``gt``/``neutral_gt`` (B, V, 3) mm; ``front``/``unocc`` (B, V) bool; ``gaussian``: the reference.
    """
    rows = [_image_row(h.meshes[b], gt[b], front[b], unocc[b] & front[b], gaussian) for b in range(len(gt))]
    out = {k: np.array([r[k] for r in rows], np.float64) for k in IMAGE_KEYS}
    out.update(identity_metrics(h, neutral_gt, model))
    at = np.arange(len(gt))
    ranked_neutral = neutral_meshes(model, h.shapes[at, h.chosen])[0]
    out["identity_vertex_error"] = np.linalg.norm(ranked_neutral - neutral_gt, axis=-1).astype(np.float32)
    out["first_hypothesis"] = h.meshes[:, 0].astype(np.float16)
    return out


def _check_hypotheses(h: Hypotheses, count: int, num_vertices: int, method: Method) -> None:
    """A method's output must cover the chunk: one row per image, meshes (B, M, V, 3)."""
    shapes_ok = h.shapes.ndim == 3 and h.shapes.shape[0] == count and h.scores.shape == h.shapes.shape[:2]
    meshes_ok = h.meshes.ndim == 4 and h.meshes.shape[0] == count and h.meshes.shape[2:] == (num_vertices, 3)
    if not (shapes_ok and meshes_ok and np.shape(h.chosen) == (count,)):
        raise OferError(f"method {method.name!r} returned hypotheses of shapes {h.shapes.shape}, {h.meshes.shape} "
                        f"for {count} images (expected (B, N, S) and (B, M, {num_vertices}, 3))")


def _open_cache(folder: Path, signature: dict) -> None:
    """Empty ``folder`` unless it was made with ``signature``; then stamp it."""
    stamp = folder / "signature.json"
    wanted = json.dumps({**signature, "cache_version": CACHE_VERSION}, sort_keys=True)
    if folder.is_dir() and (not stamp.is_file() or stamp.read_text() != wanted):
        shutil.rmtree(folder)
    write_text(stamp, wanted)


def chunk_path(cache: Path, index: np.ndarray) -> Path:
    """The cache file of the images ``index`` (consecutive): it names their range."""
    return cache / f"chunk_{index[0]:05d}_{index[-1] + 1:05d}.npz"


def read_chunk(path: Path, rows: int) -> dict[str, np.ndarray] | None:
    """A cached chunk's per-image arrays, or None when it is missing, unreadable or not ``rows`` long
    (a damaged or inconsistent cache file is recomputed, never fatal)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
    except Exception:
        return None
    if not arrays or any(a.ndim < 1 or len(a) != rows for a in arrays.values()):
        return None
    return arrays


def evaluate_method(method: Method, protocol: Protocol, settings: ReconstructionSettings,
                    gaussian: M.VertexGaussian, cache: Path, limit: int | None = None,
                    signature: dict | None = None, model: FaceModel | None = None,
                    progress: bool = True) -> dict[str, np.ndarray]:
    """Evaluate ``method`` on the first ``limit`` protocol images, in chunks cached under ``cache`` (resumable).

    ``signature`` (everything that made the numbers: data, method, run, settings, reference) is
    stored beside the chunks; a cache made otherwise is discarded. Chunk files name their image
    range, so a larger ``--limit`` reuses the finished ones. ``model``: the face model on the CPU
    for the metrics (default: the method's). Returns per-image arrays (count, ...).
    """
    model = model or method.face_model
    count = protocol.count(limit)
    if count < 1:
        raise InputError(f"{protocol.folder}: the protocol holds no image")
    _open_cache(cache, signature or {})
    parts = []
    for start in tqdm(range(0, count, CHUNK), desc=f"eval {method.label}", disable=not progress, file=sys.stderr):
        index = np.arange(start, min(start + CHUNK, count))
        path = chunk_path(cache, index)
        stored = read_chunk(path, len(index))
        if stored is not None:
            parts.append(stored)
            continue
        data, keys = protocol.data, [int(i) for i in index]
        if method.needs_images:
            if "image" not in data:
                raise InputError(f"method {method.name!r} needs the protocol's pictures: load it with images=True")
            h = method.picture_hypotheses(data["image"][index], settings, keys)
        else:
            h = method.hypotheses(data["arcface"][index], data["appearance"][index], settings, keys)
        _check_hypotheses(h, len(index), model.num_vertices, method)
        gt, neutral = ground_truth(model, data, index)
        front, unocc = protocol.masks(index, model.num_vertices)
        result = image_metrics(h, gt, neutral, front, unocc, gaussian, model)
        save_npz(path, **result)
        parts.append(result)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def summarise(per_image: dict[str, np.ndarray]) -> dict:
    """Means over the images where each metric is defined; ``counts`` = how many entered each mean."""
    out: dict = {"images": len(per_image["se_vis"]), "counts": {}}
    for key in SUMMARY_KEYS:
        values = np.asarray(per_image[key], np.float64)
        finite = np.isfinite(values)
        out[key] = float(values[finite].mean()) if finite.any() else float("nan")
        out["counts"][key] = int(finite.sum())
    return out


def ranks(per_image: dict[str, np.ndarray]) -> bool:
    """Whether the method ranks its identity samples: more than one, with scores that differ somewhere."""
    scores = np.asarray(per_image["scores"])
    return scores.ndim == 2 and scores.shape[1] > 1 and bool((np.ptp(scores, axis=1) > 0).any())
