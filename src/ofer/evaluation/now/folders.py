"""NoW folder evaluation: the prediction and ground-truth layouts (see :mod:`ofer.evaluation.now`), units, reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from ...errors import InputError
from ...io.mesh import load_mesh
from ...io.numpy_files import numpy_error
from .error import crop_scan, now_error, now_statistics
from .surface import SurfaceQuery

__all__ = [
    "LANDMARK_EXTENSIONS",
    "MESH_EXTENSIONS",
    "NowItem",
    "NowPrediction",
    "NowReport",
    "evaluate_now",
    "find_ground_truth",
    "find_predictions",
    "load_landmarks",
    "to_millimetres",
]

MESH_EXTENSIONS = (".ply", ".obj")
LANDMARK_EXTENSIONS = (".npy", ".txt")


def to_millimetres(vertices: np.ndarray, units: str = "auto") -> float:
    """Factor that converts a mesh's numbers to mm: 1000 for ``m``, 1 for ``mm``; ``auto`` guesses from the size."""
    if units == "m":
        return 1000.0
    if units == "mm":
        return 1.0
    if units != "auto":
        raise InputError(f"unknown units {units!r}: use auto, m or mm")
    extent = float(np.ptp(np.asarray(vertices), axis=0).max()) if len(vertices) else 0.0
    return 1000.0 if extent < 10.0 else 1.0


def load_landmarks(path: str | Path) -> np.ndarray:
    """Read 7 x 3 landmarks from ``.npy``, ``.txt`` (whitespace or comma separated) or MeshLab ``.pp``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: landmark file not found")
    try:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".pp":
            root = ET.parse(path).getroot()
            arr = [[float(p.get(a)) for a in "xyz"] for p in root.iter("point")]
        else:
            text = path.read_text().replace(",", " ")
            arr = np.loadtxt(text.splitlines(), dtype=np.float64)
        arr = np.asarray(arr, dtype=np.float64)
    except (OSError, ValueError, TypeError, EOFError, ET.ParseError) as exc:  # what numpy / xml raise for bad files
        raise InputError(f"{path}: not a readable landmark file ({numpy_error(exc)})") from None
    if arr.size != 21:
        raise InputError(f"{path}: expected 7 x 3 landmarks, got shape {arr.shape}")
    arr = arr.reshape(7, 3)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: landmarks contain NaN or infinite values")
    return arr


@dataclass
class NowPrediction:
    subject: str
    challenge: str
    image: str
    mesh_path: Path
    landmark_path: Path


def find_predictions(pred_dir: str | Path) -> list[NowPrediction]:
    """All predictions under ``PRED/<subject>/<challenge>/<image>.ply|.obj`` with their landmark files."""
    root = Path(pred_dir)
    if not root.is_dir():
        raise InputError(f"{root}: prediction folder not found")
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if path.suffix.lower() not in MESH_EXTENSIONS or not path.is_file() or len(rel) not in (2, 3):
            continue
        if any(part.startswith(".") for part in rel):
            continue
        landmark = next((path.with_suffix(e) for e in LANDMARK_EXTENSIONS if path.with_suffix(e).is_file()), None)
        if landmark is None:
            raise InputError(f"{path}: landmark file not found (expected {path.stem}.npy or {path.stem}.txt beside it)")
        challenge = rel[1] if len(rel) == 3 else "-"
        found.append(NowPrediction(rel[0], challenge, path.stem, path, landmark))
    if not found:
        raise InputError(f"{root}: no predicted meshes (<subject>/<challenge>/<image>.ply|.obj) found")
    return found


def find_ground_truth(gt_dir: str | Path, subject: str) -> tuple[Path, Path]:
    """The scan and landmark file of ``subject`` in the ground-truth folder (layouts: :mod:`ofer.evaluation.now`)."""
    root = Path(gt_dir)
    if not root.is_dir():
        raise InputError(f"{root}: ground-truth folder not found")
    scan = None
    for folder in (root / "scans", root):
        scan = next((folder / f"{subject}{e}" for e in MESH_EXTENSIONS if (folder / f"{subject}{e}").is_file()), None)
        if scan:
            break
    if scan is None and (root / "scans" / subject).is_dir():
        scans = sorted(p for p in (root / "scans" / subject).iterdir() if p.suffix.lower() in MESH_EXTENSIONS)
        scan = scans[0] if scans else None
    if scan is None:
        raise InputError(f"{root}: no ground-truth scan for subject {subject!r} (expected scans/{subject}.obj|.ply)")
    candidates = [root / "scans_lmks" / f"{subject}{e}" for e in (*LANDMARK_EXTENSIONS, ".pp")]
    candidates += [scan.with_name(f"{scan.stem}_lmks{e}") for e in LANDMARK_EXTENSIONS]
    if scan.parent.name == subject:
        candidates += [scan.parent / f"{subject}_lmks{e}" for e in LANDMARK_EXTENSIONS]
    folders = (
        (root / "scans_lmks" / subject, (*LANDMARK_EXTENSIONS, ".pp")),
        (root / "scans_lmks_onlypp" / subject, (".pp",)),
    )
    for folder, exts in folders:
        if folder.is_dir():
            candidates += sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)
    landmark = next((p for p in candidates if p.is_file()), None)
    if landmark is None:
        raise InputError(
            f"{scan}: landmark file not found (expected scans_lmks/{subject}.npy|.txt|.pp or {scan.stem}_lmks.npy|.txt)"
        )
    return scan, landmark


@dataclass
class NowItem:
    """Result of one prediction in a folder evaluation (distances in mm)."""

    subject: str
    challenge: str
    image: str
    mesh_path: Path
    distances: np.ndarray
    pred_vertex_errors: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    mm_per_unit: float
    landmark_rmse: float

    def statistics(self) -> dict[str, float]:
        return now_statistics([self.distances])

    def to_dict(self) -> dict:
        return {
            "subject": self.subject,
            "challenge": self.challenge,
            "image": self.image,
            "mesh": str(self.mesh_path),
            **self.statistics(),
            "scale": self.scale,
            "landmark_rmse": self.landmark_rmse,
        }


@dataclass
class NowReport:
    """All the results of a NoW folder evaluation; statistics pool the distances over predictions."""

    items: list[NowItem]
    metrical: bool
    ground_truth: dict[str, dict] = field(default_factory=dict)  # subject -> scan info

    def overall(self) -> dict[str, float]:
        return now_statistics([i.distances for i in self.items])

    def per_challenge(self) -> dict[str, dict[str, float]]:
        names = sorted({i.challenge for i in self.items})
        out = {}
        for name in names:
            chosen = [i for i in self.items if i.challenge == name]
            out[name] = {**now_statistics([i.distances for i in chosen]), "predictions": len(chosen)}
        return out

    def worst(self) -> NowItem:
        return max(self.items, key=lambda i: float(np.median(i.distances)))

    def to_dict(self) -> dict:
        return {
            "metric": "NoW scan-to-mesh distance (mm), "
            + ("metrical (rigid)" if self.metrical else "non-metrical (similarity)"),
            "metrical": self.metrical,
            "predictions": len(self.items),
            "overall": self.overall(),
            "per_challenge": self.per_challenge(),
            "items": [i.to_dict() for i in self.items],
        }


def evaluate_now(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    metrical: bool = False,
    pred_units: str = "auto",
    gt_units: str = "auto",
    crop_ratio: float = 1.4,
    progress: bool | None = False,
) -> NowReport:
    """Evaluate every prediction of a NoW-layout folder against its subject's scan (layout: :mod:`ofer.evaluation.now`).

    All inputs are located and their landmark files checked before any alignment runs, so layout
    problems are reported at once. ``progress``: show a tqdm bar on stderr (``None``: only on a terminal).
    """
    predictions = find_predictions(pred_dir)
    gt_files = {s: find_ground_truth(gt_dir, s) for s in sorted({p.subject for p in predictions})}
    scans = {subject: _load_scan(scan, lmk, gt_units, crop_ratio) for subject, (scan, lmk) in gt_files.items()}
    bar = tqdm(predictions, desc="NoW", unit="mesh", disable=(None if progress is None else not progress), leave=False)
    items = [_evaluate_prediction(pred, scans[pred.subject], pred_units, metrical, crop_ratio) for pred in bar]
    return NowReport(items=items, metrical=metrical, ground_truth={k: v.record for k, v in scans.items()})


@dataclass
class _Scan:
    """A ground-truth scan in mm, its landmarks, a prebuilt surface query and what the report records."""

    vertices: np.ndarray
    faces: np.ndarray
    landmarks: np.ndarray
    query: SurfaceQuery | cKDTree
    record: dict


def _load_scan(scan_path: Path, lmk_path: Path, units: str, crop_ratio: float) -> _Scan:
    v, f = load_mesh(scan_path)
    factor = to_millimetres(v, units)
    lmk = load_landmarks(lmk_path) * factor
    v = v * factor
    _, points, _, _, radius = crop_scan(v, f, lmk, crop_ratio)
    if len(points) == 0:
        raise InputError(f"{scan_path}: no scan vertex lies inside the face crop (check the landmarks {lmk_path})")
    record = {"scan": str(scan_path), "landmarks": str(lmk_path), "mm_per_unit": factor,
              "cropped_points": len(points), "crop_radius_mm": radius, "landmarks_mm": lmk.tolist()}
    return _Scan(v, f, lmk, SurfaceQuery(v, f) if len(f) else cKDTree(v), record)


def _evaluate_prediction(pred: NowPrediction, scan: _Scan, units: str, metrical: bool, crop_ratio: float) -> NowItem:
    v, f = load_mesh(pred.mesh_path)
    if len(f) == 0:
        raise InputError(f"{pred.mesh_path}: mesh has no triangles")
    factor = to_millimetres(v, units)
    lmk = load_landmarks(pred.landmark_path) * factor
    res = now_error(v * factor, f, lmk, scan.vertices, scan.landmarks, scan.faces, metrical=metrical,
                    crop_ratio=crop_ratio, gt_query=scan.query)
    return NowItem(subject=pred.subject, challenge=pred.challenge, image=pred.image, mesh_path=pred.mesh_path,
                   distances=res.distances.astype(np.float32),
                   pred_vertex_errors=res.pred_vertex_errors.astype(np.float32),
                   scale=res.scale, rotation=res.rotation, translation=res.translation, mm_per_unit=factor,
                   landmark_rmse=res.landmark_rmse)
