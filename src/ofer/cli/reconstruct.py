"""``ofer reconstruct IMAGE... -o OUT``: ranked identity + expression hypotheses for each photo.

Every option is validated before any network runs. Each image's random numbers come from
(seed, result name), so its result does not depend on the other images of the call.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..config import require_choice, require_int
from ..devices import resolve_device
from ..errors import InputError, OferError, first_line, is_out_of_memory
from ..facemodels import load_face_model
from ..frontend import load_image
from ..methods import Method, ReconstructionSettings, available, get
from .outputs import output_folder
from ..methods.outputs import result_names, summary_record, write_reconstruction


def register(subparsers) -> None:
    parser = subparsers.add_parser("reconstruct", help="3D faces (ranked identity + expression hypotheses) from photos")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (one sub-folder per image)")
    parser.add_argument("--method", default="ofer", help="reconstruction method (default ofer; see `ofer info`)")
    parser.add_argument("--checkpoints", type=Path, default=None, help="run folder with the method's networks "
                        "(default: the weights shipped for the built-in face model)")
    parser.add_argument("--model", default=None, help="face model the checkpoints must match (default: theirs)")
    parser.add_argument("--shapes", type=int, default=100, help="identity samples N")
    parser.add_argument("--expressions", type=int, default=16, help="expression hypotheses M")
    parser.add_argument("--sampler", default="ddim", help="ddim (default) or ddpm")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps (default: those IdRank was trained with, else ddim 50 / ddpm 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8, help="images loaded at a time (results do not depend on it)")
    parser.add_argument("--units", default="m", help="unit of the mesh files and kpt7.npy: m or mm")
    parser.add_argument("--jaw-scale", type=float, default=1.0, help="scale of the predicted jaw rotation (FLAME)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    parser.add_argument("--all-faces", action="store_true",
                        help="reconstruct every detected face, into <image>_face<k>/ (default: the main face only)")
    parser.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> ReconstructionSettings:
    """Validate every numeric and choice option (one-line error) before anything is loaded."""
    require_int(args.batch, "--batch", 1, 10_000)
    require_choice(args.units, "--units", ("m", "mm"))
    require_choice(args.method, "--method", available())
    return ReconstructionSettings(args.shapes, args.expressions, args.sampler, args.steps, args.seed, args.jaw_scale)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    output_folder(args.output)
    device = resolve_device(args.device)
    cls = get(args.method)
    if not cls.produces_meshes:
        raise OferError(f"method {args.method!r} does not produce meshes")
    face_model = load_face_model(args.model) if args.model else None
    if args.all_faces and cls.reconstruct is not Method.reconstruct:
        raise OferError(f"--all-faces is not available for method {args.method!r} (it locates faces its own way)")
    method = cls.from_run(args.checkpoints, face_model, device)
    method.validate(settings)  # before any network runs; warns once where the settings are unusual
    failures = 0
    names = result_names(args.images)
    for start in range(0, len(args.images), args.batch):
        batch = list(zip(args.images[start : start + args.batch], names[start : start + args.batch]))
        failures += _run_batch(method, batch, settings, args)
    return 1 if failures else 0


def _run_batch(method, batch: list[tuple[Path, str]], settings: ReconstructionSettings, args) -> int:
    failures, images, kept = 0, [], []
    for path, name in batch:
        try:
            images.append(load_image(path))
            kept.append((path, name))
        except OferError as exc:
            print(f"ofer: error: {exc}", file=sys.stderr)
            failures += 1
    if not images:
        return failures
    jobs = []  # (path, image, result): one per image, or one per face with --all-faces
    for image, (path, name) in zip(images, kept):
        results = _reconstruct_one(method, image, settings, name, args.all_faces)
        jobs += [(path, image, r) for r in (results if isinstance(results, list) else [results])]
    for path, image, result in jobs:
        if isinstance(result, Exception):
            print(f"ofer: error: {path}: {result if isinstance(result, MemoryError) else 'no face found'}",
                  file=sys.stderr)
            failures += 1
            continue
        if result.faces_in_image > 1 and not args.all_faces:
            box = ", ".join(f"{v:.0f}" for v in result.box)
            print(f"ofer: note: {path}: {result.faces_in_image} faces found; reconstructed the main one (nearest "
                  f"the centre, box [{box}]); --all-faces reconstructs every face", file=sys.stderr)
        if not result.appearance_found:
            print(f"ofer: warning: {path}: the appearance encoder found no face in its crop; expressions are "
                  "unconditioned on appearance (appearance_found=false in summary.json)", file=sys.stderr)
        if not result.landmarks_found:
            print(f"ofer: warning: {path}: MediaPipe found no face landmarks around the detection box; the meshes "
                  "are not placed in the photo (no pose or camera in params.npz, no overlay.png)", file=sys.stderr)
        summary = summary_record(result, settings.to_dict(), method, str(path))
        try:
            folder = write_reconstruction(args.output, result, method.face_model, summary, args.units, image)
        except OferError as exc:
            print(f"ofer: error: {path}: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(_result_line(path, result, folder))
    return failures


def _reconstruct_one(method, image, settings: ReconstructionSettings, name: str, all_faces: bool = False):
    """One image's reconstruction (with ``all_faces`` a list, one per face), InputError (no face), or a
    MemoryError naming the failed allocation: an image too large for memory costs that image only."""
    try:
        if all_faces:
            return method.reconstruct_all_faces(image, settings, name) or InputError(f"{name}: no face found")
        return method.reconstruct([image], settings, [name])[0]
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        return MemoryError(f"out of memory ({first_line(exc)}); ask for fewer --shapes / --expressions")


def _result_line(path: Path, result, folder: Path) -> str:
    """``PATH: M hypotheses, identity k/N[, reprojection e px] -> FOLDER[ (overlay.png)]``."""
    count = len(result.expressions)
    line = f"{path}: {count} hypothes{'es' if count > 1 else 'is'}, identity {result.chosen + 1}/{len(result.shapes)}"
    if result.placement is None:
        return f"{line} -> {folder}"
    error = result.reprojection_error[0]
    placed = "" if not math.isfinite(error) else f", reprojection {error:.1f} px"  # NaN: placed without landmarks
    return f"{line}{placed} -> {folder} (see overlay.png)"
