"""``ofer reconstruct IMAGE... -o OUT``: ranked identity + expression hypotheses for each photo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("reconstruct", help="3D faces (ranked identity + expression hypotheses) from photos")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (one sub-folder per image)")
    parser.add_argument("--checkpoints", type=Path, default=None, help="run folder with idgen/, idrank/, expgen/ "
                        "(default: the weights shipped for the built-in face model)")
    parser.add_argument("--model", default=None, help="face model the checkpoints must match (default: theirs)")
    parser.add_argument("--shapes", type=int, default=100, help="identity samples N")
    parser.add_argument("--expressions", type=int, default=16, help="expression hypotheses M")
    parser.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: ddim 50, ddpm 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--units", choices=("m", "mm"), default="m", help="unit of the mesh files and kpt7.npy")
    parser.add_argument("--jaw-scale", type=float, default=1.0, help="scale of the predicted jaw rotation (FLAME)")
    parser.set_defaults(func=run)


def default_checkpoints() -> Path:
    from ..weights import default_run

    return default_run()


def run(args: argparse.Namespace) -> int:
    from ..errors import OferError
    from ..frontend import load_image
    from ..pipeline.ofer import OFER, ReconstructionSettings
    from ..pipeline.outputs import summary_record, write_reconstruction
    from ..training.checkpoint import NETWORKS, network_dir

    if args.shapes < 1 or args.expressions < 1:
        raise OferError("--shapes and --expressions must be at least 1")
    run_dir = args.checkpoints or default_checkpoints()
    from ..facemodels import load_face_model

    pipe = OFER.from_checkpoints(run_dir, load_face_model(args.model) if args.model else None)
    steps = args.steps if args.steps is not None else (50 if args.sampler == "ddim" else None)
    settings = ReconstructionSettings(args.shapes, args.expressions, args.sampler, steps, args.seed, args.jaw_scale)
    checkpoint_ids = {net: str(network_dir(run_dir, net) / "last.pt") for net in NETWORKS}
    failures = 0
    names = _unique_names(args.images)
    for start in range(0, len(args.images), max(1, args.batch)):
        paths, batch_names = args.images[start : start + args.batch], names[start : start + args.batch]
        images, kept = [], []
        for path, name in zip(paths, batch_names):
            try:
                images.append(load_image(path))
                kept.append((path, name))
            except OferError as exc:
                print(f"ofer: error: {exc}", file=sys.stderr)
                failures += 1
        if not images:
            continue
        results = pipe.reconstruct_batch(images, settings, [name for _, name in kept])
        for (path, name), result in zip(kept, results):
            if isinstance(result, Exception):
                print(f"ofer: error: {path}: no face found", file=sys.stderr)
                failures += 1
                continue
            summary = summary_record(result, settings.to_dict(), pipe.face_model, run_dir, checkpoint_ids, str(path))
            folder = write_reconstruction(args.output, result, pipe.face_model, summary, args.units)
            print(f"{path}: {len(result.expressions)} hypotheses, identity {result.chosen}/{len(result.shapes)} -> {folder}")
    return 1 if failures else 0


def _unique_names(paths: list[Path]) -> list[str]:
    """Output sub-folder names: the file stems, made unique with a suffix when two images share one."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        stem = path.stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names
