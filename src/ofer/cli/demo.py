"""``ofer demo [-o OUT] [IMAGE...]``: the whole pipeline on a built-in synthetic example (and your photos)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_SEED = 2025
DEMO_INDEX = 3


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run OFER on a built-in example image (and on any images given)")
    parser.add_argument("images", nargs="*", type=Path, help="more images to reconstruct")
    parser.add_argument("-o", "--output", type=Path, default=Path("ofer-demo"), help="output folder (default ./ofer-demo)")
    parser.add_argument("--checkpoints", type=Path, default=None, help="run folder (default: the shipped weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def demo_image() -> "np.ndarray":
    """A synthetic occluded face made by the data engine (no photo can ship in the package)."""
    from ..data.synth import SampleMaker, protocol_config

    config = protocol_config()
    maker = SampleMaker("default", config)
    return maker.make(DEMO_INDEX, DEMO_SEED)["image"]


def run(args: argparse.Namespace) -> int:
    from ..io.atomic import save_picture
    from .outputs import output_folder
    from . import reconstruct

    output_folder(args.output).mkdir(parents=True, exist_ok=True)
    example = args.output / "demo_input.png"
    save_picture(example, demo_image())
    print(f"built-in example: {example}")
    forwarded = argparse.Namespace(
        images=[example, *args.images], output=args.output, checkpoints=args.checkpoints, model=None,
        method="ofer", shapes=100, expressions=16, sampler="ddim", steps=None, seed=args.seed, batch=8, units="m",
        jaw_scale=1.0, device="cpu", all_faces=False,
    )
    code = reconstruct.run(forwarded)
    print(f"results: {args.output.resolve()}/<image>/ (preview.png, uncertainty.png, identity.ply, expression_XX.ply, ...)")
    return code
