"""Measure MediaPipe's landmark bias on a face model's renders and write the fitter's calibration file.

Usage (from the repository root)::

    .venv/bin/python scripts/calibrate_landmarks.py [--model default] [--renders 300] [--seed 777]
        [--val-renders 50] [--val-seed 778] [--depth-weight 0] [--compare] [-o PATH] [--dry-run]

It renders ``--renders`` random faces with the data engine's training recipe (``ofer synth train``'s
``SynthConfig()``; seeds disjoint from the held-out sets), runs MediaPipe on each clean render and
projects the true positions of the 478 embedded points (``ofer.fitting.model_points``) through the
true camera (``look_at_face`` with the shifted principal point; the mesh minus ``SampleMaker.centre``).
For every point ``l`` it then solves for a model-frame offset ``bias_l`` (metres) minimising

    sum_k  |u_kl - pi_k(R_k (X_kl + bias_l) + T_k)|^2 / s_k^2
         + depth_weight * (zc_kl - dc_kl(bias))^2 / s_k^2            (optional relative-depth row)

over the renders k (Gauss-Newton on the 2x3 projection Jacobian ``J_pi R_k``, normal equations with a
ridge), with ``s_k`` the face's size in render k (RMS distance of MediaPipe's points to their
centroid, as in the fitter) and ``zc``, ``dc`` MediaPipe's and the true relative depth (pixels,
centred per render, ``f Z / mean Z`` as in the fitter's depth term, times a per-render gain fitted
by least squares: MediaPipe's depth is on its own scale, about 0.88 of the true one). ``sigma_l`` is the RMS of the
corrected 2D residual over the renders, in face sizes. It prints the mean 2D residual (pixels and % of
the face size) before and after, on the calibration renders and on ``--val-renders`` other renders,
and writes ``bias`` (478, 3) float32, ``sigma`` (478,) float32, ``renders``, ``seed`` (and the
settings, and ``depth_offset`` (478,): MediaPipe's mean relative-depth error per point after the
2D bias, in face sizes, which the fitter does not use yet) to
``src/ofer/fitting/data/mediapipe478_<fingerprint[:12]>.npz`` atomically, where
``FitOptions(calibrate=True)`` finds it.

MediaPipe and the renders are cached under ``--cache`` (a re-run with other solver settings is quick).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OFER_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

SCHEME = "mediapipe478"
CHUNK = 50  # renders per cache file


def digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ renders
def render_chunk(maker, seed: int, start: int, count: int) -> dict[str, np.ndarray]:
    """MediaPipe on the clean renders start..start+count-1 and the truth: model points, camera."""
    from ofer.fitting import model_points, observe
    from ofer.fitting.observations import mediapipe_rotation
    from ofer.render.cameras import FRONTAL_R, head_rotation

    model = maker.model
    out = {k: [] for k in ("mp", "found", "points", "rotation", "translation", "focal", "centre", "mp_rotation")}
    for index in range(start, start + count):
        rec = maker.make(index, seed)
        face = observe(rec["image_clean"])
        out["found"].append(face is not None)
        out["mp"].append(np.full((478, 3), np.nan) if face is None else face.points)
        out["mp_rotation"].append(np.full((3, 3), np.nan) if face is None else mediapipe_rotation(face.matrix))
        with torch.no_grad():
            expression = torch.as_tensor(rec["expression"])[None]
            vertices = model(torch.as_tensor(rec["shape"])[None], expression).vertices - maker.centre
            out["points"].append(model_points(model, vertices, SCHEME)[0].double().numpy())
        yaw, pitch, roll = (float(a) for a in rec["head_pose"])
        out["rotation"].append((FRONTAL_R @ head_rotation(yaw, pitch, roll))[0].double().numpy())
        focal, distance, cx, cy = (float(c) for c in rec["camera"])
        out["translation"].append(np.array([0.0, 0.0, distance]))
        out["focal"].append(focal)
        out["centre"].append(np.array([cx, cy]))
    return {k: np.stack(v) if k != "focal" else np.array(v) for k, v in out.items()}


def renders(maker, seed: int, count: int, cache: Path) -> dict[str, np.ndarray]:
    from ofer.io.atomic import save_npz

    key = digest("calib-v2", maker.model.fingerprint(), maker.config.to_dict(), seed)
    parts = []
    for start in tqdm(range(0, count, CHUNK), desc=f"renders + MediaPipe (seed {seed})", unit="chunk",
                      file=sys.stderr):
        size = min(CHUNK, count - start)
        path = cache / f"renders_{key}_{start:05d}_{size}.npz"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_npz(path, **render_chunk(maker, seed, start, size))
        with np.load(path) as data:
            parts.append({k: data[k] for k in data.files})
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = data["found"].astype(bool)
    data = {k: v[keep] for k, v in data.items()}
    data["missed"] = int((~keep).sum())
    return data


# ------------------------------------------------------------------------------------------- model
class Renders:
    """The linearised problem of a set of renders (float64)."""

    def __init__(self, data: dict):
        self.points, self.rotation = data["points"], data["rotation"]  # (K, L, 3), (K, 3, 3)
        self.translation, self.focal, self.centre = data["translation"], data["focal"], data["centre"]
        self.observed = data["mp"][..., :2]  # (K, L, 2)
        depth = data["mp"][..., 2]
        self.observed_depth = depth - depth.mean(1, keepdims=True)
        centred = self.observed - self.observed.mean(1, keepdims=True)
        self.size = np.sqrt((centred**2).sum(-1).mean(1))  # (K,) face size, pixels

    def __len__(self) -> int:
        return len(self.points)

    def camera(self, bias: np.ndarray) -> np.ndarray:
        """(K, L, 3) camera-frame points of the corrected model points."""
        return np.einsum("kij,klj->kli", self.rotation, self.points + bias) + self.translation[:, None]

    def project(self, bias: np.ndarray) -> np.ndarray:
        cam = self.camera(bias)
        return cam[..., :2] / cam[..., 2:] * self.focal[:, None, None] + self.centre[:, None]

    def depth(self, bias: np.ndarray) -> np.ndarray:
        """(K, L) relative depth in pixels, centred (the fitter's ``f Z / mean Z``)."""
        z = self.camera(bias)[..., 2]
        d = z * (self.focal / z.mean(1))[:, None]
        return d - d.mean(1, keepdims=True)

    def depth_gain(self, bias: np.ndarray) -> np.ndarray:
        """(K,) least-squares factor ``a`` of MediaPipe's depth ~ a * true depth (clamped to [0.5, 1.5])."""
        d = self.depth(bias)
        return np.clip((d * self.observed_depth).sum(1) / (d * d).sum(1), 0.5, 1.5)

    def residuals(self, bias: np.ndarray) -> np.ndarray:
        """(K, L) 2D distance (pixels) between MediaPipe and the corrected projection."""
        return np.linalg.norm(self.observed - self.project(bias), axis=-1)

    def jacobians(self, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """d pixels / d bias (K, L, 2, 3) and d depth / d bias (K, L, 3) (the mean's coupling left out)."""
        cam = self.camera(bias)
        x, y, z = cam[..., 0], cam[..., 1], cam[..., 2]
        f = self.focal[:, None]
        jpi = np.zeros(cam.shape[:2] + (2, 3))
        jpi[..., 0, 0] = f / z
        jpi[..., 1, 1] = f / z
        jpi[..., 0, 2] = -f * x / z**2
        jpi[..., 1, 2] = -f * y / z**2
        pixels = np.einsum("klij,kjm->klim", jpi, self.rotation)
        depth = (self.focal / z.mean(1))[:, None, None] * self.rotation[:, None, 2, :]
        return pixels, np.broadcast_to(depth, cam.shape).copy()


def solve(data: Renders, depth_weight: float, ridge: float, iterations: int = 4) -> np.ndarray:
    """Per-point model-frame offsets (L, 3) metres (Gauss-Newton, renders weighted by 1 / size^2)."""
    bias = np.zeros(data.points.shape[1:])
    w = 1.0 / data.size**2  # (K,)
    for _ in range(iterations):
        jp, jd = data.jacobians(bias)
        r2 = data.observed - data.project(bias)  # (K, L, 2)
        normal = np.einsum("k,klim,klin->lmn", w, jp, jp)
        grad = np.einsum("k,klim,kli->lm", w, jp, r2)
        if depth_weight > 0:
            gain = data.depth_gain(bias)  # MediaPipe's depth scale, per render (as the fitter fits it)
            rz = data.observed_depth - gain[:, None] * data.depth(bias)  # (K, L)
            jd = gain[:, None, None] * jd
            normal += depth_weight * np.einsum("k,klm,kln->lmn", w, jd, jd)
            grad += depth_weight * np.einsum("k,klm,kl->lm", w, jd, rz)
        normal += ridge * np.eye(3)
        bias = bias + np.linalg.solve(normal, grad[..., None])[..., 0]
    return bias


def summary(data: Renders, bias: np.ndarray) -> dict[str, float]:
    """Mean 2D residual (px, % of the face size) and mean |depth residual| after the per-render depth
    gain (% of the face size)."""
    r = data.residuals(bias)
    depth = np.abs(data.observed_depth - data.depth_gain(bias)[:, None] * data.depth(bias))
    return {"px": float(r.mean()), "pct": float((r / data.size[:, None]).mean() * 100),
            "median_pct": float(np.median(r / data.size[:, None]) * 100),
            "depth_pct": float((depth / data.size[:, None]).mean() * 100)}


def sigma_of(data: Renders, bias: np.ndarray) -> np.ndarray:
    """(L,) RMS over the renders of the corrected 2D residual, in face sizes."""
    r = data.residuals(bias) / data.size[:, None]
    return np.sqrt((r**2).mean(0))


def depth_offsets(data: Renders, bias: np.ndarray) -> np.ndarray:
    """(L,) mean over the renders of MediaPipe's depth minus the corrected true depth (after the
    per-render gain), in face sizes, centred: subtract ``depth_offset * face size`` from MediaPipe's
    relative depth before a depth term (it corrects the depth without moving the 2D bias)."""
    gain = data.depth_gain(bias)
    offset = ((data.observed_depth - gain[:, None] * data.depth(bias)) / data.size[:, None]).mean(0)
    return offset - offset.mean()


def depth_summary(data: Renders, bias: np.ndarray, offset: np.ndarray) -> float:
    """Mean |depth residual| (% of the face size) once ``offset`` (face sizes) is taken off MediaPipe's depth."""
    corrected = data.observed_depth - offset[None] * data.size[:, None]
    residual = corrected - data.depth_gain(bias)[:, None] * data.depth(bias)
    return float((np.abs(residual) / data.size[:, None]).mean() * 100)


def rotation_offset(calib: dict, val: dict) -> tuple[np.ndarray, float, float]:
    """The constant C (3, 3) with ``R_true ~ R_mediapipe @ C`` (mean rotation over the calibration
    renders), and the validation renders' median angle (degrees) without and with it."""
    from scipy.spatial.transform import Rotation

    from ofer.fitting import rotation_angle_deg

    found = calib["found"].astype(bool)
    relative = np.einsum("kji,kjl->kil", calib["mp_rotation"][found], calib["rotation"][found])
    offset = Rotation.from_matrix(relative).mean().as_matrix()
    ok = val["found"].astype(bool)
    before = rotation_angle_deg(val["mp_rotation"][ok], val["rotation"][ok])
    after = rotation_angle_deg(val["mp_rotation"][ok] @ offset, val["rotation"][ok])
    return offset, float(np.median(before)), float(np.median(after))


def depth_scale(data: Renders) -> float:
    """Median over renders of the least-squares factor a in MediaPipe's depth ~ a * true depth."""
    return float(np.median(data.depth_gain(np.zeros(data.points.shape[1:]))))


# -------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="face model spec (with a 478-point embedding)")
    parser.add_argument("--renders", type=int, default=300, help="calibration renders K")
    parser.add_argument("--seed", type=int, default=777, help="seed of the calibration renders")
    parser.add_argument("--val-renders", type=int, default=50, help="validation renders")
    parser.add_argument("--val-seed", type=int, default=778, help="seed of the validation renders")
    parser.add_argument("--depth-weight", type=float, default=0.0,
                        help="weight of MediaPipe's relative depth as a third residual row (0: 2D only)")
    parser.add_argument("--ridge", type=float, default=1e-8, help="ridge on the normal equations (1/m^2)")
    parser.add_argument("--compare", action="store_true", help="also print other depth weights and ridges")
    parser.add_argument("--cache", type=Path, default=Path("/work/cache/calibrate_landmarks"))
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output file (default: the fitter's data folder, named by the model's fingerprint)")
    parser.add_argument("--dry-run", action="store_true", help="measure and print, write nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from ofer.data.recipe import SynthConfig
    from ofer.data.sample import SampleMaker
    from ofer.fitting.calibration import calibration_path
    from ofer.io.atomic import save_npz

    maker = SampleMaker(args.model, SynthConfig())  # the training recipe of ``ofer synth train``
    model = maker.model
    if not (hasattr(model, "mp_faces_idx") and model.mp_faces_idx.numel() == 478):
        raise SystemExit(f"calibrate_landmarks: face model {args.model!r} has no MediaPipe 478-point embedding")
    calib_raw = renders(maker, args.seed, args.renders, args.cache)
    val_raw = renders(maker, args.val_seed, args.val_renders, args.cache)
    calib, val = Renders(calib_raw), Renders(val_raw)
    print(f"face model {args.model} ({model.fingerprint()[:12]}): {len(calib)} calibration renders (seed "
          f"{args.seed}, MediaPipe missed {calib_raw['missed']}), {len(val)} validation renders (seed "
          f"{args.val_seed}, missed {val_raw['missed']}); mean face size {calib.size.mean():.1f} px")
    print(f"MediaPipe depth / true depth (median least-squares factor): calibration {depth_scale(calib):.3f}, "
          f"validation {depth_scale(val):.3f}")

    zero = np.zeros((478, 3))
    settings = [(args.depth_weight, args.ridge)]
    if args.compare:
        settings += [(w, r) for w in (0.0, 0.1, 0.25, 0.5, 1.0) for r in (args.ridge, 1e4)
                     if (w, r) != (args.depth_weight, args.ridge)]
    print(f"\n{'solver':<28}{'calibration renders':>34}{'validation renders':>34}")
    print(f"{'':<28}{'px':>8}{'% face':>9}{'med %':>8}{'depth %':>9}{'px':>8}{'% face':>9}{'med %':>8}{'depth %':>9}")

    def line(label, bias):
        c, v = summary(calib, bias), summary(val, bias)
        print(f"{label:<28}{c['px']:8.3f}{c['pct']:9.3f}{c['median_pct']:8.3f}{c['depth_pct']:9.3f}"
              f"{v['px']:8.3f}{v['pct']:9.3f}{v['median_pct']:8.3f}{v['depth_pct']:9.3f}")
        return c, v

    before = line("before (no correction)", zero)
    results = {}
    for w, r in settings:
        bias = solve(calib, w, r)
        results[(w, r)] = (bias, *line(f"depth {w:g}, ridge {r:g}", bias))
    bias, after_calib, after_val = results[(args.depth_weight, args.ridge)]
    sigma = sigma_of(calib, bias)
    norm = np.linalg.norm(bias, axis=1) * 1000
    print(f"\nchosen: depth weight {args.depth_weight:g}, ridge {args.ridge:g}: |bias| mean {norm.mean():.2f} mm, "
          f"max {norm.max():.2f} mm; sigma (face sizes) mean {sigma.mean():.4f}, min {sigma.min():.4f}, "
          f"max {sigma.max():.4f}")
    print(f"mean 2D residual: calibration {before[0]['px']:.3f} -> {after_calib['px']:.3f} px "
          f"({before[0]['pct']:.2f} -> {after_calib['pct']:.2f} % of the face size); validation "
          f"{before[1]['px']:.3f} -> {after_val['px']:.3f} px ({before[1]['pct']:.2f} -> {after_val['pct']:.2f} %)")
    offset = depth_offsets(calib, bias)
    print(f"per-point depth offsets (used by the fitter with depth_weight > 0): mean |depth residual| calibration "
          f"{summary(calib, bias)['depth_pct']:.2f} -> {depth_summary(calib, bias, offset):.2f} %, validation "
          f"{summary(val, bias)['depth_pct']:.2f} -> {depth_summary(val, bias, offset):.2f} % of the face size")
    offset_rotation, pose_before, pose_after = rotation_offset(calib_raw, val_raw)
    print(f"MediaPipe's own head rotation, mapped to the model frame by a constant offset: median error "
          f"validation {pose_before:.2f} deg (no offset) -> {pose_after:.2f} deg")
    if args.dry_run:
        return 0
    path = args.output or calibration_path(model.fingerprint(), SCHEME)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, bias=bias.astype(np.float32), sigma=sigma.astype(np.float32), renders=np.int64(len(calib)),
             seed=np.int64(args.seed), depth_weight=np.float64(args.depth_weight), ridge=np.float64(args.ridge),
             fingerprint=np.str_(model.fingerprint()), depth_offset=offset.astype(np.float32),
             rotation_offset=offset_rotation.astype(np.float32))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
