"""``ofer eval photos``: the real-photo report, no 3D ground truth needed (our protocol).

Per photo (its main face: the detector's face closest to the image centre):

1. MediaPipe's landmarks on the clean photo (478 points, their iBUG-68 subset and the blendshape
   scores) place the occluders of :mod:`ofer.evaluation.photo_occluders` (each with its pixel mask);
2. every method reconstructs the clean photo with seed S and S + 1 and each occluded copy with
   seed S, all under the photo's own name as random key: the clean photo and its copies share
   their random numbers, so what changes between them comes from the occluder;
3. the hypotheses of each copy, with the ranked identity, are posed by a pose-only landmark fit
   (:func:`ofer.fitting.fit_landmarks`) to the copy's *visible* landmarks: MediaPipe on the copy,
   the points under the occluder dropped (if MediaPipe finds no face on the copy, the clean
   photo's landmarks with the occluded points dropped; counted as a fallback);
4. the metrics of :mod:`ofer.evaluation.photo_metrics` are computed per photo (:func:`photo_row`)
   and averaged over the photos where they are defined (:func:`summarise`).

A method that finds no face on a copy (or another face: box IoU below :data:`MATCH_IOU` with the
clean photo's detection) leaves that copy's metrics undefined for the photo.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.occluders import Occlusion
from ..errors import InputError
from ..facemodels import FaceModel
from ..fitting import FitResult, LandmarkObservations, observe
from ..frontend import BLENDSHAPE_NAMES, FaceLandmarks, ibug68_from_mediapipe, load_image
from ..frontend.detect import default_detector, main_face
from ..methods.base import Method, Reconstruction, ReconstructionSettings
from ..methods.image_frame import fit_poses, placeable
from ..methods.outputs import result_names
from . import photo_metrics as P
from .photo_occluders import paste_occluder

__all__ = ["MATCH_IOU", "REGION_RADIUS_MM", "MethodPhoto", "Photo", "PhotoEvaluation", "evaluate_photos",
           "face_regions", "load_photo", "photo_row", "read_manifest", "summarise"]

REGION_RADIUS_MM = 10.0  # the mouth / eye region: vertices this close to the region's iBUG-68 points
MATCH_IOU = 0.3  # a method's face on a copy is the photo's face if their boxes overlap this much
MOUTH_OCCLUDERS = ("mouth", "hand")  # the occluders of the smile-kept metric
UNKNOWN_PERSONS = ("", "multiple", "unknown")  # manifest persons left out of the same/different pairs


@dataclass
class Photo:
    """One photo prepared for every method.

    Attributes:
        path, name (random key and figure label), person (manifest label or ``None``).
        image: (H, W, 3) uint8 clean photo; box: (4,) the main face's detection box.
        landmarks: MediaPipe on the clean photo; landmarks68: (68, 2) its iBUG-68 points (pixels).
        occlusions: occluder name -> the occluded copy and its mask.
        visible: copy (``clean`` or an occluder) -> the landmarks the pose fit sees.
        hidden: occluder -> (68,) bool, the clean iBUG-68 points under it (or outside the frame).
        fallback: occluder -> whether MediaPipe missed the face on the copy.
    """

    path: Path
    name: str
    person: str | None
    image: np.ndarray = field(repr=False)
    box: np.ndarray
    landmarks: FaceLandmarks = field(repr=False)
    landmarks68: np.ndarray = field(repr=False)
    occlusions: dict[str, Occlusion] = field(repr=False)
    visible: dict[str, LandmarkObservations] = field(repr=False)
    hidden: dict[str, np.ndarray] = field(repr=False)
    fallback: dict[str, bool]

    @property
    def copies(self) -> tuple[str, ...]:
        return ("clean", *self.occlusions)

    def picture(self, copy: str) -> np.ndarray:
        """(H, W, 3) uint8 pixels of ``copy``."""
        return self.image if copy == "clean" else self.occlusions[copy].image

    def mask(self, copy: str) -> np.ndarray:
        """(H, W) bool occluder mask of ``copy`` (all False for ``clean``)."""
        return np.zeros(self.image.shape[:2], bool) if copy == "clean" else self.occlusions[copy].mask


def read_manifest(path: Path) -> dict[str, str]:
    """``file`` -> ``person`` of a CSV with those columns (other columns ignored); one-line InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--manifest {path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not {"file", "person"} <= set(reader.fieldnames or ()):
                raise InputError(f"--manifest {path}: needs the columns 'file' and 'person'")
            return {Path(row["file"]).name: (row["person"] or "").strip() for row in reader if row.get("file")}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"--manifest {path}: unreadable ({exc})") from None


def _main_box(image: np.ndarray) -> np.ndarray | None:
    detections = default_detector().detect_batch([image])[0]
    index = main_face(detections, image.shape)
    return None if index is None else np.asarray(detections[index].box, np.float64)


def _visible(image: np.ndarray, mask: np.ndarray, box: np.ndarray, clean: FaceLandmarks
             ) -> tuple[LandmarkObservations, bool]:
    """MediaPipe's landmarks of a copy with the points on ``mask`` dropped, and whether it fell back to ``clean``."""
    face = observe(image, box)
    observed = LandmarkObservations.from_mediapipe([face or clean], image.shape[:2])
    return observed.drop_masked(mask), face is None


def load_photo(path: Path, name: str, occluders: Sequence[str], person: str | None = None) -> Photo:
    """Read a photo, find its main face, paste the occluders and observe every copy (InputError if no face)."""
    image = load_image(path)
    box = _main_box(image)
    clean = None if box is None else observe(image, box)
    if clean is None:
        raise InputError(f"{path}: no face found")
    points68 = ibug68_from_mediapipe(clean.points)[:, :2]
    occlusions = {name_: paste_occluder(image, points68, name_) for name_ in occluders}
    visible = {"clean": LandmarkObservations.from_mediapipe([clean], image.shape[:2])}
    fallback, hidden = {}, {}
    reference = LandmarkObservations.from_points(points68[None], image.shape[:2])
    for name_, occ in occlusions.items():
        visible[name_], fallback[name_] = _visible(occ.image, occ.mask, box, clean)
        hidden[name_] = reference.drop_masked(occ.mask).weights[0].numpy() == 0
    return Photo(Path(path), name, person, image, box, clean, points68, occlusions, visible, hidden, fallback)


# ------------------------------------------------------------------------------------ one method, one photo


@dataclass
class MethodPhoto:
    """One method on one photo: per copy (and ``seed``, the clean photo with seed S + 1) its
    reconstruction and the pose fit of its hypotheses (``None`` where it found no face)."""

    recs: dict[str, Reconstruction | None]
    fits: dict[str, FitResult | None]


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    union = area(a) + area(b) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _reconstruct(method: Method, image: np.ndarray, name: str, settings: ReconstructionSettings,
                 box: np.ndarray) -> Reconstruction | None:
    """The method's result for one picture, ``None`` if it found no face or another face than ``box``."""
    result = method.reconstruct([image], settings, [name], place=False)[0]  # posed below, on visible points
    if isinstance(result, Exception):
        return None
    found = np.asarray(result.box, np.float64)
    return result if not found.any() or _box_iou(found, box) >= MATCH_IOU else None


def pose_fit(model: FaceModel, rec: Reconstruction, observed: LandmarkObservations) -> FitResult | None:
    """Head pose and camera of each hypothesis of ``rec`` (ranked identity, its M codes) on ``observed``."""
    if not placeable(model):
        return None
    return fit_poses(model, rec.shape, torch.as_tensor(rec.expressions, dtype=torch.float32), observed)


def run_method(method: Method, photo: Photo, settings: ReconstructionSettings, model: FaceModel) -> MethodPhoto:
    """Reconstruct every copy of ``photo`` (and the clean one with seed S + 1) and pose the hypotheses.

    ``model``: the method's face model on the CPU (for the fits).
    """
    recs = {copy: _reconstruct(method, photo.picture(copy), photo.name, settings, photo.box) for copy in photo.copies}
    recs["seed"] = _reconstruct(method, photo.image, photo.name, settings.replace(seed=settings.seed + 1), photo.box)
    fits = {copy: pose_fit(model, recs[copy], photo.visible[copy]) if recs[copy] is not None else None
            for copy in photo.copies}
    return MethodPhoto(recs, fits)


# ------------------------------------------------------------------------------------------- metrics


def face_regions(model: FaceModel) -> dict[str, np.ndarray]:
    """(V,) bool vertex sets of ``model``: ``front`` (its face region) and, with a landmark embedding,
    the :data:`~ofer.evaluation.photo_metrics.REGION_LANDMARKS` regions (face-region vertices within
    :data:`REGION_RADIUS_MM` of the region's iBUG-68 points on the neutral mesh)."""
    front = model.front_mask.cpu().numpy().astype(bool)
    out = {"front": front}
    with torch.no_grad():
        neutral = model()
    if neutral.landmarks68 is None:
        return out
    vertices, points = neutral.vertices[0].cpu().numpy() * 1000, neutral.landmarks68[0].cpu().numpy() * 1000
    for region, index in P.REGION_LANDMARKS.items():
        out[region] = P.region_vertices(vertices, points, index, REGION_RADIUS_MM, within=front)
    return out


def _identity_mm(rec: Reconstruction | None) -> np.ndarray | None:
    return None if rec is None else np.asarray(rec.identity_vertices, np.float64) * 1000


def _expression_groups(model: FaceModel, rec: Reconstruction) -> dict[str, np.ndarray]:
    """{group: (M,) values} of the hypotheses' expression coefficients (ARKit-named models only)."""
    expression, _ = model.split_code(torch.as_tensor(rec.expressions, dtype=torch.float32))
    return P.group_values(expression.numpy(), model.expression_names)


def _identity_cells(result: MethodPhoto, photo: Photo, front: np.ndarray) -> dict[str, float]:
    clean = _identity_mm(result.recs["clean"])
    out = {}
    for copy in (*photo.occlusions, "seed"):
        other = _identity_mm(result.recs[copy])
        out[f"identity_change/{copy}"] = P.NAN if clean is None or other is None else \
            P.identity_change(other, clean, front)
    return out


def _expression_cells(result: MethodPhoto, photo: Photo, model: FaceModel) -> dict[str, float]:
    """Method (mean hypothesis) and MediaPipe group values on the clean photo, and the smile kept."""
    mediapipe = P.group_values(photo.landmarks.blendshapes, BLENDSHAPE_NAMES)
    out = {f"mediapipe/{g}": float(v) for g, v in mediapipe.items()}
    if not P.has_groups(model.expression_names):
        return out
    if result.recs["clean"] is not None:
        groups = _expression_groups(model, result.recs["clean"])
        out.update({f"expression/{g}": float(v.mean()) for g, v in groups.items()})
    if out["mediapipe/smile"] > P.SMILING:
        for occ in (o for o in MOUTH_OCCLUDERS if o in photo.occlusions):
            rec = result.recs[occ]
            smile = [] if rec is None else _expression_groups(model, rec)["smile"]
            out[f"smile_kept/{occ}"] = P.smile_fraction(smile)
    return out


def _fidelity_cells(result: MethodPhoto, photo: Photo) -> dict[str, float]:
    out = {}
    for occ in photo.occlusions:
        fit = result.fits[occ]
        if fit is None or not torch.isfinite(fit.landmarks68).all():
            continue
        scores = P.landmark_fidelity(fit.landmarks68.numpy(), photo.landmarks68, photo.hidden[occ])
        out.update({f"fidelity/{occ}/{key}": value for key, value in scores.items()})
    return out


def _spread_cells(result: MethodPhoto, photo: Photo, regions: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for copy in photo.copies:
        rec = result.recs[copy]
        for region in P.REGION_LANDMARKS:
            if rec is not None and region in regions:
                out[f"spread/{copy}/{region}"] = P.region_spread(rec.expression_vertices * 1000.0, regions[region])
    return out


def photo_row(result: MethodPhoto, photo: Photo, model: FaceModel, regions: dict[str, np.ndarray]) -> dict[str, float]:
    """The per-photo numbers of one method (``key -> float``, NaN or absent where undefined)."""
    return {**_identity_cells(result, photo, regions["front"]), **_expression_cells(result, photo, model),
            **_fidelity_cells(result, photo), **_spread_cells(result, photo, regions)}


def _means(rows: list[dict[str, float]]) -> dict[str, dict]:
    """``key -> {"mean", "n"}`` over the rows where the key is defined."""
    keys = dict.fromkeys(k for row in rows for k in row if not k.startswith(("mediapipe/", "expression/")))
    return {k: dict(zip(("mean", "n"), P.defined_mean(row.get(k, P.NAN) for row in rows))) for k in keys}


def _agreement(rows: list[dict[str, float]]) -> dict[str, dict]:
    out = {}
    for group in P.EXPRESSION_GROUPS:
        pairs = [(r[f"expression/{group}"], r[f"mediapipe/{group}"]) for r in rows if f"expression/{group}" in r]
        if pairs:
            out[group] = P.agreement(*np.asarray(pairs, np.float64).T)
    return out


def summarise(rows: list[dict[str, float]], identities: list[np.ndarray | None], persons: list[str | None],
              front: np.ndarray) -> dict:
    """One method's report numbers from its per-photo rows and clean ranked identities (mm, ``None``: no face).

    Returns ``faces``, ``smiling`` (photos MediaPipe scores as smiling), ``smile_share`` (on those, the
    method's mean smile / MediaPipe's; NaN without), ``means`` (:func:`_means`),
    ``expression`` (group -> :func:`~ofer.evaluation.photo_metrics.agreement`, empty for face models
    without ARKit names) and ``pairs`` (:func:`~ofer.evaluation.photo_metrics.pair_means`).
    """
    kept = [i for i, mesh in enumerate(identities) if mesh is not None]
    named = [None if (persons[i] or "").lower() in UNKNOWN_PERSONS else persons[i] for i in kept]
    distances = P.identity_distances(np.stack([identities[i] for i in kept]), front) if kept else np.zeros((0, 0))
    return {"faces": len(rows), "smiling": sum(r["mediapipe/smile"] > P.SMILING for r in rows),
            "means": _means(rows), "expression": _agreement(rows), "pairs": P.pair_means(distances, named),
            "smile_share": _smile_share(rows)}


def _smile_share(rows: list[dict[str, float]]) -> float:
    """Over the clean photos MediaPipe scores as smiling: the mean hypothesis's mean smile / MediaPipe's."""
    pairs = [(r["expression/smile"], r["mediapipe/smile"]) for r in rows
             if r["mediapipe/smile"] > P.SMILING and "expression/smile" in r]
    return float(np.mean([a for a, _ in pairs]) / np.mean([b for _, b in pairs])) if pairs else P.NAN


# --------------------------------------------------------------------------------------------- driver


@dataclass
class PhotoEvaluation:
    """Everything the report needs: per method label its per-photo rows and :func:`summarise` output,
    and the photos' records (name, path, person, fallbacks)."""

    photos: list[dict]
    rows: dict[str, list[dict]]
    summaries: dict[str, dict]


def evaluate_photos(paths: Sequence[Path], methods: Sequence[Method], settings: ReconstructionSettings,
                    occluders: Sequence[str], persons: dict[str, str] | None = None,
                    on_error: Callable[[str], None] = print, figure=None,
                    progress: bool = True) -> PhotoEvaluation:
    """Evaluate ``methods`` on the main face of each photo of ``paths`` (see the module docstring).

    A path that is no image or shows no face is reported through ``on_error`` (one line) and skipped;
    ``photos`` of the result is empty when no photo could be evaluated (then ``summaries`` is too).
    ``figure`` (a :class:`~ofer.evaluation.photo_figure.PhotoFigure`), if given, receives each
    photo's results (``figure.add``) as they come, so the photos need not stay in memory.
    """
    models = {m.label: m.cpu_face_model() for m in methods}
    regions = {label: face_regions(model) for label, model in models.items()}
    out = PhotoEvaluation([], {m.label: [] for m in methods}, {})
    identities: dict[str, list] = {m.label: [] for m in methods}
    for path, name in tqdm(list(zip(paths, result_names(paths))), desc="eval photos", disable=not progress,
                           file=sys.stderr):
        try:
            photo = load_photo(path, name, occluders, (persons or {}).get(Path(path).name))
        except InputError as exc:
            on_error(str(exc))
            continue
        out.photos.append({"name": name, "path": str(path), "person": photo.person, "fallback": photo.fallback})
        for method in methods:
            result = run_method(method, photo, settings, models[method.label])
            out.rows[method.label].append(photo_row(result, photo, models[method.label], regions[method.label]))
            identities[method.label].append(_identity_mm(result.recs["clean"]))
            if figure is not None:
                figure.add(photo, method.label, result, models[method.label])
    if not out.photos:
        return out
    person_list = [p["person"] for p in out.photos]
    out.summaries = {label: summarise(rows, identities[label], person_list, regions[label]["front"])
                     for label, rows in out.rows.items()}
    return out
