"""Landmark fitter on held-out synthetic renders (issue 12): shape, head pose and reprojection errors.

Usage::

    python benchmarks/bench_fit.py [--data /work/data/heldout] [--n 200] [--checkpoints /work/runs/default]
        [--cache /work/cache/bench_fit] [--json OUT] [--variants default rigid ...] [--conditions clean occluded]
        [--methods ofer regressor] [--batch 50]

For the first ``--n`` held-out samples it regenerates each scene with the data engine (the set stores
no clean picture) and checks that the regenerated occluded picture equals the stored one; then it runs
MediaPipe on the clean and on the occluded picture. Conditions:

- ``clean``: the fitter on MediaPipe's 478 points of the clean render;
- ``occluded``: MediaPipe on the occluded render, the points on the ground-truth occluder mask dropped
  (``obs.drop_masked``); an image where MediaPipe finds no face counts as a failure;
- ``oracle``: the ground-truth 478 points (and depth) projected through the true camera: the fitter's
  floor without any detector error (always fitted with ``calibrate=False``: the points are the
  model's own embedding).

Per fitter variant (``FitOptions`` changes, see :data:`VARIANTS`, or ``key=value,key=value``) and
condition it prints mean and median over the images of: the face-region (``front_mask``) RMS error
after similarity alignment (mm) of the fitted neutral identity vs the true neutral identity (``id``)
and of the fitted expressive mesh vs the true expressive mesh (``expr``); the head-pose error (degrees,
geodesic angle between the fitted rotation and ``FRONTAL_R @ head_rotation(yaw, pitch, roll)``); the 2D
error of the fitted 68 landmarks vs the true ones (px); the fitter's own residual to its observations
(px); and the fitting time per image. The same identity error is printed for the mean face (zero
coefficients), OFER-rank (its ranked identity) and the ArcFace regressor on the same pictures.

Everything slow is cached under ``--cache`` (regenerated scenes and MediaPipe results, method outputs,
fits keyed by their options, the fitter's source and the calibration file), so a re-run only fits what
changed.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OFER_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

CHUNK = 25  # scenes per cache file

# name -> FitOptions changes relative to the defaults (what each step of the fitter buys); the
# projection and depth steps are spelled out so that they do not move with the defaults.
VARIANTS = {
    "default": {},
    "rigid": {"full_steps": 0},  # mean face, pose and camera only
    "weak-2d": {"projection": "weak-perspective", "depth_weight": 0.0},
    "weak-depth": {"projection": "weak-perspective", "depth_weight": 0.5},
    "persp-2d": {"projection": "perspective", "depth_weight": 0.0},
    "persp-depth": {"projection": "perspective", "depth_weight": 0.5},
    "prior-0.02": {"shape_prior": 0.02},
    "prior-0.2": {"shape_prior": 0.2},
    "prior-2": {"shape_prior": 2.0},
    "uncalibrated": {"calibrate": False},
    "photometric": {"photometric_steps": 200},  # ofer.fitting.PHOTOMETRIC_STEPS, as --method fit
}
CONDITIONS = ("clean", "occluded", "oracle")
METHODS = ("ofer", "regressor")


# ----------------------------------------------------------------------------------------- helpers
def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def save(path: Path, **arrays) -> None:
    from ofer.io.atomic import save_npz

    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, compressed=True, **arrays)


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def aligned_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Similarity-aligned RMS distance on ``mask`` (the evaluation's helper)."""
    from ofer.evaluation.metrics import aligned_rms

    return aligned_rms(pred, gt, mask)


def stats(values) -> dict:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": float("nan"), "median": float("nan"), "count": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "count": int(len(v))}


def recipe_config(manifest):
    """The manifest's recipe, with the occluder mix in the order the data engine drew it.

    The manifest is written with sorted keys, which reorders ``occluder_mix``; the category draw
    depends on that order, so the stored order would regenerate other occluders. The recipe's
    default order (then any other name) is the order of the run that made the data.
    """
    from ofer.data.recipe import DEFAULT_MIX, SynthConfig

    config = dict(manifest.config)
    mix = config["occluder_mix"]
    config["occluder_mix"] = {k: mix[k] for k in [*DEFAULT_MIX, *mix] if k in mix}
    return SynthConfig.from_dict(config)


# ------------------------------------------------------------------------------------------ scenes
def scene_chunk(maker, manifest, start: int, count: int, stored_images: np.ndarray) -> dict:
    """Regenerate samples start..start+count-1, run MediaPipe on both pictures, project the true points."""
    from ofer.fitting import model_points, observe
    from ofer.fitting.observations import mediapipe_rotation
    from ofer.render.cameras import FRONTAL_R, head_rotation

    model = maker.model
    out = {k: [] for k in ("image_clean", "image", "occluder_mask", "same_image", "shape", "expression",
                           "head_pose", "camera", "landmarks2d", "mp_clean", "found_clean", "mp_occluded",
                           "found_occluded", "true478", "true_depth", "mp_seconds", "rotation_clean",
                           "rotation_occluded")}
    for index in range(start, start + count):
        rec = maker.make(index, manifest.seed)
        out["image_clean"].append(rec["image_clean"])
        out["image"].append(rec["image"])
        out["occluder_mask"].append(rec["occluder_mask"])
        out["same_image"].append(np.array_equal(rec["image"], stored_images[index - start]))
        for key in ("shape", "expression", "head_pose", "camera", "landmarks2d"):
            out[key].append(rec[key])
        t = time.perf_counter()
        for cond, image in (("clean", rec["image_clean"]), ("occluded", rec["image"])):
            face = observe(image)
            out[f"found_{cond}"].append(face is not None)
            out[f"mp_{cond}"].append(np.full((478, 3), np.nan, np.float32) if face is None
                                     else face.points.astype(np.float32))
            out[f"rotation_{cond}"].append(np.eye(3) if face is None else mediapipe_rotation(face.matrix))
        out["mp_seconds"].append((time.perf_counter() - t) / 2)
        # the true 478 points through the true camera (the renderer's frame: vertices - centre)
        with torch.no_grad():
            shape = torch.as_tensor(rec["shape"])[None]
            expression = torch.as_tensor(rec["expression"])[None]
            vertices = model(shape, expression).vertices - maker.centre
            points = model_points(model, vertices, "mediapipe478")[0].double()
        yaw, pitch, roll = (float(a) for a in rec["head_pose"])
        rotation = (FRONTAL_R @ head_rotation(yaw, pitch, roll))[0].double()
        focal, distance, cx, cy = (float(c) for c in rec["camera"])
        cam = points @ rotation.T + torch.tensor([0.0, 0.0, distance], dtype=torch.float64)
        uv = cam[:, :2] / cam[:, 2:] * focal + torch.tensor([cx, cy], dtype=torch.float64)
        out["true478"].append(uv.numpy().astype(np.float32))
        z = cam[:, 2] * focal / cam[:, 2].mean()
        out["true_depth"].append((z - z.mean()).numpy().astype(np.float32))
    return {k: np.stack(v) for k, v in out.items()}


def scenes(args, manifest, maker) -> dict:
    """The first ``n`` scenes (cached in chunks of :data:`CHUNK`)."""
    from ofer.data.shards import read_npz, shard_name

    key = digest("scenes-v2", manifest.dataset_checksum(), manifest.seed, recipe_config(manifest).to_dict())
    parts = []
    shard_cache: dict[int, np.ndarray] = {}

    def stored(start: int, count: int) -> np.ndarray:
        images = []
        for index in range(start, start + count):
            shard = index // manifest.shard_size
            if shard not in shard_cache:
                shard_cache.clear()
                shard_cache[shard] = read_npz(Path(args.data) / shard_name(shard))["image"]
            images.append(shard_cache[shard][index % manifest.shard_size])
        return np.stack(images)

    chunks = range(0, args.n, CHUNK)
    for start in tqdm(chunks, desc="scenes + MediaPipe", unit="chunk", file=sys.stderr):
        count = min(CHUNK, manifest.num_samples - start)
        path = Path(args.cache) / f"scenes_{key}_{start:05d}_{count}.npz"
        if not path.is_file():
            save(path, **scene_chunk(maker, manifest, start, count, stored(start, count)))
        parts.append(load(path))
    merged = {k: np.concatenate([p[k] for p in parts])[: args.n] for k in parts[0]}
    return merged


# ----------------------------------------------------------------------------------------- methods
def method_shapes(args, name: str, cond: str, images: np.ndarray, key: str) -> dict:
    """The chosen identity (S,) of ``name`` for every image (NaN where it found no face), cached."""
    from ofer import methods
    from ofer.methods.base import ReconstructionSettings

    path = Path(args.cache) / f"method_{name}_{cond}_{key}_{len(images)}.npz"
    if path.is_file():
        return load(path)
    run = None if name == "ofer" else args.checkpoints
    method = methods.get(name).from_run(run)
    # expressions=1: the identity draws come from their own stream ("idgen"), so they do not depend
    # on the number of expression hypotheses (checked: the same ranked identity as with 16).
    settings = ReconstructionSettings(seed=0, expressions=1)
    shapes = np.full((len(images), method.face_model.shape_dim), np.nan, np.float32)
    seconds = np.zeros(len(images))
    partial = path.with_suffix(".partial.npz")
    done = 0
    if partial.is_file():
        previous = load(partial)
        done = int(previous["done"])
        shapes[:done], seconds[:done] = previous["shape"][:done], previous["seconds"][:done]
    for index in tqdm(range(done, len(images)), desc=f"{name} ({cond})", file=sys.stderr, initial=done,
                      total=len(images)):
        t = time.perf_counter()
        rec = method.reconstruct([images[index]], settings, [f"heldout{index:05d}"])[0]
        seconds[index] = time.perf_counter() - t
        if not isinstance(rec, Exception):
            shapes[index] = rec.shape
        if (index + 1) % 10 == 0:
            save(partial, shape=shapes, seconds=seconds, done=np.int64(index + 1))
    save(path, shape=shapes, seconds=seconds)
    partial.unlink(missing_ok=True)
    return {"shape": shapes, "seconds": seconds}


# ----------------------------------------------------------------------------------------- fitting
def parse_variant(text: str) -> tuple[str, dict]:
    if text in VARIANTS:
        return text, VARIANTS[text]
    changes = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise SystemExit(f"bench_fit: unknown variant {text!r}: use one of {', '.join(VARIANTS)} or key=value,...")
        try:
            changes[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            changes[key.strip()] = value.strip()
    return text, changes


def fitter_source_key() -> str:
    import ofer.facemodels
    import ofer.fitting

    files = sorted(Path(ofer.fitting.__file__).parent.glob("*.py"))
    files += sorted(Path(ofer.facemodels.__file__).parent.glob("*.py"))
    return digest(*(f.read_bytes() for f in files))


def calibration_key(model, options) -> str:
    from ofer.fitting.calibration import calibration_path

    path = calibration_path(model.fingerprint(), "mediapipe478")
    if not options.calibrate or not path.is_file():
        return "none"
    with np.load(path) as data:  # what the fitter reads (other keys do not change a fit)
        keys = [k for k in ("bias", "sigma", "depth_offset", "rotation_offset") if k in data.files]
        return digest(*(data[k].tobytes() for k in keys))


def calibration_file(model) -> str:
    from ofer.fitting.calibration import calibration_path

    path = calibration_path(model.fingerprint(), "mediapipe478")
    return f"{path} (sha {digest(path.read_bytes())})" if path.is_file() else "none (fits are uncalibrated)"


def observations(scene: dict, cond: str):
    """(observations of the images that have them, their indices, failures)."""
    from ofer.data.shards import unpack_bits
    from ofer.fitting import LandmarkObservations

    size = scene["image_clean"].shape[1:3]
    if cond == "oracle":
        index = np.arange(len(scene["true478"]))
        return LandmarkObservations.from_points(scene["true478"], size, depth=scene["true_depth"]), index, 0
    found = scene[f"found_{cond}"]
    index = np.flatnonzero(found)
    points = scene[f"mp_{cond}"][index]
    obs = LandmarkObservations.from_points(points[..., :2], size, depth=points[..., 2],
                                           rotation=scene[f"rotation_{cond}"][index])
    if cond == "occluded":
        masks = unpack_bits(scene["occluder_mask"][index], size[1])
        obs = obs.drop_masked(masks)
    return obs, index, int((~found).sum())


def fit_condition(args, model, scene: dict, cond: str, options, key: str) -> dict:
    """Fit every image of ``cond`` with ``options`` (cached): raw outputs and seconds per image."""
    from ofer.data.shards import unpack_bits
    from ofer.fitting import fit_landmarks

    path = Path(args.cache) / f"fit_{cond}_{key}_{args.n}.npz"
    if path.is_file():
        return load(path)
    obs, index, failures = observations(scene, cond)
    keep = {k: [] for k in ("shape", "code", "rotation", "translation", "intrinsics", "landmarks68",
                            "reprojection_error", "seconds")}
    for start in tqdm(range(0, len(index), args.batch), desc=f"fit {cond}", leave=False, file=sys.stderr):
        part = slice(start, start + args.batch)
        batch = obs.select(part)
        pictures = masks = None
        if options.photometric_steps > 0:
            rows = index[part]
            pictures = scene["image"][rows] if cond == "occluded" else scene["image_clean"][rows]
            if cond == "occluded":
                masks = ~unpack_bits(scene["occluder_mask"][rows], pictures.shape[2])
        t = time.perf_counter()
        fit = fit_landmarks(model, batch, options, images=pictures, image_masks=masks)
        elapsed = time.perf_counter() - t
        keep["shape"].append(fit.shape.numpy())
        keep["code"].append(fit.code.numpy())
        keep["rotation"].append(fit.placement.rotation.numpy())
        keep["translation"].append(fit.placement.translation.numpy())
        keep["intrinsics"].append(fit.placement.intrinsics.numpy())
        keep["landmarks68"].append(fit.landmarks68.numpy())
        keep["reprojection_error"].append(fit.reprojection_error.numpy())
        keep["seconds"].append(np.full(len(batch), elapsed / len(batch)))
    result = {k: np.concatenate(v) for k, v in keep.items()}
    result.update(index=index, failures=np.int64(failures), batch=np.int64(args.batch))
    save(path, **result)
    return result


# ---------------------------------------------------------------------------------------- metrics
class Truth:
    """Ground-truth meshes (mm) and rotations of the scenes."""

    def __init__(self, model, scene: dict):
        from ofer.render.cameras import FRONTAL_R, head_rotation

        self.model = model
        self.front = model.front_mask.cpu().numpy()
        with torch.no_grad():
            shape = torch.as_tensor(scene["shape"])
            self.neutral = model(shape).vertices.numpy() * 1000
            expression, pose = model.split_code(torch.as_tensor(scene["expression"]))
            self.expressive = model(shape, expression, pose).vertices.numpy() * 1000
            self.mean_face = model(torch.zeros(1, model.shape_dim)).vertices.numpy()[0] * 1000
        pose = torch.as_tensor(scene["head_pose"]).double()
        self.rotation = (FRONTAL_R.double() @ head_rotation(pose[:, 0], pose[:, 1], pose[:, 2]).double()).numpy()
        self.landmarks2d = scene["landmarks2d"]

    def identity_errors(self, shapes: np.ndarray, index: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            meshes = self.model(torch.as_tensor(shapes, dtype=torch.float32)).vertices.numpy() * 1000
        return np.array([aligned_error(m, self.neutral[i], self.front) for m, i in zip(meshes, index)])


def fit_metrics(truth: Truth, fit: dict) -> dict[str, np.ndarray]:
    from ofer.fitting import rotation_angle_deg

    model, index = truth.model, fit["index"]
    with torch.no_grad():
        expression, pose = model.split_code(torch.as_tensor(fit["code"]))
        expressive = model(torch.as_tensor(fit["shape"]), expression, pose).vertices.numpy() * 1000
    return {
        "id": truth.identity_errors(fit["shape"], index),
        "expr": np.array([aligned_error(m, truth.expressive[i], truth.front) for m, i in zip(expressive, index)]),
        "pose": rotation_angle_deg(fit["rotation"], truth.rotation[index]),
        "rep68": np.linalg.norm(fit["landmarks68"] - truth.landmarks2d[index], axis=-1).mean(1),
        "resid": fit["reprojection_error"],
        "ms": fit["seconds"] * 1000,
    }


# ------------------------------------------------------------------------------------------ tables
def fmt(s: dict) -> str:
    return f"{s['mean']:6.2f} {s['median']:6.2f}"


def print_fit_table(rows: list[dict]) -> None:
    print("\nFitter (mean / median over images; id, expr: mm, similarity-aligned face region; pose: deg; "
          "rep68, resid: px; ms: per image, batched)")
    width = max([16] + [len(row["variant"]) + 2 for row in rows])
    head = f"{'variant':<{width}}{'cond':<10}{'ok':>4}{'fail':>5} {'id':>13} {'expr':>13} {'pose':>13} " \
           f"{'rep68':>13} {'resid':>13} {'ms/fit':>7}"
    print(head)
    print("-" * len(head))
    for row in rows:
        s = row["stats"]
        print(f"{row['variant']:<{width}}{row['condition']:<10}{s['id']['count']:>4}{row['failures']:>5} "
              f"{fmt(s['id'])} {fmt(s['expr'])} {fmt(s['pose'])} {fmt(s['rep68'])} {fmt(s['resid'])} "
              f"{s['ms']['mean']:7.0f}")


def print_method_table(rows: list[dict]) -> None:
    print("\nIdentity error of the neutral face (mm, similarity-aligned face region), mean / median")
    head = f"{'method':<22}{'cond':<10}{'ok':>4}{'fail':>5} {'id':>13} {'s/image':>8}"
    print(head)
    print("-" * len(head))
    for row in rows:
        s = row["stats"]
        seconds = row.get("seconds")
        print(f"{row['method']:<22}{row['condition']:<10}{s['count']:>4}{row['failures']:>5} {fmt(s)} "
              f"{'' if seconds is None else f'{seconds:8.2f}'}")


# --------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/data/heldout", help="held-out data folder")
    parser.add_argument("--n", type=int, default=200, help="first N samples")
    parser.add_argument("--checkpoints", default="/work/runs/default", help="run folder with the regressor")
    parser.add_argument("--cache", default="/work/cache/bench_fit", help="cache folder")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        help=f"fitter variants: {', '.join(VARIANTS)}, or FitOptions changes key=value,key=value")
    parser.add_argument("--conditions", nargs="+", default=["clean", "occluded"], choices=CONDITIONS)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS,
                        help="baselines to run on the same pictures (none: --methods)")
    parser.add_argument("--batch", type=int, default=50, help="images per fitter call")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="use this landmark calibration file instead of the shipped one (to compare calibrations)")
    parser.add_argument("--latency", type=int, default=0,
                        help="also time this many single-image fits (default options, clean)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.calibration is not None:
        import ofer.fitting.calibration as calibration

        chosen = args.calibration.resolve()
        if not chosen.is_file():
            raise SystemExit(f"bench_fit: {chosen}: calibration file not found")
        calibration.calibration_path = lambda fingerprint, scheme: chosen

    from ofer.data.sample import SampleMaker
    from ofer.data.shards import Manifest
    from ofer.fitting import FitOptions, fit_landmarks

    manifest = Manifest.load(args.data)
    if args.n > manifest.num_samples:
        raise SystemExit(f"bench_fit: --n {args.n} > {manifest.num_samples} samples in {args.data}")
    maker = SampleMaker(manifest.face_model["spec"], recipe_config(manifest))
    model = maker.model
    manifest.check_face_model(model.info().to_dict(), args.data)
    scene = scenes(args, manifest, maker)
    same = scene["same_image"]
    log(f"regenerated scenes: {int(same.sum())}/{len(same)} occluded pictures identical to the stored ones")
    if not same.all():
        log("  (the regenerated pair is used consistently for every method)")
    truth = Truth(model, scene)
    report = {"n": args.n, "data": str(args.data), "same_image": int(same.sum()),
              "mediapipe_seconds": float(scene["mp_seconds"].mean()), "fits": [], "methods": []}

    # baselines: the mean face, OFER-rank, the regressor
    mean_errors = np.array([aligned_error(truth.mean_face, g, truth.front) for g in truth.neutral])
    method_rows = [{"method": "mean face", "condition": "-", "failures": 0, "stats": stats(mean_errors),
                    "values": mean_errors.tolist()}]
    mean_expr = np.array([aligned_error(truth.mean_face, g, truth.front) for g in truth.expressive])
    method_rows.append({"method": "mean face (vs expr)", "condition": "-", "failures": 0,
                        "stats": stats(mean_expr), "values": mean_expr.tolist()})
    scene_key = digest(manifest.dataset_checksum(), manifest.seed)
    for name in args.methods:
        for cond in [c for c in args.conditions if c != "oracle"]:
            images = scene["image_clean"] if cond == "clean" else scene["image"]
            out = method_shapes(args, name, cond, images, scene_key)
            ok = np.flatnonzero(np.isfinite(out["shape"]).all(1))
            errors = np.full(args.n, np.nan)
            errors[ok] = truth.identity_errors(out["shape"][ok], ok)
            label = "OFER-rank" if name == "ofer" else "regressor (ArcFace)"
            method_rows.append({"method": label, "condition": cond, "failures": int(args.n - len(ok)),
                                "stats": stats(errors), "seconds": float(out["seconds"].mean()),
                                "values": errors.tolist()})
    report["methods"] = method_rows

    # the fitter
    source = fitter_source_key()
    rows = []
    seen: dict[str, str] = {}
    for text in args.variants:
        name, changes = parse_variant(text)
        options = FitOptions(**{**FitOptions().to_dict(), **changes})
        resolved = options.to_dict()
        diff = {k: v for k, v in resolved.items() if v != FitOptions().to_dict()[k]}
        key = digest("fit-v1", resolved, source, calibration_key(model, options))
        for cond in args.conditions:
            cond_options, cond_key = options, key
            if cond == "oracle" and options.calibrate:
                # the true points are the model's own embedding: MediaPipe's bias does not apply
                cond_options = options.replace(calibrate=False)
                cond_key = digest("fit-v1", cond_options.to_dict(), source, "none")
            fit = fit_condition(args, model, scene, cond, cond_options, cond_key)
            metrics = fit_metrics(truth, fit)
            rows.append({"variant": name, "condition": cond, "options": diff, "failures": int(fit["failures"]),
                         "same_as": seen.get(key), "stats": {k: stats(v) for k, v in metrics.items()},
                         "values": {k: np.asarray(v).tolist() for k, v in metrics.items()},
                         "index": fit["index"].tolist()})
        seen.setdefault(key, name)
    report["fits"] = rows
    report["default_options"] = FitOptions().to_dict()
    report["calibration"] = calibration_file(model)

    print(f"\n{args.n} held-out samples of {args.data} (seed {manifest.seed}); "
          f"{int(same.sum())}/{args.n} regenerated occluded pictures identical to the stored ones; "
          f"MediaPipe found a face in {int(scene['found_clean'].sum())} clean and "
          f"{int(scene['found_occluded'].sum())} occluded pictures "
          f"({scene['mp_seconds'].mean() * 1000:.0f} ms per picture)")
    print("variants: " + "; ".join(f"{r['variant']} = {r['options'] or 'defaults'}"
                                    + (f" (same as {r['same_as']})" if r["same_as"] else "")
                                    for r in rows if r["condition"] == args.conditions[0]))
    print(f"defaults: {FitOptions().to_dict()}")
    print(f"calibration file (calibrate=True): {calibration_file(model)}")
    print_fit_table(rows)
    print_method_table(method_rows)

    if args.latency:
        obs, _, _ = observations(scene, "clean")
        times = []
        for k in range(args.latency):
            single = type(obs)(obs.points[k : k + 1], obs.weights[k : k + 1], obs.depth[k : k + 1], obs.scheme,
                               obs.image_size)
            t = time.perf_counter()
            fit_landmarks(model, single, FitOptions())
            times.append(time.perf_counter() - t)
        report["latency_ms"] = stats(np.array(times) * 1000)
        print(f"\nsingle-image fit (default options, batch 1): {np.mean(times) * 1000:.0f} ms mean, "
              f"{np.median(times) * 1000:.0f} ms median over {args.latency} images")

    if args.json:
        from ofer.io.atomic import write_json

        write_json(args.json, report)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
